"""Training recipes by hardware: the paper's on a GPU, a light one from scratch on a CPU.

The paper's recipe (VGG16 initialised from ImageNet, Adam at a constant 1e-4 here) needs a GPU: on 2 CPU cores
VGG16 trains well under 1 image/s. The CPU recipe trains a light encoder from scratch with AdamW, warm-up and
cosine decay, what `benchmarks/accuracy.py` measures. Image size and epochs are the caller's (per dataset).
"""

PAPER = dict(encoder="vgg16", weights="imagenet", optimizer="adam", learning_rate=1e-4, lr_schedule="constant",
             batch_size=8)
CPU = dict(encoder="mobilenet_v2", weights=None, optimizer="adamw", weight_decay=1e-4, learning_rate=2e-3,
           lr_schedule="cosine", warmup_epochs=1, batch_size=4)
RECIPES = {"paper": PAPER, "cpu": CPU}
# Rare classes of the many-class datasets: per-pixel weights, the square root of median-frequency balancing,
# capped at 10. Measured on KITTI semantics (CPU recipe, 40 epochs, benchmarks/README.md): val mIoU 32.0,
# against 28.1 for plain cross-entropy, 29.7 for a focal term (gamma 2) and 28.1 for hard-example mining;
# plain median-frequency weights (up to 100x) had hurt.
RARE_CLASS_REMEDY = dict(class_balancing=True, class_weighting="sqrt_median_frequency", max_class_weight=10.0)


def has_gpu() -> bool:
    """Whether TensorFlow sees a GPU."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def choose(name: str = "auto") -> tuple[str, dict]:
    """(recipe name, TrainConfig settings): "auto" is "paper" where a GPU is found, "cpu" otherwise."""
    if name == "auto":
        name = "paper" if has_gpu() else "cpu"
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from auto, {', '.join(RECIPES)}")
    return name, dict(RECIPES[name])


def describe(name: str) -> str:
    """One line for a notebook's first output: which recipe runs, and why."""
    if name == "paper":
        return "recipe: the paper's (VGG16 from ImageNet weights, Adam 1e-4)" + (
            ", GPU found" if has_gpu() else ", chosen by hand (no GPU: expect well under 1 image/s)")
    return "recipe: the CPU one (MobileNetV2 from scratch, AdamW with warm-up and cosine decay)" + (
        ", no GPU found" if not has_gpu() else ", chosen by hand")
