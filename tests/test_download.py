"""Dataset download helpers: offline message, atomic files, archive unpacking (all local, no network)."""

import zipfile

import pytest

from fcn.data import download


def test_offline_download_says_where_to_put_the_file(tmp_path):
    target = tmp_path / "data_road.zip"
    with pytest.raises(RuntimeError) as error:
        download.download("http://127.0.0.1:9/data_road.zip", target, timeout=5)
    assert str(target) in str(error.value) and "127.0.0.1:9" in str(error.value)
    assert not target.exists() and not (tmp_path / "data_road.zip.part").exists()


def _zip_with(path, files):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def test_prepare_from_a_local_archive(tmp_path):
    source = _zip_with(tmp_path / "source.zip", {"data_road/training/image_2/um_000000.png": b"x"})
    root = download.prepare_kitti_road(tmp_path / "kitti", url=source.as_uri())
    assert (root / "training" / "image_2" / "um_000000.png").read_bytes() == b"x"
    assert not (tmp_path / "kitti.extracting").exists()
    # A second call finds the data and downloads nothing (the source may be gone).
    source.unlink()
    assert download.prepare_kitti_road(tmp_path / "kitti", url=source.as_uri()) == root


def test_a_truncated_archive_is_reported(tmp_path):
    bad = tmp_path / "data_road.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="data_road.zip: not a zip archive"):
        download.extract(bad, tmp_path / "out")
