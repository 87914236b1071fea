"""Training recipes by hardware: the paper's on a GPU, a light one from scratch on a CPU, sized per dataset.

The paper's recipe (VGG16 initialised from ImageNet, Adam at a constant 1e-4 here) needs a GPU: on 2 CPU cores
VGG16 trains well under 1 image/s. The CPU recipe trains a light encoder from scratch with AdamW, a warm-up
and a cosine decay that spans the time budget (fcn/optim.py), in the precision `auto` picks for its encoder
(fcn/precision.py). CPU_RECIPES holds it per dataset, with the image size, budget and rare-class remedy
measured for each: what the notebooks' full mode runs and what `benchmarks/accuracy.py` measures.
"""

PAPER = dict(encoder="vgg16", weights="imagenet", optimizer="adam", learning_rate=1e-4, lr_schedule="constant",
             batch_size=8)
CPU = dict(encoder="mobilenet_v2", weights=None, optimizer="adamw", weight_decay=1e-4, learning_rate=2e-3,
           lr_schedule="cosine", warmup_epochs=1, batch_size=4, precision="auto")
RECIPES = {"paper": PAPER, "cpu": CPU}
# Rare classes of the many-class datasets: per-pixel weights, the square root of median-frequency balancing,
# capped at 10. Measured on KITTI semantics (CPU recipe, 40 epochs, benchmarks/README.md): val mIoU 32.0,
# against 28.1 for plain cross-entropy, 29.7 for a focal term (gamma 2) and 28.1 for hard-example mining;
# plain median-frequency weights (up to 100x) had hurt.
RARE_CLASS_REMEDY = dict(class_balancing=True, class_weighting="sqrt_median_frequency", max_class_weight=10.0)
# With a budget the schedule's length is measured, not guessed (fcn/optim.py plan_epochs): epochs is a cap.
MAX_EPOCHS = 1000
# The CPU recipe per dataset (benchmarks/README.md): KITTI Road at 160x576 (0.43 of the full width); the
# many-class sets at their frames' own height rounded up to a multiple of 32 (KITTI semantics' half-resolution
# copy is 187x621, CamVid 360x480), with random scale 0.75-1.5. Budgets: an hour, two for CamVid's 367 frames.
CPU_RECIPES = {
    "kitti_road": dict(CPU, image_size=(160, 576), minutes=60, epochs=MAX_EPOCHS),
    "camvid": dict(CPU, **RARE_CLASS_REMEDY, image_size=(352, 480), scale_range=(0.75, 1.5), minutes=120,
                   epochs=MAX_EPOCHS),
    "kitti_semantics": dict(CPU, **RARE_CLASS_REMEDY, image_size=(192, 640), scale_range=(0.75, 1.5), minutes=60,
                            epochs=MAX_EPOCHS),
}
# Frames the benchmark keeps out of training and validation, and scores apart: a number that played no part
# in training or in choosing the best epoch. KITTI Road and KITTI semantics: the frames that also exist at full
# resolution in the shared data, scored there; CamVid: the last 31 training frames of sequence 0006R0.
HELD_OUT = {
    "kitti_road": [f"{category}_{index:06d}.png" for category in ("um", "umm", "uu") for index in (0, 1, 3, 4)],
    "kitti_semantics": [f"{index:06d}_10.png" for index in (0, 1, 3, 4)],
    "camvid": [f"0006R0_f{frame:05d}.png" for frame in range(3030, 3931, 30)],
}


def has_gpu() -> bool:
    """Whether TensorFlow sees a GPU."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def choose(name: str = "auto", dataset: str | None = None, image_size=None, epochs: int | None = None) -> tuple[str, dict]:
    """(recipe name, TrainConfig settings): "auto" is "paper" where a GPU is found, "cpu" otherwise.

    For a dataset with a CPU recipe of its own (CPU_RECIPES), "cpu" is that one, size and budget included;
    otherwise image_size and epochs, where given, complete the recipe.
    """
    if name == "auto":
        name = "paper" if has_gpu() else "cpu"
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from auto, {', '.join(RECIPES)}")
    if name == "cpu" and dataset in CPU_RECIPES:
        return name, dict(CPU_RECIPES[dataset])
    sized = {"image_size": image_size, "epochs": epochs}
    return name, {**RECIPES[name], **{key: value for key, value in sized.items() if value is not None}}


def describe(name: str, settings: dict | None = None) -> str:
    """Lines for a notebook's first output: which recipe runs and why, its size, budget and precision."""
    if name == "paper":
        line = "recipe: the paper's (VGG16 from ImageNet weights, Adam 1e-4)" + (
            ", GPU found" if has_gpu() else ", chosen by hand (no GPU: expect well under 1 image/s)")
    else:
        line = "recipe: the CPU one (MobileNetV2 from scratch, AdamW with warm-up and cosine decay)" + (
            ", no GPU found" if not has_gpu() else ", chosen by hand")
    if not settings:
        return line
    from fcn import precision

    size = "x".join(map(str, settings["image_size"])) if "image_size" in settings else "the notebook's size"
    budget = (f"a budget of {settings['minutes']:g} minutes (the schedule spans it)" if settings.get("minutes")
              else f"{settings.get('epochs', 'the default')} epochs")
    requested = settings.get("precision", "float32")
    chosen = precision.choose(requested, settings.get("encoder", "vgg16"))
    return f"{line}\n{settings.get('encoder')} at {size}, {budget}\n{precision.describe(chosen, requested)}"
