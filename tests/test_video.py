"""fcn video (fcn/video.py): frames in, overlay video out, with .keras and .tflite models, as a person runs it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fcn import cli, export, modelfile, video
from fcn.data import DATASETS, kitti_road, synthetic
from fcn.imageio import ImageFileError, write_png
from fcn.model import build_fcn8

MODEL_SIZE = (64, 96)
FRAME_SIZE = (72, 136)  # (height, width) of the frames: not the model's, so predictions are resized back
FCN = Path(sys.executable).parent / "fcn"
# TensorFlow, imported by this process, sets TF_CPP_MIN_LOG_LEVEL=1; a person's shell has none.
ENV = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}


def run_fcn(*args) -> subprocess.CompletedProcess:
    return subprocess.run([FCN, *map(str, args)], capture_output=True, text=True, timeout=300, env=ENV)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A road model (random weights, score layers too, so that it paints something) as .keras and .tflite."""
    folder = tmp_path_factory.mktemp("video-models")
    model = build_fcn8(2, encoder="vgg16_mini", weights=None)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.name.startswith("score"):  # zero-initialised: every pixel would be class 0
            layer.set_weights([rng.normal(0, 0.05, w.shape).astype(np.float32) for w in layer.get_weights()])
    info = modelfile.model_info("kitti_road", kitti_road.CLASS_NAMES, MODEL_SIZE, "vgg16_mini", road_class=1)
    keras_path = modelfile.save_model(model, folder / "road.keras", info)
    tflite_path = export.export_tflite(model, folder / "road.tflite", MODEL_SIZE, info=info)
    return {"model": model, "keras": keras_path, "tflite": tflite_path}


@pytest.fixture(scope="module")
def drive():
    """Nine frames of a synthetic drive: (9, 72, 136, 3) uint8 images, (9, 72, 136) labels."""
    return video.render_drive(9, *FRAME_SIZE, seed=4)


def _write_frames(folder: Path, images) -> Path:
    for index, image in enumerate(images):
        write_png(folder / f"frame_{index:04d}.png", image)
    return folder


def _read_video(path: Path):
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames, fps


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    return lines[0]


def test_render_drive_moves_the_camera_forward(drive):
    images, labels = drive
    assert images.shape == (9, *FRAME_SIZE, 3) and images.dtype == np.uint8
    assert labels.shape == (9, *FRAME_SIZE) and labels.dtype == np.uint8 and labels.max() <= synthetic.VOID
    again, _ = video.render_drive(9, *FRAME_SIZE, seed=4)
    assert np.array_equal(images, again)  # same seed, same drive
    steps = [np.abs(images[i + 1].astype(int) - images[i]).mean() for i in range(8)]
    assert all(step > 0.5 for step in steps), steps  # every frame moves on
    # Zooming in, everything moves away from the vanishing point: the sky at the top shrinks out of view.
    sky = [(frame_labels[:8] == synthetic.CAMVID_CLASSES.index("Sky")).mean() for frame_labels in labels]
    assert sky[-1] <= sky[0]
    still, _ = video.render_drive(3, *FRAME_SIZE, seed=4, zoom_per_frame=0.0)
    assert np.array_equal(still[0], still[2])


@pytest.mark.slow
def test_video_from_a_frame_folder_keeps_size_order_and_rate(models, drive, tmp_path):
    images, _ = drive
    frames = _write_frames(tmp_path / "frames", images)
    write_png(frames / "frame_9999.png", images[0][:64, :128])  # last by name, of another size
    output = tmp_path / "out" / "drive.mp4"
    result = video.segment_video(models["keras"], output, input_path=frames, progress=False)
    assert result["frames"] == 10 and result["size"] == (136, 72) and result["fps"] == video.FOLDER_FPS
    assert result["resized"] == 1 and result["frames_per_second"] > 0
    written, fps = _read_video(output)
    assert len(written) == 10 and fps == video.FOLDER_FPS
    assert all(frame.shape == (*FRAME_SIZE, 3) for frame in written)
    class_names, palette = video.class_colours(modelfile.read_info(models["keras"]), 2, models["keras"])
    for index in (0, 5):  # mp4v is lossy: close to what was drawn, and in the same order
        expected = video.segment_frame(models["model"], images[index], MODEL_SIZE, class_names, palette)
        errors = [np.abs(written[index].astype(int) - candidate).mean() for candidate in
                  (expected, video.segment_frame(models["model"], images[index + 1], MODEL_SIZE, class_names, palette))]
        assert errors[0] < 6 and errors[0] < errors[1], errors
    assert sorted(p.name for p in output.parent.iterdir()) == ["drive.mp4"]  # no temporary file left


@pytest.mark.slow
def test_cli_video_from_a_video_file_with_a_tflite_model(models, drive, tmp_path):
    images, _ = drive
    source = tmp_path / "drive.mp4"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 12.5, FRAME_SIZE[::-1])
    for image in images:
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    output = tmp_path / "segmented.mp4"
    result = run_fcn("video", "--model", models["tflite"], "--input", source, "--output", output)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(rf"wrote 9 frames \(136x72, 12.5 fps\) to {output} in [\d.]+ s: [\d.]+ frames/s", result.stdout)
    written, fps = _read_video(output)
    assert len(written) == 9 and fps == 12.5 and written[0].shape == (*FRAME_SIZE, 3)


def test_cli_video_sets_the_rate_and_stops_after_max_frames(models, drive, tmp_path, capsys):
    frames = _write_frames(tmp_path / "frames", drive[0])
    output = tmp_path / "five.mp4"
    assert cli.main(["video", "--model", str(models["keras"]), "--input", str(frames), "--output", str(output),
                     "--fps", "5", "--max-frames", "4", "--no-legend"]) == 0
    assert "wrote 4 frames (136x72, 5 fps)" in capsys.readouterr().out
    written, fps = _read_video(output)
    assert len(written) == 4 and fps == 5


@pytest.mark.slow
def test_cli_video_refuses_a_broken_video_in_one_line(models, tmp_path):
    source = tmp_path / "broken.mp4"
    source.write_bytes(b"not a video" * 100)  # FFmpeg's own complaint must not add a line
    result = run_fcn("video", "--model", models["keras"], "--input", source, "--output", tmp_path / "out.mp4")
    assert result.returncode == 1, result.stderr[-3000:]
    assert _one_error_line(result.stderr) == (f"error: {source}: cannot read a frame (not a video, corrupt, or an "
                                              "unsupported format)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4"]


@pytest.mark.parametrize("name, content, message", [("missing.mp4", None, "no such video file or frame folder"),
                                                    ("empty.mp4", b"", "video file is empty (0 bytes)")])
def test_cli_video_refuses_a_missing_or_empty_input_in_one_line(models, tmp_path, capfd, name, content, message):
    source = tmp_path / name
    if content is not None:
        source.write_bytes(content)
    assert cli.main(["video", "--model", str(models["keras"]), "--input", str(source), "--output",
                     str(tmp_path / "out.mp4")]) == 1
    assert _one_error_line(capfd.readouterr().err) == f"error: {source}: {message}"
    assert not (tmp_path / "out.mp4").exists()


def test_a_broken_frame_is_named_and_leaves_no_video(models, drive, tmp_path, capsys):
    frames = _write_frames(tmp_path / "frames", drive[0][:3])
    broken = frames / "frame_0001.png"
    broken.write_bytes(broken.read_bytes()[:100])  # the header survives: only decoding finds it
    output = tmp_path / "out" / "drive.mp4"
    with pytest.raises(ImageFileError, match=f"{broken}: cannot decode image"):
        video.segment_video(models["keras"], output, input_path=frames, progress=False)
    assert not output.parent.exists() or not list(output.parent.iterdir())  # no video, no temporary file
    broken.write_bytes(b"GIF89a" + bytes(100))  # a bad header is found before any work
    assert cli.main(["video", "--model", str(models["keras"]), "--input", str(frames), "--output", str(output)]) == 1
    assert f"error: {broken}: not a PNG file" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("arguments, message", [
    (["--output", "{tmp}/out.avi"], "out.avi: the video is written as MPEG-4 (mp4v); name it .mp4"),
    (["--camera", "99"], "camera 99: cannot be opened"),
])
def test_cli_video_refuses_bad_options_in_one_line(models, drive, tmp_path, capfd, arguments, message):
    arguments = [a.replace("{tmp}", str(tmp_path)) for a in arguments]
    source = [] if "--camera" in arguments else ["--input", str(_write_frames(tmp_path / "frames", drive[0][:1]))]
    output = [] if "--output" in arguments else ["--output", str(tmp_path / "out.mp4")]
    assert cli.main(["video", "--model", str(models["keras"]), *source, *output, *arguments]) == 1
    assert message in _one_error_line(capfd.readouterr().err)  # OpenCV's own camera warnings held back too


def test_legend_shows_each_painted_class_colour():
    camvid = DATASETS["camvid"]
    panel = video.legend_panel(camvid.class_names, camvid.palette, frame_height=375)
    colours = {tuple(c) for c in panel.reshape(-1, 3)}
    assert all(tuple(int(v) for v in colour) in colours for colour in camvid.palette)
    cityscapes = DATASETS["cityscapes"]
    small = video.legend_panel(cityscapes.class_names, cityscapes.palette, frame_height=96)
    assert small.shape[0] <= 96 and small.shape[1] > small.shape[0]  # 19 classes in columns beside each other
    road = video.legend_panel(kitti_road.CLASS_NAMES, kitti_road.PALETTE, 375, skip_ids=(0,))
    road_colours = {tuple(c) for c in road.reshape(-1, 3)}
    assert tuple(int(v) for v in kitti_road.PALETTE[1]) in road_colours
    assert tuple(int(v) for v in kitti_road.PALETTE[0]) not in road_colours
    frame = np.full((375, 1242, 3), 128, np.uint8)
    drawn = video.draw_legend(frame, camvid.class_names, camvid.palette)
    assert drawn.shape == frame.shape and (drawn != frame).any() and (drawn[-100:, -600:] == 128).all()
