"""benchmarks/gpu_check.py: its FLOP counter against hand counts, its peak table, and the command on a CPU."""

import importlib.util
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
from conftest import REPO_ROOT

GPU_CHECK = REPO_ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", GPU_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("device_name", "card", "float32_peak", "bfloat16_peak"), [
    ("NVIDIA H100 80GB HBM3", "H100 SXM", ("TF32", 494.5), ("BF16", 989.5)),  # the SXM card's name
    ("NVIDIA H100 PCIe", "H100 PCIe", ("TF32", 378), ("BF16", 756.5)),
    ("NVIDIA H200", "H200 SXM", ("TF32", 494.5), ("BF16", 989.5)),
    ("NVIDIA A100-SXM4-80GB", "A100", ("TF32", 156), ("BF16", 312)),
    ("Tesla V100-SXM2-16GB", "V100 SXM2", ("FP32", 15.7), None),  # no TF32 or BF16 tensor cores
    ("Tesla T4", "T4", ("FP32", 8.1), None),
    ("NVIDIA L4", "L4", ("TF32", 60), ("BF16", 121)),
    ("NVIDIA GeForce RTX 4090", "RTX 4090", ("TF32", 82.6), ("BF16", 165.2)),
])
def test_published_peaks_by_device_name(gpu_check, device_name, card, float32_peak, bfloat16_peak):
    found, peaks = gpu_check.published_peaks(device_name)
    assert found == card
    assert gpu_check.peak_for_policy(peaks, "float32") == float32_peak
    assert gpu_check.peak_for_policy(peaks, "mixed_bfloat16") == bfloat16_peak


@pytest.mark.parametrize("device_name", ["NVIDIA L40S", "AMD Instinct MI300X", "NVIDIA GeForce RTX 4090 D"])
def test_unknown_cards_have_no_peak(gpu_check, device_name):
    assert gpu_check.published_peaks(device_name) is None
    assert gpu_check.peak_for_policy(None, "mixed_float16") is None


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax-without-tensorflow"])
def test_gpu_check_on_a_cpu_says_so_and_runs_a_smoke_run(backend):
    # The GPU machine's setting: KERAS_BACKEND unset, TensorFlow hidden; the script picks JAX by itself.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    if backend == "jax-without-tensorflow":
        env.pop("KERAS_BACKEND", None)
        env["PYTHONPATH"] = str(REPO_ROOT / "tests" / "no_tensorflow")
        env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"  # a few tiny steps: compile fast
    result = subprocess.run([sys.executable, str(GPU_CHECK)], capture_output=True, text=True, timeout=600,
                            cwd=REPO_ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert f"backend {backend.split('-')[0]} " in lines[0]
    assert lines[1].startswith(f"No GPU found by the {backend.split('-')[0]} backend: a tiny CPU smoke run")
    header = next(i for i, line in enumerate(lines) if line.startswith("| precision |"))
    assert "images/s" in lines[header] and "loss first -> last pass" in lines[header]
    row = dict(zip(_cells(lines[header]), _cells(lines[header + 2]), strict=True))
    assert row["precision"] == "float32" and float(row["images/s"]) > 0
    first, last = (float(loss) for loss in row["loss first -> last pass"].split(" -> "))
    assert 0 < last < 10 and first == pytest.approx(0.6931, abs=1e-3)  # zero-initialised scores: ln 2
    assert row["loss decreased"] in ("yes", "NO") and row["peak TFLOP/s"] == "unknown"  # no card, no peak


def _cells(table_row: str) -> list[str]:
    return [cell.strip() for cell in table_row.strip().strip("|").split("|")]
