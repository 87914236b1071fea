"""KITTI Road in bird's-eye view (BEV): the metric road-plane grid the benchmark scores and accepts.

The official devkit (devkit_road, "Update February 2015", BirdsEyeView.py / transform2BEV.py) maps every
0.05 m cell of x in [-10, 10] m, z in [6, 46] m on the road plane into the image with the frame's calib
(P2, R0_rect, Tr_cam_to_road) and copies the pixel it lands on: no interpolation, 0 where it lands outside.
Gt (colour codes) and result maps (8-bit confidences) go through the same lookup. This module reproduces
the devkit cell for cell, quirks included (see bev_lookup); ../shared/oracles/kitti_road_bev holds the
devkit's own output that the tests compare with.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The benchmark's grid (the devkit's defaults): lateral x, forward z, metres.
X_RANGE = (-10.0, 10.0)
Z_RANGE = (6.0, 46.0)
RESOLUTION = 0.05
BEV_SHAPE = (800, 400)  # rows (far z at the top) x columns (left x first)
CALIB_KEYS = ("P2", "R0_rect", "Tr_cam_to_road")
_CALIB_SHAPES = {"P2": (3, 4), "R0_rect": (3, 3), "Tr_cam_to_road": (3, 4)}
# gt and result names carry a type (<cat>_road_<id>, <cat>_lane_<id>) that the calib name drops.
_FRAME_NAME = re.compile(r"^(um|umm|uu)_(?:(?:road|lane)_)?(\d{6})\.png$")


@dataclass(frozen=True)
class BevLookup:
    """Where each BEV cell takes its value from: (800, 400) int64 0-based source row and column, -1 = none."""

    rows: np.ndarray
    cols: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """(800, 400) bool: the cell has a source pixel (the devkit's valid map)."""
        return self.rows >= 0


def read_calib(path) -> dict[str, np.ndarray]:
    """P2 (3x4), R0_rect (3x3) and Tr_cam_to_road (3x4) of a KITTI calib file, float64.

    Raises FileNotFoundError for a missing file and a one-line ValueError naming the file for a missing key or
    numbers that are malformed, of the wrong count or not finite.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: calib file not found")
    entries = dict(_calib_entry(line) for line in path.read_text(errors="replace").splitlines() if ":" in line)
    missing = [key for key in CALIB_KEYS if key not in entries]
    if missing:
        raise ValueError(f"{path}: calib file has no {', '.join(missing)} (needs {', '.join(CALIB_KEYS)})")
    return {key: _calib_matrix(path, key, entries[key]) for key in CALIB_KEYS}


def _calib_entry(line: str) -> tuple[str, str]:
    key, _, values = line.partition(":")
    return key.strip(), values


def _calib_matrix(path: Path, key: str, text: str) -> np.ndarray:
    shape = _CALIB_SHAPES[key]
    try:
        values = np.array([float(word) for word in text.split()], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{path}: {key} is not a list of numbers: {text.strip()[:60]!r}") from None
    if values.size != shape[0] * shape[1] or not np.isfinite(values).all():
        raise ValueError(f"{path}: {key} needs {shape[0] * shape[1]} finite numbers, got {values.size}: "
                         f"{text.strip()[:60]!r}")
    return values.reshape(shape)


def road_homography(calib: dict[str, np.ndarray]) -> np.ndarray:
    """(3, 3) float64 H with (u', v', w) = H (x, z, 1): road-plane point (Y = 0) to image, as the devkit builds it.

    M = P2 * R0 * inverse(T), R0 and T padded to 4x4; H is M's columns 0, 2 and 3 (Y = 0 drops column 1).
    """
    rectify = np.zeros((4, 4))
    rectify[:3, :3] = calib["R0_rect"]
    rectify[3, 3] = 1.0
    cam_to_road = np.vstack([calib["Tr_cam_to_road"], [0.0, 0.0, 0.0, 1.0]])
    projection = calib["P2"] @ rectify @ np.linalg.inv(cam_to_road)
    return projection[:, [0, 2, 3]]


def cell_centres() -> tuple[np.ndarray, np.ndarray]:
    """(x, z) centres of the BEV cells, each (800, 400) float32: the devkit rounds them to float32.

    Row 0 is the far edge (z = 45.975 m), column 0 the left one (x = -9.975 m).
    """
    rows, cols = np.arange(BEV_SHAPE[0]), np.arange(BEV_SHAPE[1])
    # Exact agreement with the devkit needs these float32 values; float64 centres move up to 5 cells a frame.
    z = (Z_RANGE[1] - RESOLUTION / 2 - RESOLUTION * rows).astype(np.float32)
    x = (X_RANGE[0] + RESOLUTION / 2 + RESOLUTION * cols).astype(np.float32)
    return np.broadcast_to(x[None, :], BEV_SHAPE), np.broadcast_to(z[:, None], BEV_SHAPE)


def bev_lookup(calib_path, image_shape) -> BevLookup:
    """The source pixel of every BEV cell for a frame's calib and image size (H, W).

    The devkit projects each cell in float64, then treats (u, v) as 1-based (MATLAB style) although P2 gives
    0-based pixels: a cell has a source pixel iff 1 <= v <= H and 1 <= u <= W, and it is row floor(v) - 1,
    column floor(u) - 1. That samples about one pixel up and left of the nearest one; kept, because the
    benchmark's gt and scores come from exactly this lookup.

    Raises a one-line ValueError naming the calib file when the road plane is out of view: the grid lies
    (partly) behind the camera, or no cell lands in the image.
    """
    calib_path = Path(calib_path)
    height, width = int(image_shape[0]), int(image_shape[1])
    homography = road_homography(read_calib(calib_path))
    x, z = (centre.astype(np.float64) for centre in cell_centres())
    u_h, v_h, w = (row[0] * x + row[1] * z + row[2] for row in homography)
    if not (w > 0).all():
        raise ValueError(f"{calib_path}: the road plane is out of view: part of the BEV grid (x {X_RANGE} m, "
                         f"z {Z_RANGE} m) lies behind the camera")
    u, v = u_h / w, v_h / w
    valid = (v >= 1) & (v <= height) & (u >= 1) & (u <= width)
    if not valid.any():
        raise ValueError(f"{calib_path}: the road plane is out of view: no BEV cell (x {X_RANGE} m, z {Z_RANGE} m) "
                         f"projects into the {width}x{height} (WxH) image")
    rows = np.where(valid, np.floor(np.where(valid, v, 1)) - 1, -1).astype(np.int64)
    cols = np.where(valid, np.floor(np.where(valid, u, 1)) - 1, -1).astype(np.int64)
    return BevLookup(rows, cols)


def to_bev(array: np.ndarray, lookup: BevLookup) -> np.ndarray:
    """An image-sized array in BEV: (800, 400[, C]) of the input's dtype and channels, 0 where no source pixel.

    Args:
        array: (H, W) or (H, W, C), e.g. uint8 confidences or (H, W, 3) uint8 gt colours; H, W must be the size
            the lookup was made for.
    """
    array = np.asarray(array)
    if lookup.rows.max() >= array.shape[0] or lookup.cols.max() >= array.shape[1]:
        raise ValueError(f"array of shape {array.shape} is smaller than the image its BEV lookup was made for")
    valid = lookup.valid
    bev = np.zeros(BEV_SHAPE + array.shape[2:], dtype=array.dtype)
    bev[valid] = array[lookup.rows[valid], lookup.cols[valid]]
    return bev


def calib_path(calib_dir, file_name) -> Path:
    """The calib file of an image, gt or result name: um_road_000000.png (or um_000000.png) -> um_000000.txt."""
    match = _FRAME_NAME.match(Path(file_name).name)
    if match is None:
        raise ValueError(f"{file_name}: not a KITTI Road file name (<um|umm|uu>[_road|_lane]_<6 digits>.png), "
                         "so its calib file is unknown")
    return Path(calib_dir) / f"{match.group(1)}_{match.group(2)}.txt"


def check_calib_files(file_names, calib_dir) -> None:
    """Every file has a calib file in calib_dir; a FileNotFoundError lists the missing ones (count, first names)."""
    calib_dir = Path(calib_dir)
    if not calib_dir.is_dir():
        raise FileNotFoundError(f"{calib_dir}: calib folder not found")
    needed = sorted({calib_path(calib_dir, name) for name in file_names})
    missing = [path for path in needed if not path.is_file()]
    if missing:
        listed = ", ".join(path.name for path in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise FileNotFoundError(f"{missing[0]}: calib file not found ({len(missing)} of {len(needed)} calib files "
                                f"missing in {calib_dir}: {listed})")
