"""Model files: a `.keras` archive that also says what the model is for.

Each `.keras` file `fcn` writes carries one more member, `fcn.json`, beside Keras' own: the dataset the model
was trained on, its class names, the class that means "road" (KITTI Road models), the encoder, the image
size it runs at and the precision it trained in. The file alone then decides how it is used and scored,
wherever it is copied.

A model trained in a mixed precision (bfloat16 or float16 arithmetic, float32 variables) is written as the
float32 model it also is: its layers' policies are set to float32 in the file's config, so `predict`, `export`
and TFLite use it exactly like a model trained in float32. Resuming a run loads only the weights and the
optimizer's state from a checkpoint, into a model built in the run's own precision.

Loading needs fcn's layers registered with Keras: `import fcn` does that, after which plain
`keras.models.load_model("best.keras")` works.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from fcn.imageio import FileWriteError

if TYPE_CHECKING:  # Keras is imported where a model is loaded or run, not on import
    import keras

INFO_MEMBER = "fcn.json"
# What a write raises for lack of room: a full disk, a file-size limit, a full quota.
NO_ROOM = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


class ModelFileError(ValueError):
    """A model file that is missing, corrupt, or does not fit the data it is used with."""


MIXED_POLICIES = ("mixed_bfloat16", "mixed_float16")


def model_info(dataset: str, class_names, image_size, encoder: str, road_class: int | None = None,
               precision: str = "float32") -> dict:
    """The description stored in a model file (see module docstring)."""
    return {"dataset": dataset, "class_names": list(class_names), "road_class": road_class,
            "image_size": [int(v) for v in image_size], "encoder": encoder, "precision": precision}


def save_model(model: keras.Model, path, info: dict | None = None) -> Path:
    """Write a .keras file (with `info` inside) via a temporary name, so a crash never leaves half a file.

    A failed write (a full disk) removes the temporary files, leaves an earlier file at `path` as it was and
    raises FileWriteError naming `path`.
    """
    path = Path(path)
    try:
        return _write_model(model, path, info)
    except OSError as error:
        for tmp in path.parent.glob(f".{path.stem}.*.keras"):  # the names _write_model writes first
            tmp.unlink(missing_ok=True)
        raise FileWriteError(path, error) from error


def _write_model(model: keras.Model, path, info: dict | None = None) -> Path:
    """Write a .keras file (with `info` inside) via a temporary name, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.keras")  # Keras insists on the .keras suffix
    model.save(tmp)
    if any(layer.dtype_policy.name in MIXED_POLICIES for layer in model.layers):
        _rewrite_member(tmp, path.with_name(f".{path.stem}.rewrite.keras"), "config.json",
                        lambda data: json.dumps(float32_config(json.loads(data))).encode())
    if info is not None:
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(INFO_MEMBER, json.dumps(info, indent=2))
    _fsync(tmp)
    os.replace(tmp, path)
    return path


def float32_config(config):
    """A Keras model config (nested dicts and lists) with every mixed policy and 16-bit float tensor as float32."""
    if isinstance(config, list):
        return [float32_config(item) for item in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "DTypePolicy" and config.get("config", {}).get("name") in MIXED_POLICIES:
        return {**config, "config": {**config["config"], "name": "float32"}}
    return {key: "float32" if key == "dtype" and value in ("bfloat16", "float16") else float32_config(value)
            for key, value in config.items()}


def _rewrite_member(path: Path, copy: Path, member: str, change) -> None:
    # A zip member cannot be replaced in place: copy the archive with `member` changed, then rename.
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(copy, "w") as target:
        for item in source.infolist():
            if item.filename == member:
                target.writestr(item, change(source.read(item)))
                continue
            with source.open(item) as reader, target.open(item, "w") as writer:
                shutil.copyfileobj(reader, writer, 1 << 20)
    os.replace(copy, path)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _check_archive(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: model file is empty (0 bytes)")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: model file is corrupt or truncated (not a .keras zip archive)")


def read_info(path) -> dict | None:
    """The `fcn.json` description of a model file, or None for a .keras file written without one."""
    path = Path(path)
    _check_archive(path)
    try:
        with zipfile.ZipFile(path) as archive:
            if INFO_MEMBER not in archive.namelist():
                return None
            return json.loads(archive.read(INFO_MEMBER))
    except (zipfile.BadZipFile, json.JSONDecodeError, OSError) as error:
        raise ModelFileError(f"{path}: model file is corrupt ({error})") from None


def load_model(path, compile: bool = False) -> keras.Model:
    """Load a .keras model (for inference: not compiled by default); a broken file is reported as such."""
    # Keras here, not on import: reading a file's description and checking the archive need no TensorFlow.
    import keras

    import fcn.losses  # noqa: F401 - registers the custom loss and metric, for loading compiled models
    import fcn.model  # noqa: F401 - registers the custom layers

    path = Path(path)
    _check_archive(path)
    try:
        return keras.saving.load_model(path, compile=compile)
    except Exception as error:  # noqa: BLE001 - Keras reports a damaged archive in many ways
        if isinstance(error, OSError) and error.errno in NO_ROOM:
            # Keras unpacks the whole archive into a temporary folder to load it: a full disk, not a bad file.
            import tempfile

            raise FileWriteError(path, error, doing="cannot be loaded: unpacking it into the temporary folder "
                                 f"{tempfile.gettempdir()} failed") from None
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFileError(f"{path}: model file is corrupt or not an fcn model ({first_line})") from None
