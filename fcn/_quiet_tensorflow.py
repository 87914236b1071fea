"""Import TensorFlow (and probe its devices) without its start-up chatter on stderr.

TensorFlow writes these lines from C++ straight to file descriptor 2, before its logging is initialised,
so neither `TF_CPP_MIN_LOG_LEVEL` nor Python's logging can hold them back. They are caught here by pointing
descriptor 2 at a pipe for the import and the device probe; every line that is not one of the
known start-up notices is written back to stderr, so a real problem still shows.

`import fcn` does not import TensorFlow itself: it asks, with `on_first_import`, that whoever imports it first
(fcn, Keras or the person's own code) gets it this way.
"""

import contextlib
import importlib.abc
import importlib.util
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


def on_first_import(name: str, around=None, after=None) -> None:
    """Arrange that the first import of top-level module `name`, by anyone, runs inside the context manager
    `around()`, which also holds `after(module)`; if `name` is imported already, `after` runs at once (inside
    `around()`). Nothing is imported here."""
    around, after = around or contextlib.nullcontext, after or (lambda module: None)
    if name in sys.modules:
        with around():
            after(sys.modules[name])
        return
    sys.meta_path.insert(0, _FirstImport(name, around, after))


class _FirstImport(importlib.abc.MetaPathFinder):
    """A finder that finds nothing itself: it lets the other finders find `name` and wraps the loader they give.
    It stays in place until the module is loaded: a `find_spec` call that only asks whether `name` is installed
    (TensorFlow asks about Keras so) must not use it up."""

    def __init__(self, name, around, after):
        self.name, self.around, self.after, self.searching = name, around, after, False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name or self.searching:
            return None
        self.searching = True  # the search below passes through this finder again
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.searching = False
        if spec is not None and spec.loader is not None:
            spec.loader = _LoaderWith(spec.loader, self)
        return spec


class _LoaderWith(importlib.abc.Loader):
    def __init__(self, loader, finder: _FirstImport):
        self.loader, self.finder = loader, finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        if self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)
        module.__loader__ = module.__spec__.loader = self.loader  # what the module sees is the real loader
        with self.finder.around():
            self.loader.exec_module(module)
            self.finder.after(module)
