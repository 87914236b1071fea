"""Shared fixtures: where the real data lives, and small synthetic datasets built once per session."""

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

# First, as in fcn's own commands: TensorFlow is then imported quietly and with fcn's log level, whichever test
# file imports it first (JAX, which TensorFlow imports where it is installed, would otherwise set a lower level
# that the tests' commands inherit: TensorFlow's warnings would then reach their stderr).
import fcn

REPO_ROOT = Path(__file__).resolve().parents[1]
# One setting points at the real data; CI must find it there (fail, never skip).
SHARED_DATA = Path(os.environ.get("FCN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()
ORACLES = Path(os.environ.get("FCN_SHARED_ORACLES", SHARED_DATA.parent / "oracles")).resolve()


def pytest_collection_modifyitems(items):
    """The files with tests marked slow first, their slow tests first.

    `make test` runs `pytest -n 2 --dist loadscope --no-loadscope-reorder`: two workers, each taking a whole file
    at a time (so that a file's shared set-ups, a trained model, a JupyterLab, a virtualenv, are made once) in
    the order of the files' first tests here. The long files then run side by side from the start and the quick
    ones fill the end, instead of one long file finishing alone.
    """
    # Each file's tests stay together, so that a plain serial `pytest` also makes a file's set-ups once.
    first_index = {}
    for index, item in enumerate(items):
        first_index.setdefault(item.path, index)
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (item.path not in slow_files, first_index[item.path],
                                 item.get_closest_marker("slow") is None))


# Under `pytest -n 2` (make test): the seconds each worker spent in tests, set-ups included, and the files that
# took longest, printed after the slowest tests. The suite's wall time is the busier worker's: a large gap between
# the two says the files are badly shared, and the files' totals say where a cut would count.
_BUSY_SECONDS: Counter = Counter()
_FILE_SECONDS: Counter = Counter()


def pytest_runtest_logreport(report):
    node = getattr(report, "node", None)  # set by pytest-xdist on the reports the workers send to the controller
    if node is not None:
        _BUSY_SECONDS[node.gateway.id] += report.duration
        _FILE_SECONDS[report.location[0]] += report.duration


def pytest_terminal_summary(terminalreporter):
    if _BUSY_SECONDS:
        workers = ", ".join(f"{worker} {seconds:.0f} s" for worker, seconds in sorted(_BUSY_SECONDS.items()))
        terminalreporter.write_line(f"busy time per worker: {workers}")
        files = _FILE_SECONDS.most_common(10)
        terminalreporter.write_line("longest files: " + ", ".join(f"{path} {seconds:.0f} s" for path, seconds in files))


@pytest.fixture(scope="module", autouse=True)
def _module_temp_folders_removed(request, tmp_path_factory):
    """A file's temporary folders (its shared set-ups' trained models, exports, datasets) go when the file passes.

    pytest removes a passing test's own tmp_path (pyproject.toml), but folders from `tmp_path_factory.mktemp` in
    module fixtures would stay until the session ends: hundreds of MB each, and the disk of a CI machine is finite.
    After a failure in the file everything stays, for a person to look at.
    """
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    failures_before = request.session.testsfailed
    yield
    if request.session.testsfailed == failures_before:
        for path in set(base.iterdir()) - before:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)


def _require(path: Path) -> Path:
    if path.exists():
        return path
    message = f"real test data not found at {path} (set FCN_SHARED_DATA)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets folder (../shared/data by default)."""
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def kitti_road_root(shared_data) -> Path:
    """Full-resolution KITTI Road samples: .../kitti_road/data_road."""
    return _require(shared_data / "kitti_road" / "data_road")


@pytest.fixture(scope="session")
def kitti_road_half_root(shared_data) -> Path:
    """Half-resolution developer portion of KITTI Road: .../kitti_road_half/data_road."""
    return _require(shared_data / "kitti_road_half" / "data_road")


@pytest.fixture(scope="session")
def kitti_road_oracles() -> Path:
    """Expected scores of the official KITTI road devkit for three sets of result maps."""
    return _require(ORACLES / "kitti_road")


@pytest.fixture(scope="session")
def kitti_road_bev_oracles() -> Path:
    """The devkit's bird's-eye-view output for the 12 full-resolution frames: BEV gt, valid maps, lookup tables,
    BEV result maps and BEV scores of two cases."""
    return _require(ORACLES / "kitti_road_bev")


@pytest.fixture(scope="session")
def camvid_root(shared_data) -> Path:
    """CamVid, SegNet layout: train + val with annotations and list files."""
    return _require(shared_data / "camvid")


@pytest.fixture(scope="session")
def kitti_semantics_root(shared_data) -> Path:
    """KITTI semantics, first 100 training frames at half resolution (folder holding training/)."""
    return _require(shared_data / "kitti_semantics")


@pytest.fixture(scope="session")
def kitti_semantics_full_root(shared_data) -> Path:
    """KITTI semantics, 4 training frames at full resolution (folder holding training/)."""
    return _require(shared_data / "kitti_semantics_full")


@pytest.fixture(scope="session")
def cityscapes_root(shared_data) -> Path:
    """Cityscapes, official layout: 8 train frames with images, 15 val label maps without images."""
    return _require(shared_data / "cityscapes")


@pytest.fixture(scope="session")
def cityscapes_tiny_root(shared_data) -> Path:
    """One 256x128 pseudo-Cityscapes val frame with labelIds, labelTrainIds and instanceIds."""
    return _require(shared_data / "cityscapes_tiny")


def check_training_batches(config, num_classes: int, expected_counts=None):
    """Build a config's train and val datasets and check one batch of each: shapes and label values.

    Returns the (train, val) sample lists.
    """
    import numpy as np

    from fcn.train import build_datasets

    train_ds, val_ds, train, val = build_datasets(config)
    if expected_counts is not None:
        assert (len(train), len(val)) == expected_counts
    for images, labels in [next(iter(train_ds)), next(iter(val_ds))]:
        assert images.shape[1:] == (*config.image_size, 3) and labels.shape[1:] == config.image_size
        values = set(np.unique(labels.numpy()).tolist())
        assert values <= set(range(num_classes)) | {255} and len(values) > 1
    return train, val


def save_random_tiny_model(path, dataset: str, image_size):
    """A vgg16_mini FCN-8 for `dataset` with random weights everywhere, saved as an fcn model file; returns it.

    FCN's decoder starts at zero (uniform probabilities): random weights give varied predictions, so left and
    right, or one frame and another, differ.
    """
    import keras
    import numpy as np

    from fcn.data import get_dataset

    keras.utils.set_random_seed(0)
    info = get_dataset(dataset)
    model = fcn.model.build_fcn8(info.num_classes, encoder="vgg16_mini", weights=None)
    rng = np.random.default_rng(0)
    model.set_weights([w if w.any() else rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in model.get_weights()])
    fcn.modelfile.save_model(model, path, fcn.modelfile.model_info(dataset, info.class_names, image_size,
                                                                    "vgg16_mini", road_class=info.road_class))
    return model
