"""fcn: Fully Convolutional Networks (Long, Shelhamer & Darrell, CVPR 2015) for street scenes, in Keras."""

import importlib
import importlib.util
import os

from fcn import _quiet_tensorflow

__version__ = "0.1.0"

# `import fcn` imports neither TensorFlow nor Keras: that takes 5 s, which `fcn evaluate kitti-road`, `fcn data`,
# `fcn --help` and every refused argument do not need. The modules that need them import them; two things are
# arranged here for whenever that happens, whoever imports them first:
#
# TensorFlow's C++ start-up lines (CUDA probing on a CPU machine, oneDNN and CPU-feature notes) are noise for a
# person: they filled the top of every command's stderr and a red box under each notebook's imports. They are
# filtered out of its first import (fcn/_quiet_tensorflow.py); FCN_TF_STARTUP_LOG=1 shows them.
if os.environ.get("FCN_TF_STARTUP_LOG") != "1":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # later info and warning lines too; errors still show
    _quiet_tensorflow.on_first_import("tensorflow", around=_quiet_tensorflow.stderr_filtered,
                                      after=lambda tf: tf.config.list_physical_devices())


# fcn's layers, loss, metric and schedule are registered with Keras as soon as Keras is imported, so after
# `import fcn` a saved model loads with plain `keras.models.load_model(path)`.
def _register_with_keras(keras_module) -> None:
    for name in ("losses", "model", "optim"):
        importlib.import_module(f"fcn.{name}")


_quiet_tensorflow.on_first_import("keras", after=_register_with_keras)


def __getattr__(name: str):
    # `import fcn` then `fcn.train.train(...)`: a submodule is imported when it is first used.
    if importlib.util.find_spec(f"fcn.{name}") is None:
        raise AttributeError(f"module 'fcn' has no attribute {name!r}")
    return importlib.import_module(f"fcn.{name}")
