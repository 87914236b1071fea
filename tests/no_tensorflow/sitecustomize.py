"""On PYTHONPATH, hides TensorFlow, as on the GPU machine that has JAX but no TensorFlow.

Every import finder is wrapped so that it does not find `tensorflow` or its submodules: `import tensorflow`
raises ModuleNotFoundError and importlib.util.find_spec("tensorflow") is None, as when it is not installed.
(sys.modules["tensorflow"] = None would not do: Keras takes `"tensorflow" in sys.modules` to mean it is loaded.)
"""

import sys


class _WithoutTensorFlow:
    def __init__(self, finder):
        self._finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "tensorflow" or not hasattr(self._finder, "find_spec"):
            return None
        return self._finder.find_spec(name, path, target)

    def __getattr__(self, attribute):  # invalidate_caches, find_distributions, ...
        return getattr(self._finder, attribute)


sys.meta_path[:] = [_WithoutTensorFlow(finder) for finder in sys.meta_path]
