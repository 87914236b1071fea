"""Benchmark submissions: a model's results on every test frame, in the form the benchmark's server accepts.

KITTI Road (devkit_road readme and simpleExample_transformTestResults2BEV.py): the server evaluates in bird's-eye
view, so results are submitted in BEV: one 8-bit confidence map (800 x 400, value / 255 = confidence of road) per
testing frame, named like the gt (<cat>_road_<id>.png), made by transforming the perspective result map with the
frame's testing/calib file. All of them go into one zip archive, at its root (no folders), as KITTI asks of
every benchmark's results.
"""

import io
import os
import re
import zipfile
from pathlib import Path

import cv2
from tqdm.auto import tqdm

from fcn import imageio, predict
from fcn.data import kitti_road

# How many missing names an error lists: enough to see the pattern, still one line.
_LISTED = 5
_FRAME_ID = re.compile(r"^(um|umm|uu)_(\d{6})$")


def check_kitti_road_testing(data_dir) -> list:
    """The testing frames of a data_road folder, each with its BEV lookup; refuses an incomplete set.

    Complete means: each category (um, umm, uu) has frames, their ids run from 000000 without gaps, and every
    image has a calib file that is well-formed and sees the road plane. Everything is checked before a model
    is loaded; errors list what is missing.

    Returns:
        (image path, bev.BevLookup) pairs, sorted by name.
    """
    testing = Path(data_dir) / "testing"
    samples = kitti_road.list_samples(data_dir, "testing")
    _check_categories(samples, testing / "image_2")
    return predict.bev_lookups([sample.image for sample in samples], testing / "calib")


def _check_categories(samples, image_dir: Path) -> None:
    ids = {category: sorted(int(s.frame_id) for s in samples if s.category == category)
           for category in kitti_road.CATEGORIES}
    empty = [category for category, category_ids in ids.items() if not category_ids]
    if empty:
        raise ValueError(f"{image_dir}: no testing frames of {', '.join(empty)}; the benchmark scores every frame "
                         f"of {', '.join(kitti_road.CATEGORIES)}")
    missing = [f"{category}_{number:06d}.png" for category, category_ids in ids.items()
               for number in sorted(set(range(category_ids[-1] + 1)) - set(category_ids))]
    if missing:
        listed = ", ".join(missing[:_LISTED]) + (f" and {len(missing) - _LISTED} more" if len(missing) > _LISTED else "")
        raise ValueError(f"{image_dir}: {len(missing)} testing frames missing (each category's ids run from 000000 "
                         f"without gaps): {listed}")


def write_kitti_road_submission(model_path, data_dir, output, image_size=None, tta_scales=(1.0,),
                                tta_flip: bool = False, progress: bool = True) -> dict:
    """Run a KITTI Road model on every testing frame and write the BEV results into one zip, atomically.

    Args:
        output: the .zip to write (replaced whole, or left as it was if anything fails).
        image_size: (h, w) to run the network at; None uses the size recorded in the model file.
    Returns:
        {"output": Path, "frames": {category: count}, "bytes": size of the archive}.
    """
    output = _check_output(output)
    predict.read_model_info(model_path)  # a broken model file is named before the frames are read
    lookups = check_kitti_road_testing(data_dir)
    image_size = image_size or predict.run_image_size(model_path)
    model = predict.load_model(model_path)
    road_id = predict.road_class_of(model_path, model)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
        for path, lookup in tqdm(lookups, desc="submit", disable=not progress):
            confidence = predict.predict_bev_confidence(model, imageio.read_rgb(path), lookup, image_size, road_id,
                                                        tta_scales=tta_scales, tta_flip=tta_flip)
            archive.writestr(kitti_road.gt_name(path.name), _png_bytes(confidence))
    imageio.write_bytes_atomic(output, buffer.getvalue())
    frames = {category: sum(_FRAME_ID.match(path.stem).group(1) == category for path, _ in lookups)
              for category in kitti_road.CATEGORIES}
    return {"output": output, "frames": frames, "bytes": output.stat().st_size}


def _check_output(output) -> Path:
    output = Path(output)
    if output.suffix.lower() != ".zip":
        raise ValueError(f"{output}: the submission must be a .zip archive")
    if output.is_dir():
        raise ValueError(f"{output}: is a folder, not a file")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"{output.parent}: folder not found (the archive {output.name} goes there)")
    if not os.access(output.parent, os.W_OK):  # before minutes of predicting, not after
        raise PermissionError(f"{output.parent}: not writable, so {output.name} cannot be written there")
    return output


def _png_bytes(array) -> bytes:
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise ValueError(f"could not encode an array of shape {array.shape} as PNG")
    return encoded.tobytes()
