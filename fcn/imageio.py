"""Reading and writing image files with errors that name the file and the problem."""

import contextlib
import os
import secrets
import struct
from pathlib import Path

import cv2
import numpy as np

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageFileError(ValueError):
    """A file that should be an image is missing, empty, corrupt or of the wrong shape."""


class FileWriteError(OSError):
    """A file could not be written (a full disk, a file-size limit, no permission): names it and says why.

    Raised after the failed write's temporary file is removed, with the file it was to replace untouched.
    """

    def __init__(self, path, error: OSError, doing: str = "cannot write"):
        super().__init__(error.errno, error.strerror or str(error))
        self.path, self.doing = Path(path), doing

    def __str__(self):
        return f"{self.path}: {self.doing} ({self.strerror})"


@contextlib.contextmanager
def reporting_write_errors(path, *temporary):
    """Turn an OSError raised inside into a FileWriteError naming `path`, removing the `temporary` files first."""
    try:
        yield
    except FileWriteError:
        raise
    except OSError as error:
        for tmp in temporary:
            Path(tmp).unlink(missing_ok=True)
        raise FileWriteError(path, error) from error


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise ImageFileError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ImageFileError(f"{path}: file is empty (0 bytes)")


def read_png_size(path) -> tuple[int, int]:
    """(height, width) of a PNG from its header alone (cheap; used to check pairs before decoding)."""
    path = Path(path)
    _check_file(path)
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise ImageFileError(f"{path}: not a PNG file (bad signature or header)")
    width, height = struct.unpack(">II", head[16:24])
    return height, width


def _decode(path, flags) -> np.ndarray:
    path = Path(path)
    _check_file(path)
    image = cv2.imread(str(path), flags)
    if image is None:
        raise ImageFileError(f"{path}: cannot decode image (corrupt or unsupported format)")
    return image


def check_label_pair(image, label, kind: str = "ground truth") -> None:
    """Both files exist and the label has its image's size (from the PNG headers: cheap, no decoding)."""
    image, label = Path(image), Path(label)
    if not image.exists():
        raise ImageFileError(f"{image}: image missing (listed for {kind} {label})")
    if not label.exists():
        raise ImageFileError(f"{label}: {kind} missing for image {image}")
    label_size, image_size = read_png_size(label), read_png_size(image)
    if label_size != image_size:
        raise ImageFileError(f"{label}: {kind} is {label_size} (HxW) but its image {image} is {image_size}")


def read_rgb(path) -> np.ndarray:
    """Decode a colour image. Returns (H, W, 3) uint8 RGB."""
    return cv2.cvtColor(_decode(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def read_unchanged(path) -> np.ndarray:
    """Decode an image keeping its channels and bit depth (label maps: (H, W) uint8 or uint16)."""
    image = _decode(path, cv2.IMREAD_UNCHANGED)
    if image.ndim == 3:
        # OpenCV decodes colour as BGR(A); callers always get RGB.
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return image


def write_png(path, image: np.ndarray) -> Path:
    """Write (H, W) or (H, W, 3) RGB uint8/uint16 to PNG atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(image)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise ImageFileError(f"{path}: could not encode array of shape {array.shape} as PNG")
    write_bytes_atomic(path, encoded.tobytes())
    return path


def write_bytes_atomic(path, data: bytes) -> None:
    """Write bytes so that a reader never sees a half-written file and nothing old is lost on failure.

    The file gets the permissions of a plain `open(path, "wb")` (0o666 less the umask), so others can read
    it; tempfile.mkstemp would create it private (0o600) and the rename would keep that.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    with reporting_write_errors(path):
        # O_EXCL: a name that is somehow taken fails loudly instead of two writers sharing one file.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with reporting_write_errors(path):
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
