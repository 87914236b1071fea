"""Run `fcn`, recording every change this process makes to the files under one folder.

    WRITE_AUDIT_DIR=runs/x WRITE_AUDIT_LOG=/tmp/w0.txt python tests/write_audit.py train --run-dir runs/x ...

A Python audit hook (sys.addaudithook) sees each open for writing, rename, link, removal and folder creation
made from Python, and appends `<event> <path>` to WRITE_AUDIT_LOG for paths under WRITE_AUDIT_DIR, line by
line, so the record survives a SIGKILL. Writes from C++ (TensorBoard's event files) are not seen here; their
file names carry the writer's process id instead. Nothing in fcn knows about this harness.
"""

import os
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Events whose every path argument is a target that changes.
CHANGES = {"os.rename", "os.link", "os.symlink", "os.remove", "os.rmdir", "os.mkdir", "os.truncate",
           "shutil.rmtree", "shutil.copyfile", "shutil.move", "os.chmod", "os.utime"}


def _paths(args):
    for arg in args:
        if isinstance(arg, (str, bytes, os.PathLike)):
            yield os.path.abspath(os.fsdecode(arg))


def _install(watched: str, log_fd: int) -> None:
    watched = os.path.abspath(watched) + os.sep

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
            paths = list(_paths([path])) if writing else []
        elif event in CHANGES:
            paths = list(_paths(args))
        else:
            return
        for path in paths:
            if (path + os.sep).startswith(watched):
                os.write(log_fd, f"{event} {path}\n".encode())

    sys.addaudithook(hook)


if __name__ == "__main__":
    log = os.open(os.environ["WRITE_AUDIT_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    _install(os.environ["WRITE_AUDIT_DIR"], log)
    from fcn import cli

    sys.exit(cli.main(sys.argv[1:]))
