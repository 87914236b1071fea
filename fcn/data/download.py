"""Download and unpack dataset archives, with a clear message where there is no internet."""

import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

# The official KITTI Road archive (the KITTI site asks you to register and accept its licence first:
# https://www.cvlibs.net/datasets/kitti/eval_road.php).
KITTI_ROAD_URL = "https://s3.eu-central-1.amazonaws.com/avg-kitti/data_road.zip"


def download(url: str, target, timeout: float = 30.0) -> Path:
    """Fetch `url` to `target` (via a .part file, renamed when complete). Existing files are kept."""
    target = Path(target)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as error:
        partial.unlink(missing_ok=True)
        raise RuntimeError(
            f"could not download {url} ({error}). Without internet, download it on another machine and "
            f"place it at {target}, then run this again."
        ) from error
    partial.replace(target)
    return target


def extract(archive, out_dir) -> Path:
    """Unpack a zip archive into out_dir (into a temporary folder first, then moved into place)."""
    archive, out_dir = Path(archive), Path(out_dir)
    if not zipfile.is_zipfile(archive):
        raise ValueError(f"{archive}: not a zip archive (incomplete download?)")
    staging = out_dir.with_name(out_dir.name + ".extracting")
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(staging)
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in staging.iterdir():
        if not (out_dir / item.name).exists():
            item.replace(out_dir / item.name)
    shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def prepare_kitti_road(out_dir="data/kitti_road", url: str = KITTI_ROAD_URL) -> Path:
    """Download and unpack data_road.zip; returns the data_road folder for `--data-dir`."""
    out_dir = Path(out_dir)
    root = out_dir / "data_road"
    if (root / "training" / "image_2").is_dir():
        return root
    extract(download(url, out_dir / "data_road.zip"), out_dir)
    return root
