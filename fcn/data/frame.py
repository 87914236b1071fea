"""The record every many-class reader lists: one frame's image, its label file and its name."""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Frame:
    """One frame: its image, its label file in the dataset's own encoding (None if unlabelled), its name."""

    image: Path
    label: Path | None
    name: str
