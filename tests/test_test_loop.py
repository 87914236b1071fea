"""`make test`'s own pytest set-up (tests/conftest.py), run the way the Makefile runs it, on two quick files."""

import re
import subprocess
import sys

import pytest
from conftest import REPO_ROOT


@pytest.mark.slow
def test_two_workers_report_their_busy_time(tmp_path):
    files_sorted = ["tests/test_docs.py", "tests/test_recipes.py"]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadscope",
                             "--no-loadscope-reorder", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t"),
                             *files_sorted], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    # Each worker's seconds (loadscope may give both files to one worker), none above the wall time: the
    # durations come from the tests' own reports, summed per worker.
    workers = dict(re.findall(r"(gw\d+) (\d+) s", _line(result.stdout, "busy time per worker: ")))
    wall = float(re.search(r"passed in ([\d.]+)s", result.stdout).group(1))
    assert workers and set(workers) <= {"gw0", "gw1"}, result.stdout[-3000:]
    assert all(int(seconds) <= wall + 1 for seconds in workers.values()), (workers, wall)
    # The files' totals are the same seconds shared out by file: both files, adding up to the workers' sum
    # (each figure rounded to the second).
    files = dict(re.findall(r"(tests/\S+\.py) (\d+) s", _line(result.stdout, "longest files: ")))
    assert sorted(files) == files_sorted, result.stdout[-3000:]
    total = sum(map(int, files.values()))
    assert abs(total - sum(map(int, workers.values()))) <= len(files) + len(workers), (files, workers)


def _line(output: str, start: str) -> str:
    found = re.search(f"^{re.escape(start)}(.*)$", output, re.MULTILINE)
    assert found, output[-3000:]
    return found.group(1)
