"""The check every label reader makes: a value or colour outside its dataset's encoding is an error.

A foreign value means the file is not what the reader thinks it is (a resized mask with blended colours, an
instance map read as ids, another dataset's colour code); turning it into "ignore" would hide that.
"""

import contextlib
from pathlib import Path

import numpy as np

from fcn.imageio import ImageFileError

# Enough to recognise the cause (e.g. a bilinear resize's in-between colours) in a one-line message.
MAX_LISTED = 3


def check_known(values: np.ndarray, known: np.ndarray, what: str) -> None:
    """Raise ValueError naming the values (or colours) where `known` is False, with their pixel counts.

    Args:
        values: (H, W) integer values or (H, W, 3) colours, as read from the file.
        known: (H, W) bool, True where the value belongs to the encoding.
        what: the start of the message, e.g. "values outside CamVid's 0..11".
    """
    if known.all():
        return
    raise ValueError(f"{what}: {describe_values(values[~known])}")


def describe_values(foreign: np.ndarray) -> str:
    """'12 in 40 px, 200 in 3 px and 2 more (47 px in all)': the most frequent first, at most MAX_LISTED.

    Args:
        foreign: (N,) values or (N, 3) colours, one per pixel.
    """
    distinct, counts = np.unique(foreign, axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    listed = ", ".join(f"{_spell(distinct[i])} in {counts[i]} px" for i in order[:MAX_LISTED])
    hidden = len(distinct) - MAX_LISTED
    return listed if hidden <= 0 else f"{listed} and {hidden} more ({len(foreign)} px in all)"


def _spell(value: np.ndarray) -> str:
    return str(tuple(int(v) for v in value)) if np.ndim(value) else str(int(value))


@contextlib.contextmanager
def naming_file(path):
    """Turn a ValueError about a label array into an ImageFileError that starts with the file's path."""
    try:
        yield
    except ImageFileError:
        raise  # already names its file
    except ValueError as error:
        raise ImageFileError(f"{Path(path)}: {error}") from error
