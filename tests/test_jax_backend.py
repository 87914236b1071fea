"""FCN-8 on Keras' JAX backend, with TensorFlow unimportable: the GPU machine's setting (benchmarks/gpu_check.py).

This process has TensorFlow loaded, so the JAX side runs in one subprocess (KERAS_BACKEND=jax, TensorFlow hidden
by tests/no_tensorflow/sitecustomize.py). Weights made here on the TensorFlow backend are loaded there and
both backends' logits are compared.
"""

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
from conftest import REPO_ROOT

from fcn import model as fcn_model

ENCODERS = ("vgg16_mini", "mobilenet_v2")
# The JAX side trains one step of the first only: mobilenet_v2's training step takes ~30 s to compile on a
# busy 2-core CPU.
# Not multiples of 32: the padding and the final crop run too.
IMAGE_SHAPE = (2, 40, 70, 3)
# float32 convolutions summed in another order (oneDNN vs XLA:CPU): max |TF - JAX| / max |logit| measured
# 1.0e-6 (vgg16_mini) and 1.9e-6 (mobilenet_v2).
RELATIVE_TOLERANCE = 1e-4

JAX_SIDE = r"""
import json, sys
from pathlib import Path

import keras
import numpy as np

from fcn import model as fcn_model
from fcn.losses import MaskedSparseCrossEntropy

folder = Path(sys.argv[1])
images, labels = np.load(folder / "images.npy"), np.load(folder / "labels.npy")
report = {"backend": keras.backend.backend()}
for index, encoder in enumerate(sys.argv[2:]):
    model = fcn_model.build_fcn8(2, encoder=encoder, weights=None)
    model.load_weights(folder / f"{encoder}.weights.h5")
    np.save(folder / f"{encoder}-jax.npy", model.predict_on_batch(images))  # inference mode, one compiled call
    if index == 0:  # one training step, on the first encoder
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=MaskedSparseCrossEntropy())
        before = [weight.numpy().copy() for weight in model.trainable_weights]
        report["loss"] = float(model.train_on_batch(images, labels))
        report["trainable_changed"] = [not np.array_equal(old, weight.numpy())
                                       for old, weight in zip(before, model.trainable_weights)]
# A budget's plan: on JAX the schedule's length is compiled into the step, so a changed one asks for a rebuild.
from fcn import optim
schedule = optim.WarmupDecay(0.1, total_steps=100)
report["resize_asks_for_rebuild"] = [schedule.resize(100), schedule.resize(10)]
report["tensorflow_modules"] = sorted(name for name in sys.modules if name.split(".")[0] == "tensorflow")
try:
    import tensorflow  # noqa: F401
    report["tensorflow_importable"] = True
except ImportError:
    report["tensorflow_importable"] = False
print(json.dumps(report))
"""


def _randomize_constant_weights(model, rng):
    """Random values where FCN-8 starts constant (zero-initialised scores, BatchNorm), so logits are not all 0."""
    for layer in model.layers:
        if layer.name.startswith("score"):
            layer.set_weights([rng.normal(0.0, 0.05, w.shape).astype(np.float32) for w in layer.get_weights()])
        elif isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0.0, 0.1, beta.shape),
                               rng.normal(0.0, 0.1, mean.shape), rng.uniform(0.5, 1.5, variance.shape)])


@pytest.fixture(scope="module")
def tensorflow_side(tmp_path_factory):
    """A folder with images, labels, each encoder's weights (.weights.h5) and its TensorFlow logits."""
    folder = tmp_path_factory.mktemp("tf_vs_jax")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, IMAGE_SHAPE).astype(np.float32)
    np.save(folder / "images.npy", images)
    np.save(folder / "labels.npy", rng.integers(0, 2, IMAGE_SHAPE[:3]).astype(np.int32))
    for encoder in ENCODERS:
        keras.utils.set_random_seed(0)
        model = fcn_model.build_fcn8(2, encoder=encoder, weights=None)
        _randomize_constant_weights(model, rng)
        model.save_weights(folder / f"{encoder}.weights.h5")
        np.save(folder / f"{encoder}-tf.npy", model(images, training=False).numpy())
    return folder


@pytest.fixture(scope="module")
def jax_side(tensorflow_side):
    """The JAX subprocess' report after it loaded each encoder's weights and predicted, then trained one step."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "tests" / "no_tensorflow"), str(REPO_ROOT)]),
           # One call per shape on tiny tensors: XLA's optimisation passes cost more than they save here.
           "XLA_FLAGS": "--xla_backend_optimization_level=0"}
    result = subprocess.run([sys.executable, "-c", JAX_SIDE, str(tensorflow_side), *ENCODERS],
                            capture_output=True, text=True, timeout=600, cwd=REPO_ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_fcn_builds_and_trains_without_tensorflow(jax_side):
    assert jax_side["backend"] == "jax"
    assert jax_side["tensorflow_importable"] is False  # the shim really hid it
    assert jax_side["tensorflow_modules"] == []  # fcn, its model, loss and a training step never asked for it
    assert jax_side["resize_asks_for_rebuild"] == [False, True]  # fcn/optim.py WarmupDecay.resize


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ENCODERS)
def test_jax_logits_match_tensorflow(tensorflow_side, jax_side, encoder):
    tf_logits = np.load(tensorflow_side / f"{encoder}-tf.npy")
    jax_logits = np.load(tensorflow_side / f"{encoder}-jax.npy")
    assert jax_logits.shape == tf_logits.shape == (*IMAGE_SHAPE[:3], 2)
    scale = np.abs(tf_logits).max()
    assert scale > 1e-2  # the randomised score layers give the comparison something to compare
    np.testing.assert_allclose(jax_logits, tf_logits, rtol=0, atol=RELATIVE_TOLERANCE * scale)


@pytest.mark.slow
def test_jax_training_step_updates_every_trainable_weight(jax_side):
    assert np.isfinite(jax_side["loss"]) and jax_side["loss"] > 0
    assert jax_side["trainable_changed"] and all(jax_side["trainable_changed"])
