"""Download, verify and unpack dataset archives, with a clear message where there is no internet.

Downloads go to `<file>.part` and are renamed when complete; a later run resumes a `.part` file with an
HTTP Range request. Progress bars show on terminals and in notebooks only, so logs stay readable.
"""

import hashlib
import http.client
import re
import shutil
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

from tqdm.auto import tqdm

from fcn.imageio import FileWriteError, reporting_write_errors

# The official KITTI Road archive (the KITTI site asks you to register and accept its licence first:
# https://www.cvlibs.net/datasets/kitti/eval_road.php).
KITTI_ROAD_URL = "https://s3.eu-central-1.amazonaws.com/avg-kitti/data_road.zip"
# Seconds without an answer before giving up: without internet a run must fail at once, not after minutes.
TIMEOUT = 10.0
_CHUNK = 1 << 20
# What a broken connection raises: URLError and HTTPError are OSErrors; a body cut short is IncompleteRead.
_NETWORK_ERRORS = (OSError, http.client.HTTPException)


def download(url: str, target, timeout: float = TIMEOUT) -> Path:
    """Fetch `url` to `target` via target.part, resuming one left by an earlier run. Existing files are kept.

    Raises RuntimeError saying where to put the file by hand when the address cannot be reached.
    """
    target = Path(target)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        _fetch(url, partial, timeout)
    except FileWriteError:
        raise  # a full disk, not the network: the bytes fetched so far stay in the .part for the next run
    except _NETWORK_ERRORS as error:
        raise RuntimeError(_offline_message(url, target, partial, error)) from error
    partial.replace(target)
    return target


def _fetch(url: str, partial: Path, timeout: float) -> None:
    offset = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code != 416:
            raise
        if _total_size(error.headers) == offset:
            return  # the .part already holds the whole file (the last run stopped before renaming it)
        partial.unlink()  # longer than the file on the server: not a part of it
        raise OSError(f"{partial} did not fit the file on the server and was removed") from error
    with response:
        if getattr(response, "status", None) != 206:
            offset = 0  # a server (or a file:// address) that ignores Range sends the whole file again
        total = _total_size(response.headers)
        with (
            reporting_write_errors(partial),
            open(partial, "ab" if offset else "wb") as out,
            _progress(partial.stem, total, offset) as bar,
        ):
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
    size = partial.stat().st_size
    if total is not None and size != total:
        raise OSError(f"the connection closed after {size:,} of {total:,} bytes")


def _total_size(headers) -> int | None:
    """The whole file's size: from Content-Range ('bytes 100-199/200', 'bytes */200') or Content-Length."""
    match = re.search(r"/(\d+)\s*$", headers.get("Content-Range") or "")
    if match:
        return int(match.group(1))
    length = headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _progress(name: str, total, initial: int = 0):
    # disable=None: no bar where output is not a terminal (logs, tests); notebooks show theirs anyway.
    return tqdm(
        total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=None
    )


def _offline_message(url: str, target: Path, partial: Path, error: Exception) -> str:
    reason = (str(getattr(error, "reason", "") or error) or type(error).__name__).strip().splitlines()[0]
    kept = partial.stat().st_size if partial.is_file() else 0
    if not kept:
        partial.unlink(missing_ok=True)
    resume = (
        f"; the {kept:,} bytes fetched so far stay in {partial} and the next run resumes there"
        if kept
        else ""
    )
    return (
        f"could not download {url} ({reason}){resume}. Without internet, download it on another machine "
        f"and place it at {target}, then run this again."
    )


def file_md5(path) -> str:
    """The md5 hex digest of a file, read in chunks (archives can be larger than memory)."""
    path = Path(path)
    digest = hashlib.md5()
    with open(path, "rb") as stream, _progress(f"md5 {path.name}", path.stat().st_size) as bar:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def check_md5(path, expected: str) -> None:
    """Raise ValueError when a file's md5 differs from `expected`; the file is first renamed to .rejected,
    so that the next run fetches it again instead of failing on the same file forever."""
    path = Path(path)
    actual = file_md5(path)
    if actual != expected.lower():
        rejected = path.with_name(path.name + ".rejected")
        path.replace(rejected)
        raise ValueError(
            f"{path}: md5 {actual}, expected {expected.lower()} (damaged, or not the official file); "
            f"moved to {rejected.name}, run again to fetch it anew"
        )


def extract(archive, out_dir, strip: str = "") -> Path:
    """Unpack a zip archive into out_dir (into a temporary folder first, then moved into place).

    strip: unpack only the members under this folder of the archive, without it (e.g. "repo-commit/CamVid/").
    Items already in out_dir are kept. Raises ValueError for a truncated or damaged archive.
    """
    archive, out_dir = Path(archive), Path(out_dir)
    if not zipfile.is_zipfile(archive):
        raise ValueError(f"{archive}: not a zip archive (incomplete download?)")
    staging = out_dir.with_name(out_dir.name + ".extracting")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _extract_members(archive, staging, out_dir, strip)
        out_dir.mkdir(parents=True, exist_ok=True)
        for item in staging.iterdir():
            if not (out_dir / item.name).exists():
                item.replace(out_dir / item.name)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:  # zipfile checks every member's CRC
        raise ValueError(f"{archive}: damaged archive ({error}); delete it and run again") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _extract_members(archive: Path, staging: Path, out_dir: Path, strip: str) -> None:
    staging.mkdir(parents=True)
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if m.filename.startswith(strip) and m.filename != strip]
        if not members:
            raise ValueError(f"{archive}: no {strip or 'files'} inside (not the expected archive?)")
        for member in members:
            # zipfile matches the member by orig_filename, so renaming it only changes where it lands.
            member.filename = member.filename[len(strip) :]
            with reporting_write_errors(out_dir / member.filename):  # named where it was to land
                zf.extract(member, staging)


def prepare_kitti_road(out_dir="data/kitti_road", url: str = KITTI_ROAD_URL) -> Path:
    """Download and unpack data_road.zip; returns the data_road folder for `--data-dir`.

    No verification: `fcn data prepare kitti_road` (fcn.data.prepare) also checks the archive and the frames.
    """
    out_dir = Path(out_dir)
    root = out_dir / "data_road"
    if (root / "training" / "image_2").is_dir():
        return root
    extract(download(url, out_dir / "data_road.zip"), out_dir)
    return root
