"""Import TensorFlow (and probe its devices) without its start-up chatter on stderr.

TensorFlow writes these lines from C++ straight to file descriptor 2, before its logging is initialised,
so neither `TF_CPP_MIN_LOG_LEVEL` nor Python's logging can hold them back. They are caught here by pointing
descriptor 2 at a pipe for the import and the device probe; every line that is not one of the
known start-up notices is written back to stderr, so a real problem still shows.
"""

import contextlib
import os
import re
import sys
import threading

# Start-up notices: absl's pre-initialisation banner and the I/W/E lines of the files that probe the machine.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:. ]+\d+ (port|cudart_stub|cpu_feature_guard|cuda_platform|cuda_executor|cuda_diagnostics"
    r"|gpu_device|cuda_dnn|cuda_fft|cuda_blas|dso_loader|xla_bridge)\.cc:\d+\]"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
    r"|\s*$)"
)


def is_startup_noise(line: str) -> bool:
    """Whether a stderr line is one of TensorFlow's known start-up notices."""
    return bool(_NOISE.match(line))


@contextlib.contextmanager
def stderr_filtered(is_noise=is_startup_noise):
    """Hold back the lines of file descriptor 2 (where C++ code writes) that `is_noise` matches, during a block;
    every other line is written back to stderr when the block ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    # A pipe, read by a thread, rather than a temporary file: on a full disk the lines would be cut short.
    read_end, write_end = os.pipe()
    chunks = []
    reader = threading.Thread(target=_read_all, args=(read_end, chunks), daemon=True)
    reader.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        os.dup2(saved, 2)  # the pipe's last writer goes: the reader sees its end
        os.close(saved)
        reader.join(timeout=10)  # a child process that kept descriptor 2 must not hold us up
        kept = [line for line in b"".join(chunks).decode(errors="replace").splitlines() if not is_noise(line)]
        if kept:
            print("\n".join(kept), file=sys.stderr)


def _read_all(fd: int, chunks: list) -> None:
    with os.fdopen(fd, "rb") as stream:
        while chunk := stream.read1(1 << 16):
            chunks.append(chunk)


def import_tensorflow() -> None:
    """Import TensorFlow and list its devices once, with the start-up notices filtered out."""
    if os.environ.get("FCN_TF_STARTUP_LOG") == "1":  # a person debugging a GPU set-up wants every line
        return
    # Level 2 hides later info and warning lines; errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with stderr_filtered():
        import tensorflow as tf

        tf.config.list_physical_devices()
