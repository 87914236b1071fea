"""Numeric precision of training: float32, or Keras' mixed policies (float32 variables, 16-bit arithmetic).

    float32   every layer computes in float32 (the reference)
    bfloat16  Keras' "mixed_bfloat16": convolutions in bfloat16, variables and the optimizer in float32; pays on
              CPUs with native bfloat16 arithmetic (AVX-512 BF16, AMX), where oneDNN runs bfloat16 kernels
    float16   Keras' "mixed_float16" with loss scaling: for GPUs (on a CPU float16 is emulated, and slow)
    auto      float16 on a GPU; bfloat16 on a CPU with native bfloat16 for the encoders where it was measured
              faster (ENCODERS_FASTER_IN_BFLOAT16); float32 otherwise

Whatever the precision, the logits, softmax, loss, metrics and validation score are float32 (the model's last
layer is float32), and model files hold a float32 model (fcn/modelfile.py), so a model trained in bfloat16 is
used, scored and exported exactly like one trained in float32.
"""

import contextlib
from pathlib import Path

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# The CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic.
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")
# Training-step speed in bfloat16 against float32, batch 8 at 160x576, measured side by side on a 2-core AMD EPYC
# with avx512_bf16 (benchmarks/README.md, "bfloat16"): MobileNetV2 1.99x, VGG16 1.43x; MobileNetV3-Large
# (0.89x: its hard-swish and squeeze-excite layers convert back and forth) and vgg16_mini (1.00x) gain nothing.
# End to end, MobileNetV2's step gain did not survive: the KITTI Road CPU recipe (batch 4) ran its epochs in a
# median 28 s in both precisions over 25 minutes, and float32 scored as well (93.9 against 93.7 MaxF). So
# "auto" keeps every encoder but VGG16, whose heavy convolutions are the whole cost, in float32.
ENCODERS_FASTER_IN_BFLOAT16 = ("vgg16",)


def cpu_flags(cpuinfo="/proc/cpuinfo") -> set[str]:
    """The feature flags of this machine's CPU (empty where /proc/cpuinfo does not exist, e.g. macOS)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


def has_native_bfloat16(flags=None) -> bool:
    """Whether the CPU computes in bfloat16 natively (else Keras would emulate it, slower than float32)."""
    flags = cpu_flags() if flags is None else set(flags)
    return any(flag in flags for flag in BFLOAT16_FLAGS)


def choose(requested: str, encoder: str, gpu: bool | None = None, flags=None) -> str:
    """The precision a run trains in: `requested` unless it is "auto" (see the module docstring)."""
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; choose from {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    if gpu is None:
        from fcn.recipes import has_gpu

        gpu = has_gpu()
    if gpu:
        return "float16"
    if has_native_bfloat16(flags) and encoder in ENCODERS_FASTER_IN_BFLOAT16:
        return "bfloat16"
    return "float32"


def describe(precision: str, requested: str = "auto", flags=None) -> str:
    """One line for a notebook or a log: the precision, and why it was chosen."""
    if requested != "auto":
        return f"precision: {precision} (chosen by hand)"
    if precision == "float16":
        return "precision: float16 (mixed, GPU found)"
    if precision == "bfloat16":
        return "precision: bfloat16 (mixed; this CPU has native bfloat16 and the encoder trains faster in it)"
    why = "this encoder gains nothing from bfloat16" if has_native_bfloat16(flags) else "no native bfloat16 on this CPU"
    return f"precision: float32 ({why})"


@contextlib.contextmanager
def dtype_policy(precision: str):
    """Keras' global dtype policy set for `precision` while models are built, then restored."""
    import keras

    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(POLICIES[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
