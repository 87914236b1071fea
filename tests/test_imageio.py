"""Image files: colour order, bit depth, atomic writes with normal permissions, errors that name the file."""

import os

import numpy as np
import pytest

from fcn.imageio import ImageFileError, read_png_size, read_rgb, read_unchanged, write_bytes_atomic, write_png


def test_rgb_round_trip_keeps_channel_order(tmp_path):
    image = np.zeros((4, 5, 3), np.uint8)
    image[..., 0] = 200  # red
    path = write_png(tmp_path / "sub" / "red.png", image)
    np.testing.assert_array_equal(read_rgb(path), image)
    np.testing.assert_array_equal(read_unchanged(path), image)
    assert read_png_size(path) == (4, 5)


def test_sixteen_bit_labels_round_trip(tmp_path):
    labels = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    out = read_unchanged(write_png(tmp_path / "ids.png", labels))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, labels)


def test_overwrite_leaves_no_temporary_files(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
    write_png(tmp_path / "a.png", np.full((2, 2), 7, np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    assert read_unchanged(tmp_path / "a.png")[0, 0] == 7


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ImageFileError, match=r"missing\.png: file not found"):
        read_rgb(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageFileError, match=r"empty\.png: file is empty"):
        read_png_size(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("hello, not an image at all")
    with pytest.raises(ImageFileError, match=r"text\.png: not a PNG"):
        read_png_size(tmp_path / "text.png")
    with pytest.raises(ImageFileError, match=r"text\.png: cannot decode"):
        read_unchanged(tmp_path / "text.png")


@pytest.fixture
def umask():
    """Set the process umask for one test (returns a setter), and restore it afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_permissions_of_a_plain_open(tmp_path, umask, mask, mode):
    umask(mask)
    reference = tmp_path / "reference.bin"
    reference.write_bytes(b"x")
    assert reference.stat().st_mode & 0o777 == mode  # what open() gives under this umask
    write_bytes_atomic(tmp_path / "new.bin", b"data")
    png = write_png(tmp_path / "labels.png", np.zeros((2, 2), np.uint8))
    write_png(png, np.ones((2, 2), np.uint8))  # replacing a file keeps the same rule
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {
        "reference.bin": mode, "new.bin": mode, "labels.png": mode}


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.png"
    target.write_bytes(b"old")

    class Unwritable:
        def __len__(self):
            return 1

    with pytest.raises(TypeError):
        write_bytes_atomic(target, Unwritable())
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"] and target.read_bytes() == b"old"
