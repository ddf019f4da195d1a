"""`--device cuda|cpu|auto` from the command line. On a machine without a
usable CUDA device (this is what CI runs), an explicit `--device cuda` must
exit non-zero with a message that says why, and `--device auto` must fall
back to the CPU with a one-line notice and produce exactly the CPU output.
Where a GPU exists, `--device cuda` must run and agree with the CPU
(LODE_CUDA_F32=1: f32 device weights, docs/cuda.md tolerances)."""
import re

import numpy as np
import pytest

from lodetest import lode, logits, model

TOKENS = [5, 77, 300, 12, 9, 401, 33, 250]


def gpu_available():
    """(bool, reason) from a load with --device cuda (the binary's own probe)."""
    m = model("tiny-llama")
    p = lode("run", "-m", m, "--tokens", "1,2", "-n", "1", "--temp", "0", "--device", "cuda", check=False)
    return p.returncode == 0, p.stderr.strip()


def test_bad_device_value_is_a_usage_error():
    p = lode("run", "-m", model("tiny-llama"), "--tokens", "1", "--device", "tpu", check=False)
    assert p.returncode == 2
    assert "--device must be cpu, cuda or auto" in p.stderr


@pytest.mark.parametrize("cmd", ["run", "logits", "bench"])
def test_explicit_cuda_without_gpu_fails_clearly(cmd):
    ok, why = gpu_available()
    if ok:
        pytest.skip("SKIP cuda-fallback: a usable CUDA device is present (explicit cuda succeeded)")
    m = model("tiny-llama")
    args = {"run": ["run", "-m", m, "--tokens", "1,2,3", "-n", "2"],
            "logits": ["logits", "-m", m, "--tokens", "1,2,3"],
            "bench": ["bench", "-m", m, "-p", "4", "-n", "2", "-r", "1"]}[cmd]
    p = lode(*args, "--device", "cuda", check=False)
    assert p.returncode != 0, f"lode {cmd} --device cuda succeeded without a GPU:\n{p.stdout}"
    assert "--device cuda:" in p.stderr, p.stderr
    # the reason names the CUDA condition (no driver, no device, or a CPU-only build)
    assert re.search(r"CUDA|cuda|nvcc", p.stderr.split("--device cuda:", 1)[1]), p.stderr
    assert "Traceback" not in p.stderr and "Aborted" not in p.stderr


def test_auto_falls_back_to_cpu_with_one_line_and_same_output():
    ok, _ = gpu_available()
    if ok:
        pytest.skip("SKIP cuda-fallback: a usable CUDA device is present (auto picks CUDA)")
    m = model("tiny-v2lite")
    toks = ",".join(map(str, TOKENS))
    cpu = lode("logits", "-m", m, "--tokens", toks, "--full", "--device", "cpu")
    auto = lode("logits", "-m", m, "--tokens", toks, "--full", "--device", "auto")
    assert auto.stdout == cpu.stdout and len(auto.stdout) > 1000
    notes = [l for l in auto.stderr.splitlines() if "using the CPU" in l]
    assert len(notes) == 1, auto.stderr
    assert "--device auto" in notes[0]
    assert "using the CPU" not in cpu.stderr


def test_default_is_cpu_and_silent():
    m = model("tiny-llama")
    p = lode("run", "-m", m, "--tokens", "1,2,3", "-n", "2", "--temp", "0")
    assert "using the CPU" not in p.stderr and "cuda" not in p.stderr.lower()


@pytest.mark.parametrize("preset", ["tiny-v2lite", "tiny-llama-gqa"])
def test_cuda_logits_match_cpu_when_gpu_present(preset):
    ok, why = gpu_available()
    if not ok:
        pytest.skip(f"SKIP cuda: {why}")
    m = model(preset)
    c = np.array([r["logits"] for r in logits(m, TOKENS)])
    g = np.array([r["logits"] for r in logits(m, TOKENS, "--device", "cuda", env={"LODE_CUDA_F32": "1"})])
    rel = np.abs(g - c).max() / np.abs(c).max()
    assert rel < 2e-3, f"{preset}: relative logit error {rel:.3g}"
