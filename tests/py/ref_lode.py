"""Helpers shared by test_ref_exact.py and test_llamacpp.py: running the lode binary,
the model cache, the reference and llama.cpp (node-llama-cpp) side by side."""

import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
import lode_ref  # noqa: E402

PRESETS = ["tiny-v2lite", "tiny-v2", "tiny-v3", "tiny-llama", "tiny-llama-gqa"]
TOL = 1e-3          # max |Δlogit| allowed between lode and the float64 reference
N_TOKENS = 48       # > original_max_position_embeddings (16) of the tiny presets: YaRN ramp in play
LLAMA_EVAL = os.path.join(ROOT, "tests", "llamacpp", "llama_eval.mjs")
NPM_DIR = os.path.join(ROOT, "tests", "npm")


def lode_bin():
    """Path of the lode binary; fails (never skips) when it is missing."""
    b = os.environ.get("LODE_BIN") or os.path.join(ROOT, "build", "lode")
    assert os.path.isfile(b) and os.access(b, os.X_OK), (
        f"lode binary not found at {b} (set LODE_BIN or run make): these tests must not be skipped")
    return b


def cache_dir():
    d = os.environ.get("LODE_TEST_CACHE") or os.path.join(ROOT, "build", "test-cache")
    os.makedirs(d, exist_ok=True)
    return d


def run(cmd, timeout=600):
    """The exact-f32 kernels unless LODE_INT8 is set: the reference runs on
    the dequantized weights (lodetest.lode says why)."""
    env = dict(os.environ)
    env.setdefault("LODE_INT8", "0")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        raise AssertionError(f"command failed ({p.returncode}): {' '.join(cmd)}\n"
                             f"stdout:\n{p.stdout[-2000:]}\nstderr:\n{p.stderr[-4000:]}")
    return p.stdout


def gen_model(preset, fmt, qtype="f32", seed=None, extra=()):
    """Generate (or reuse) a preset with `lode gen`. Regenerated when missing or when
    the lode binary is newer than the cached file. extra: more gen flags (part of the
    cache name)."""
    b = lode_bin()
    name = f"{preset}-{qtype}" + (f"-s{seed}" if seed is not None else "")
    name += "".join("_" + a.lstrip("-").replace("/", "") for a in extra)
    out = os.path.join(cache_dir(), name + (".gguf" if fmt == "gguf" else ".hf"))
    marker = out if fmt == "gguf" else os.path.join(out, "config.json")
    if not os.path.exists(marker) or os.path.getmtime(marker) < os.path.getmtime(b):
        cmd = [b, "gen", preset, "-o", out, "--format", fmt, "--type", qtype]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        run(cmd + list(extra))
        assert os.path.exists(marker), f"lode gen did not produce {marker}"
    return out


def parse_logit_lines(text):
    """JSON lines {"pos": i, "top": ..., "logits": [...]} -> array [T, vocab]."""
    rows = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        obj = json.loads(line)
        if "pos" in obj:
            rows[obj["pos"]] = obj["logits"]
    assert rows, f"no logits lines in output:\n{text[:2000]}"
    return np.array([rows[i] for i in range(len(rows))], dtype=np.float64)


def lode_logits(model, tokens, extra=()):
    out = run([lode_bin(), "logits", "-m", model, "--tokens", ",".join(map(str, tokens)), "--full"]
              + list(extra))
    return parse_logit_lines(out)


def make_tokens(vocab, n=N_TOKENS, seed=1234):
    """Deterministic ids avoiding 0/1 (often BOS/EOS) — any ids are valid for logits."""
    rng = np.random.default_rng(seed)
    return [int(t) for t in rng.integers(2, vocab, n)]


def ref_logits(model, tokens, group_score="max"):
    return lode_ref.forward(lode_ref.load_model(model), tokens, group_score)


def require_llamacpp():
    """node + node-llama-cpp must be installed (make deps): fail, never skip."""
    nm = os.path.join(NPM_DIR, "node_modules", "node-llama-cpp", "package.json")
    assert os.path.exists(nm), "node-llama-cpp missing: run `make deps` (npm ci in tests/npm)"
    return True


def llamacpp_eval(model, tokens, full=True, gen=0):
    """-> (logits [T, vocab] or None, greedy list)"""
    require_llamacpp()
    cmd = ["node", LLAMA_EVAL, model, "--tokens", ",".join(map(str, tokens))]
    if full:
        cmd.append("--full")
    if gen:
        cmd += ["--gen", str(gen)]
    out = run(cmd)
    greedy = []
    tops = []
    for line in out.splitlines():
        if line.startswith("{"):
            obj = json.loads(line)
            if "greedy" in obj:
                greedy = obj["greedy"]
            elif "pos" in obj:
                tops.append(obj["top"][0][0])
    return (parse_logit_lines(out) if full else None), tops, greedy
