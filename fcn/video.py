"""Video: segment every frame of a video file, a folder of frames or a camera, and write an overlay video.

Frames keep their size and order; each gets the predicted classes painted over it (fcn.viz.overlay, the
colours of `fcn predict --format overlay`) and a legend of the class colours. A .keras model and a .tflite
export (fcn/export.py) run alike, through fcn.predict. The video is written with OpenCV's mp4v codec to a
temporary name and renamed when complete, so a failed run leaves no half-written file.

`render_drive` draws a synthetic drive (fcn.data.synthetic's street seen by a camera moving forward) for
the notebooks and tests.
"""

import dataclasses
import itertools
import math
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from fcn import predict, viz
from fcn.data import DATASETS, kitti_road, synthetic
from fcn.imageio import FileWriteError, ImageFileError, read_png_size, read_rgb

# A folder of frames has no frame rate of its own: KITTI's cameras record at 10 Hz.
FOLDER_FPS = 10.0
CAMERA_FPS = 30.0  # where a camera does not say
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
FOURCC = "mp4v"  # MPEG-4 part 2: every OpenCV build with FFmpeg writes it, players read it
# FFmpeg's own messages (e.g. "moov atom not found" for a broken file) would add lines to the one-line
# errors below: -8 is FFmpeg's AV_LOG_QUIET. OpenCV reads this when it opens a video.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclasses.dataclass
class VideoSource:
    """Frames to segment: (H, W, 3) uint8 RGB, in order; fps and count where the source knows them."""

    name: str
    frames: Iterator[np.ndarray]
    fps: float | None
    count: int | None
    live: bool = False  # a camera: runs until stopped (Ctrl-C) or max_frames


def open_source(input_path=None, camera: int | None = None) -> VideoSource:
    """A video file, a folder of frame images (sorted by name) or a camera; errors name the file."""
    if (input_path is None) == (camera is None):
        raise ValueError("give either an input (a video file or a folder of frames) or a camera, not both")
    if camera is not None:
        return _open_camera(camera)
    path = Path(input_path)
    if path.is_dir():
        return _open_folder(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file or frame folder")
    if path.stat().st_size == 0:
        raise ImageFileError(f"{path}: video file is empty (0 bytes)")
    return _open_capture(cv2.VideoCapture(str(path)), str(path), live=False)


def _open_folder(folder: Path) -> VideoSource:
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not frames:
        raise FileNotFoundError(f"{folder}: no .png or .jpg frames")
    for frame in frames:  # from the headers, before any work: a broken frame is found up front
        if frame.suffix.lower() == ".png":
            read_png_size(frame)
    return VideoSource(str(folder), (read_rgb(frame) for frame in frames), None, len(frames))


def _open_camera(index: int) -> VideoSource:
    # OpenCV logs a warning per backend it tries; the one-line error below says it all.
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        capture = cv2.VideoCapture(index)
    finally:
        cv2.utils.logging.setLogLevel(previous)
    if not capture.isOpened():
        raise OSError(f"camera {index}: cannot be opened (no such device, or in use)")
    return _open_capture(capture, f"camera {index}", live=True)


def _open_capture(capture, name: str, live: bool) -> VideoSource:
    ok, first = capture.read() if capture.isOpened() else (False, None)
    if not ok:
        capture.release()
        raise ImageFileError(f"{name}: cannot read a frame (not a video, corrupt, or an unsupported format)")
    fps = capture.get(cv2.CAP_PROP_FPS)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return VideoSource(name, _capture_frames(capture, first), fps if 0 < fps < 1000 else None,
                       count if count > 0 and not live else None, live)


def _capture_frames(capture, first) -> Iterator[np.ndarray]:
    try:
        frame = first
        while frame is not None:
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            ok, frame = capture.read()
            frame = frame if ok else None
    finally:
        capture.release()


def segment_video(model_path, output, input_path=None, camera: int | None = None, fps: float | None = None,
                  image_size=None, max_frames: int | None = None, legend: bool = True,
                  progress: bool = True) -> dict:
    """Segment every frame of a source and write the overlays as an .mp4 video. What `fcn video` runs.

    Args:
        model_path: a .keras file or a .tflite export. image_size: (h, w) to run the network at; None: the
            model's recorded size. fps: of the written video; None: the source's (10 for a folder of frames).
        max_frames: stop after this many frames (a camera otherwise runs until Ctrl-C).
    Returns:
        {"output", "frames", "size": (width, height), "fps", "seconds", "frames_per_second", "resized"}:
        frames_per_second is the speed of the whole loop (read, segment, draw, encode).
    """
    output = Path(output)
    _check_output(output)
    source = open_source(input_path, camera)  # the source is checked before the model is loaded
    info = predict.read_model_info(model_path)
    image_size = image_size or predict.run_image_size(model_path)
    model = predict.load_model(model_path)
    class_names, palette = class_colours(info, model.output_shape[-1], model_path)
    fps = fps or source.fps or (CAMERA_FPS if source.live else FOLDER_FPS)
    total = source.count if max_frames is None or source.count is None else min(max_frames, source.count)
    bar = tqdm(itertools.islice(source.frames, max_frames), total=total, desc="video", unit="frame",
               disable=not progress)
    start = time.perf_counter()
    with _VideoWriter(output, fps) as writer:
        try:
            for frame in bar:
                writer.write(segment_frame(model, frame, image_size, class_names, palette, legend))
        except KeyboardInterrupt:
            if not source.live:  # a camera has no end: Ctrl-C stops it and keeps the video
                raise
        finally:
            source.frames.close()  # releases a capture that max_frames left open
    seconds = time.perf_counter() - start
    return {"output": output, "frames": writer.frames, "size": writer.size, "fps": fps, "seconds": seconds,
            "frames_per_second": writer.frames / seconds if seconds > 0 else float("nan"),
            "resized": writer.resized}


def segment_frame(model, frame: np.ndarray, image_size, class_names, palette: np.ndarray,
                  legend: bool = True) -> np.ndarray:
    """One frame's picture: its predicted classes painted over it (fcn.viz.overlay) and a legend.

    Args:
        model: a Keras FCN or a TFLiteModel. frame: (H, W, 3) uint8 RGB. image_size: (h, w) the network
            runs at (None: the frame's own size). class_names, palette: see class_colours.
    Returns:
        (H, W, 3) uint8 RGB. With two classes (road vs not road) class 0 stays unpainted, as in fcn predict.
    """
    skip_ids = (0,) if len(class_names) == 2 else ()
    labels = predict.predict_labels(model, frame, image_size)
    picture = viz.overlay(frame, labels, palette, skip_ids=skip_ids)
    return draw_legend(picture, class_names, palette, skip_ids) if legend else picture


def _check_output(output: Path) -> None:
    if output.suffix.lower() != ".mp4":
        raise ValueError(f"{output}: the video is written as MPEG-4 ({FOURCC}); name it .mp4")
    if output.is_dir():
        raise ValueError(f"{output}: is a folder, not a file")
    parent = next(p for p in output.absolute().parents if p.exists())
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{parent}: not writable, so {output} cannot be written")


def class_colours(info: dict | None, num_classes: int, model_path) -> tuple[tuple[str, ...], np.ndarray]:
    """Class names and (C, 3) uint8 RGB colours of a model, from the dataset its description names."""
    if info is not None and info.get("dataset") in DATASETS:
        dataset = DATASETS[info["dataset"]]
        return dataset.class_names, dataset.palette
    if num_classes == 2:  # road vs not road, as fcn predict assumes for a model without a description
        return tuple(kitti_road.CLASS_NAMES), kitti_road.PALETTE
    raise ValueError(f"{model_path}: no fcn description with the model, so its class colours are unknown")


class _VideoWriter:
    """cv2.VideoWriter to a temporary name, renamed to `path` once complete; frames (RGB) set the size."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = path, fps
        # OpenCV picks the container from the suffix, so the temporary name ends in .mp4 too.
        self.tmp = path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp.mp4")
        self.writer, self.size, self.frames, self.resized = None, None, 0, 0

    def write(self, frame: np.ndarray) -> None:
        height, width = frame.shape[:2]
        if self.writer is None:
            self.size = (width, height)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*FOURCC), self.fps, self.size)
            if not self.writer.isOpened():
                raise OSError(f"{self.path}: OpenCV cannot write {FOURCC} video here")
        if (width, height) != self.size:  # a video has one size: later frames of another are resized to it
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_LINEAR)
            self.resized += 1
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def __enter__(self):
        return self

    def __exit__(self, error_type, error, traceback):
        if self.writer is not None:
            self.writer.release()
        try:
            if error_type is None:
                if self.frames == 0:
                    raise ValueError(f"{self.path}: no frames to write")
                if not is_complete_mp4(self.tmp):  # OpenCV does not report a failed write (a full disk)
                    raise FileWriteError(self.path, OSError(None, "the video came out incomplete: is the disk full?"))
                os.replace(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)
        return False


def is_complete_mp4(path) -> bool:
    """Whether an MP4 file's top-level boxes fill it exactly and include the index ("moov"), which is
    written last: a write cut short (a full disk) leaves it out."""
    path = Path(path)
    size, offset, kinds = path.stat().st_size, 0, set()
    with open(path, "rb") as f:
        while offset < size:
            f.seek(offset)
            header = f.read(16)
            if len(header) < 8:
                return False
            length, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if length == 1 and len(header) == 16:  # a 64-bit size follows
                length = int.from_bytes(header[8:16], "big")
            if length < 8:
                return False
            kinds.add(kind)
            offset += length
    return offset == size and b"moov" in kinds


def legend_panel(class_names, palette: np.ndarray, frame_height: int, skip_ids=()) -> np.ndarray:
    """A legend of class colours (a swatch and a name per class, in columns that fit the frame's height).

    Returns:
        (h, w, 3) uint8 RGB on a dark background, to be blended into a corner of the frame.
    """
    scale = float(np.clip(frame_height / 900, 0.3, 1.0))  # text about 2 % of the frame's height
    entries = [(name, colour) for i, (name, colour) in enumerate(zip(class_names, palette, strict=True))
               if i not in skip_ids]
    (text_width, text_height), baseline = max((cv2.getTextSize(name, _FONT, scale, 1) for name, _ in entries),
                                               key=lambda size: size[0][0])
    pad, swatch = max(2, round(6 * scale)), text_height + baseline
    row, column = swatch + pad, 4 * pad + swatch + text_width
    columns = math.ceil(len(entries) / max(1, (frame_height - 3 * pad) // row))
    rows = math.ceil(len(entries) / columns)  # the columns as even as they can be
    panel = np.full((pad + rows * row, columns * column, 3), 30, np.uint8)
    for i, (name, colour) in enumerate(entries):
        x, y = (i // rows) * column + pad, pad + (i % rows) * row
        cv2.rectangle(panel, (x, y), (x + swatch - 1, y + swatch - 1), tuple(int(c) for c in colour), -1)
        cv2.putText(panel, name, (x + swatch + pad, y + text_height), _FONT, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return panel


def draw_legend(frame: np.ndarray, class_names, palette: np.ndarray, skip_ids=(), opacity: float = 0.8) -> np.ndarray:
    """The frame with a legend of class colours blended into its top-left corner (cropped to fit)."""
    panel = legend_panel(class_names, palette, frame.shape[0], skip_ids)
    margin = max(1, frame.shape[0] // 100)
    height = min(panel.shape[0], frame.shape[0] - margin)
    width = min(panel.shape[1], frame.shape[1] - margin)
    out = frame.copy()
    region = out[margin:margin + height, margin:margin + width]
    blended = (1 - opacity) * region + opacity * panel[:height, :width]
    region[:] = np.round(blended).astype(np.uint8)
    return out


def render_drive(num_frames: int, height: int, width: int, seed: int = 0,
                 zoom_per_frame: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic drive: one street scene (fcn.data.synthetic), the camera moving forward frame by frame.

    The motion is an approximation: each frame zooms by `zoom_per_frame` into the street's vanishing point
    (the point a forward-moving camera drives towards), so everything moves outwards from it, as in a drive,
    but near and far things at the same rate.

    Returns:
        images (N, H, W, 3) uint8 RGB and labels (N, H, W) uint8 CamVid ids (synthetic.CAMVID_CLASSES; 11 = void).
    """
    if num_frames < 1 or not 0 <= zoom_per_frame < 1:
        raise ValueError(f"need num_frames >= 1 and zoom_per_frame in [0, 1), got {num_frames}, {zoom_per_frame}")
    total_zoom = (1 + zoom_per_frame) ** (num_frames - 1)
    # Drawn large enough that the last, most zoomed-in frame still has a pixel of the scene per pixel.
    scene = synthetic.render_scene(synthetic.scene_rng(seed, "drive"), math.ceil(height * total_zoom),
                                   math.ceil(width * total_zoom))
    images, labels = [], []
    for index in range(num_frames):
        x0, y0, x1, y1 = _zoom_window(scene, (1 + zoom_per_frame) ** index)
        crop = (slice(round(y0), round(y1)), slice(round(x0), round(x1)))
        images.append(cv2.resize(scene.image[crop], (width, height), interpolation=cv2.INTER_AREA))
        labels.append(cv2.resize(scene.labels[crop], (width, height), interpolation=cv2.INTER_NEAREST))
    return np.stack(images), np.stack(labels)


def _zoom_window(scene, zoom: float) -> tuple[float, float, float, float]:
    # Scaling about the vanishing point keeps that point still, as driving straight towards it does.
    height, width = scene.labels.shape
    col, row = float(np.clip(scene.vanishing_col, 0, width)), float(np.clip(scene.horizon_row, 0, height))
    return col - col / zoom, row - row / zoom, col + (width - col) / zoom, row + (height - row) / zoom
