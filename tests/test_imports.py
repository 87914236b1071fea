"""`import fcn` is light: TensorFlow comes only with the work that needs it, quietly, and fcn's Keras objects are
registered whenever Keras arrives. Each check runs in a fresh process, as a person's program or command does."""

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from fcn._quiet_tensorflow import is_startup_noise

REGISTERED = ("fcn>CropToReference", "fcn>MaskedSparseCrossEntropy", "fcn>WarmupDecay")


def _python(code: str) -> subprocess.CompletedProcess:
    # No log level inherited from this process: what a person's shell has (their own home: caches such as
    # matplotlib's go there, not into the checkout).
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _no_startup_noise(result: subprocess.CompletedProcess) -> None:
    noise = [line for line in result.stderr.splitlines() if line.strip() and is_startup_noise(line)]
    assert not noise, "TensorFlow start-up lines on stderr:\n" + "\n".join(noise)


def test_import_fcn_and_its_command_line_leave_tensorflow_and_keras_out():
    # predict and submit too: their checks before a model is loaded (its description, the images, the calib
    # files) refuse bad input in a fraction of a second.
    _python("import sys, fcn, fcn.cli, fcn.metrics, fcn.data, fcn.predict, fcn.submit\n"
            "heavy = sorted({'tensorflow', 'keras', 'jax'} & set(sys.modules))\n"
            "assert not heavy, heavy\n"
            "assert fcn.cli.build_parser()")


@pytest.mark.slow
@pytest.mark.parametrize("order", ["import fcn, keras", "import keras, fcn", "import fcn, tensorflow, keras"])
def test_fcn_objects_are_registered_whichever_comes_first(order):
    result = _python(f"{order}\n"
                     f"for name in {REGISTERED!r}:\n"
                     "    assert keras.saving.get_registered_object(name) is not None, name\n")
    if order.startswith("import fcn"):  # TensorFlow's first import is fcn's to quieten
        _no_startup_noise(result)


def test_a_command_that_needs_no_model_runs_without_tensorflow(tmp_path):
    gt = tmp_path / "gt_image_2"
    gt.mkdir()
    result = _python("import sys\n"
                     "from fcn import cli\n"
                     f"code = cli.main(['evaluate', 'kitti-road', '--gt-dir', {str(gt)!r}, '--results-dir', "
                     f"{str(tmp_path / 'missing')!r}])\n"
                     "assert code == 1, code\n"
                     "assert 'tensorflow' not in sys.modules\n")
    assert result.stderr.strip() == f"error: {tmp_path / 'missing'}: results folder not found"


@pytest.mark.slow
def test_a_choice_read_from_keras_is_still_checked_and_listed():
    result = subprocess.run([sys.executable, "-m", "fcn", "train", "--data-dir", "d", "--run-dir", "r",
                             "--encoder", "vgg17"], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 2
    assert "invalid choice: 'vgg17'" in result.stderr and "'mobilenet_v2'" in result.stderr
    help_text = subprocess.run([sys.executable, "-m", "fcn", "train", "--help"], capture_output=True, text=True,
                               timeout=300, cwd=REPO_ROOT).stdout
    assert "one of mobilenet_v2, mobilenet_v3_large, vgg16, vgg16_mini" in " ".join(help_text.split())
