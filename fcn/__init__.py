"""fcn: Fully Convolutional Networks (Long, Shelhamer & Darrell, CVPR 2015) for street scenes, in Keras."""

import importlib.util
import os

from fcn import _quiet_tensorflow

__version__ = "0.1.0"


def _keras_runs_on_tensorflow() -> bool:
    # KERAS_BACKEND overrides Keras' config file. A machine without TensorFlow (the GPU check's JAX-only
    # machine, benchmarks/gpu_check.py) builds and trains fcn's model, loss and optimisers on Keras ops alone.
    wanted = os.environ.get("KERAS_BACKEND", "tensorflow")
    return wanted == "tensorflow" and importlib.util.find_spec("tensorflow") is not None


# TensorFlow's C++ start-up lines (CUDA probing on a CPU machine, oneDNN and CPU-feature notes) are noise
# for a person: they filled the top of every command's stderr and a red box under each notebook's imports.
# Importing it here, quietly, before Keras does, keeps them out; other backends never import it.
if _keras_runs_on_tensorflow():
    _quiet_tensorflow.import_tensorflow()

# fcn's layers, loss and metric are registered with Keras on import, so after `import fcn` a saved model
# loads with plain `keras.models.load_model(path)`.
from fcn import losses as _losses  # noqa: E402, F401
from fcn import model as _model  # noqa: E402, F401
from fcn import optim as _optim  # noqa: E402, F401
