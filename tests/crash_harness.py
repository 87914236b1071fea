"""Run `fcn` with every file publication announced and slowed down, so a test can kill it right there.

    python tests/crash_harness.py train --dataset ... --run-dir R

Before each `os.replace` / `os.link` (how fcn publishes a finished file) it prints
`HARNESS publish <target>` on stdout and waits HARNESS_PAUSE seconds (default 0.3); before each model save it
prints `HARNESS save <path>` and the save itself is slowed down the same way, half-way through writing.
A test reading these lines can SIGKILL the process at the moment a file is being written or published.
With HARNESS_PAUSE_AT=REGEX only the announcements that match it wait (the one the test strikes at), so
the writes before it run at full speed.

Two more faults, at points the test chooses:
    HARNESS_HOLD=FILE                 each announced write waits until FILE exists (the run folder stays
                                      locked meanwhile: a second process can be started against it)
    HARNESS_FSIZE="SUFFIX N BYTES"    at the N-th announced write of a path ending in SUFFIX ("*": any),
                                      limit this process' files to BYTES (RLIMIT_FSIZE): later writes that
                                      grow a file past it fail with EFBIG ("File too large"), as on a full disk
Nothing in fcn knows about this harness.
"""

import os
import re
import resource
import signal
import sys
import time
import zipfile
from pathlib import Path

PAUSE = float(os.environ.get("HARNESS_PAUSE", "0.3"))
PAUSE_AT = re.compile(os.environ.get("HARNESS_PAUSE_AT", ""))
HOLD = os.environ.get("HARNESS_HOLD")
FSIZE = os.environ.get("HARNESS_FSIZE", "").split()
_seen = {"count": 0}


def _announce(kind: str, path) -> None:
    line = f"HARNESS {kind} {os.fspath(path)}"
    print(line, flush=True)
    if PAUSE_AT.search(line):
        time.sleep(PAUSE)
    while HOLD and not Path(HOLD).exists():
        time.sleep(0.1)
    if FSIZE and (FSIZE[0] == "*" or os.fspath(path).endswith(FSIZE[0])):
        _seen["count"] += 1
        if _seen["count"] == int(FSIZE[1]):
            # The write returns EFBIG instead of the process being killed by SIGXFSZ (Python ignores it too).
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
            resource.setrlimit(resource.RLIMIT_FSIZE, (int(FSIZE[2]), hard))
            print(f"HARNESS limit {FSIZE[2]} bytes", flush=True)


def _patch() -> None:
    real_replace, real_link = os.replace, os.link
    real_writestr = zipfile.ZipFile.writestr

    def replace(src, dst, *args, **kwargs):
        _announce("publish", dst)
        return real_replace(src, dst, *args, **kwargs)

    def link(src, dst, *args, **kwargs):
        _announce("publish", dst)
        return real_link(src, dst, *args, **kwargs)

    def writestr(self, name, data, *args, **kwargs):
        # Keras writes a .keras archive member by member: pause while the archive is half-written.
        if str(name).endswith(".json"):
            _announce("save", self.filename)
        return real_writestr(self, name, data, *args, **kwargs)

    os.replace, os.link = replace, link
    zipfile.ZipFile.writestr = writestr


if __name__ == "__main__":
    _patch()
    from fcn import cli

    sys.exit(cli.main(sys.argv[1:]))
