"""fcn: Fully Convolutional Networks (Long, Shelhamer & Darrell, CVPR 2015) for street scenes, in Keras."""

from fcn import _quiet_tensorflow

__version__ = "0.1.0"

# TensorFlow's C++ start-up lines (CUDA probing on a CPU machine, oneDNN and CPU-feature notes) are noise
# for a person: they filled the top of every command's stderr and a red box under each notebook's imports.
_quiet_tensorflow.import_tensorflow()

# fcn's layers, loss and metric are registered with Keras on import, so after `import fcn` a saved model
# loads with plain `keras.models.load_model(path)`.
from fcn import losses as _losses  # noqa: E402, F401
from fcn import model as _model  # noqa: E402, F401
from fcn import optim as _optim  # noqa: E402, F401
