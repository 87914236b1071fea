"""--precision: the auto choice from CPU flags, float32 outputs, float32 model files, resumes that refuse a change."""

import dataclasses
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from fcn import cli, export, modelfile, precision, tflite_runner
from fcn.data import synthetic
from fcn.model import build_fcn8
from fcn.train import TrainConfig, fast_config, train, upgrade_saved_config

# /proc/cpuinfo's "flags" lines of two real machines, shortened: an AMD EPYC with AVX-512 BF16, and an AVX2 one.
EPYC_BF16 = "fpu vme sse sse2 avx avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni"
EPYC_AVX2 = "fpu vme sse sse2 avx avx2 fma"


@pytest.fixture(scope="module")
def road_data(tmp_path_factory):
    return synthetic.write_kitti_road(tmp_path_factory.mktemp("data"), images_per_category=3,
                                      test_images_per_category=1, scale=0.25, seed=5)


def _tiny(road_data, run_dir, **overrides):
    settings = dict(data_dir=str(road_data), run_dir=str(run_dir), epochs=1, image_size=(32, 96), max_train_images=4,
                    max_val_images=2)
    return fast_config(**{**settings, **overrides})


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {EPYC_BF16}\n\nprocessor\t: 1\n")
    assert "avx512_bf16" in precision.cpu_flags(cpuinfo) and "avx2" in precision.cpu_flags(cpuinfo)
    assert precision.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize(("flags", "native"), [(EPYC_BF16, True), (EPYC_AVX2, False), ("amx_bf16 amx_tile", True),
                                               ("", False)])
def test_native_bfloat16_is_told_by_the_flags(flags, native):
    assert precision.has_native_bfloat16(flags.split()) is native


@pytest.mark.parametrize(("encoder", "gpu", "flags", "expected"), [
    ("mobilenet_v2", True, EPYC_AVX2, "float16"),  # a GPU: float16 whatever the CPU
    ("mobilenet_v2", False, EPYC_BF16, "float32"),  # its step gain did not survive end to end
    ("vgg16", False, EPYC_BF16, "bfloat16"),
    ("mobilenet_v3_large", False, EPYC_BF16, "float32"),  # measured slower in bfloat16
    ("vgg16_mini", False, EPYC_BF16, "float32"),
    ("mobilenet_v2", False, EPYC_AVX2, "float32"),  # would be emulated
])
def test_auto_picks_by_hardware_and_encoder(encoder, gpu, flags, expected):
    assert precision.choose("auto", encoder, gpu=gpu, flags=flags.split()) == expected
    assert expected in precision.describe(expected, "auto", flags=flags.split())


def test_a_precision_chosen_by_hand_is_kept_and_unknown_ones_are_refused():
    assert precision.choose("float16", "vgg16_mini", gpu=False, flags=[]) == "float16"
    with pytest.raises(ValueError, match="unknown precision 'half'; choose from auto, float32"):
        precision.choose("half", "vgg16")
    with pytest.raises(ValueError, match="unknown precision"):
        fast_config(precision="bf16")


def test_the_config_records_the_precision_auto_resolved_to(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: set(EPYC_BF16.split()))
    monkeypatch.setattr("fcn.recipes.has_gpu", lambda: False)
    assert fast_config(encoder="vgg16", precision="auto").precision == "bfloat16"
    assert fast_config(precision="auto").precision == "float32"  # vgg16_mini


@pytest.mark.slow
def test_the_command_line_takes_precision_and_the_old_mixed_precision_flag():
    parser = cli.build_parser()
    base = ["train", "--data-dir", "d", "--run-dir", "r"]
    assert parser.parse_args([*base, "--precision", "bfloat16"]).precision == "bfloat16"
    assert parser.parse_args([*base, "--mixed-precision"]).precision == "float16"
    assert parser.parse_args(base).precision is None  # the config's default (float32)
    result = subprocess.run([sys.executable, "-m", "fcn", *base, "--precision", "half"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "argument --precision: invalid choice: 'half'" in result.stderr


def test_earlier_configs_with_mixed_precision_are_read_as_float16():
    upgraded = upgrade_saved_config({"mixed_precision": True, "epochs": 3})
    assert "mixed_precision" not in upgraded and (upgraded["precision"], upgraded["epochs"]) == ("float16", 3)
    assert upgrade_saved_config({"mixed_precision": False})["precision"] == "float32"


def test_settings_added_since_a_run_was_saved_take_their_defaults():
    # A config.json written before label_smoothing and exclude_frames existed: the same run as today's defaults,
    # so a resume compares equal instead of refusing "label_smoothing None -> 0.0".
    today = json.loads(json.dumps(dataclasses.asdict(TrainConfig(weights=None, epochs=3))))
    earlier = {key: value for key, value in today.items() if key not in ("label_smoothing", "exclude_frames")}
    assert upgrade_saved_config(earlier) == today
    assert TrainConfig(**upgrade_saved_config(earlier)) == TrainConfig(weights=None, epochs=3)


@pytest.mark.slow
def test_a_model_trained_in_bfloat16_computes_in_bfloat16_and_is_saved_as_a_float32_model(road_data, tmp_path):
    config = _tiny(road_data, tmp_path / "run", precision="bfloat16")
    model, history = train(config, verbose=0)
    assert np.isfinite(history["loss"][0]) and np.isfinite(history["val_maxf"][0])
    assert model.get_layer("fc6").compute_dtype == "bfloat16" and model.output.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "bfloat16"
    assert modelfile.read_info(tmp_path / "run" / "best.keras")["precision"] == "bfloat16"
    loaded = modelfile.load_model(tmp_path / "run" / "best.keras")
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    assert {w.dtype for w in loaded.weights} == {"float32"}
    for trained, saved in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(trained), keras.ops.convert_to_numpy(saved))
    # The loaded model is exactly a float32 FCN-8 with these weights: the same logits as one built in float32.
    reference = build_fcn8(2, encoder=config.encoder, weights=None)
    reference.set_weights(loaded.get_weights())
    x = np.random.default_rng(0).uniform(0, 255, (1, 32, 96, 3)).astype(np.float32)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(reference(x)))
    # ... and it exports to TFLite like any other, with the same outputs.
    result = export.export_model(tmp_path / "run" / "best.keras", tmp_path / "model.tflite")
    exported = tflite_runner.TFLiteModel(result["output"])
    check = export.compare_outputs(loaded, exported, [x[0].astype(np.uint8)], result["image_size"])
    assert check["max_abs_logit_diff"] <= 1e-3 * max(check["logit_range"], 1.0)


@pytest.mark.slow
def test_a_resume_refuses_another_precision(road_data, tmp_path):
    train(_tiny(road_data, tmp_path / "run"), verbose=0)
    with pytest.raises(ValueError, match=r"other settings \(precision 'float32' -> 'bfloat16'\)"):
        train(_tiny(road_data, tmp_path / "run", precision="bfloat16", epochs=2), verbose=0)


@pytest.mark.slow
def test_a_run_of_an_earlier_fcn_resumes_under_today_s_settings(road_data, tmp_path):
    config = _tiny(road_data, tmp_path / "run")
    train(config, verbose=0)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    saved["mixed_precision"] = saved.pop("precision") == "float16"  # as an earlier fcn wrote it
    (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
    _, history = train(_tiny(road_data, tmp_path / "run", epochs=2), verbose=0)
    assert len(history["loss"]) == 2
    assert TrainConfig.load(tmp_path / "run" / "config.json").precision == "float32"
