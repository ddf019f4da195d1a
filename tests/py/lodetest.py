"""Shared helpers for lode's Python test suites: the binary, the model cache,
and parsing of `lode logits` output."""
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LODE = os.environ.get("LODE_BIN", os.path.join(ROOT, "build", "lode"))
CACHE = os.environ.get("LODE_TEST_CACHE", os.path.join(ROOT, "build", "test-cache"))


def lode(*args, check=True, input=None, timeout=600, env=None):
    """Run the lode binary; returns CompletedProcess (text). `env` adds
    variables to the inherited environment. The exact-f32 kernels
    (LODE_INT8=0) are the default here: these suites compare quantized models
    with references of their dequantized weights; the int8-activation path
    (lode's default) is tested against its own bound where a test passes
    env={"LODE_INT8": "1"}."""
    if not os.path.exists(LODE):
        raise RuntimeError(f"lode binary not found at {LODE}: build it with `make`")
    e = dict(os.environ)
    e.setdefault("LODE_INT8", "0")
    e.update(env or {})
    p = subprocess.run([LODE, *map(str, args)], capture_output=True, text=True, input=input, timeout=timeout, env=e)
    if check and p.returncode != 0:
        raise AssertionError(f"lode {' '.join(map(str, args))} exited {p.returncode}:\n{p.stderr}")
    return p


def model(preset, fmt="gguf", typ="f32", seed=0, extra=()):
    """Path of a generated model, generated once per cache (and again when
    the lode binary is newer than the cached file)."""
    os.makedirs(CACHE, exist_ok=True)
    tag = "-".join([preset, typ, f"s{seed}"] + [e.strip("-") for e in extra])
    out = os.path.join(CACHE, tag + (".gguf" if fmt == "gguf" else ".hf"))
    stamp = out if fmt == "gguf" else os.path.join(out, "config.json")
    if not os.path.exists(stamp) or os.path.getmtime(stamp) < os.path.getmtime(LODE):
        if fmt == "hf" and os.path.isdir(out):
            for f in os.listdir(out):
                os.unlink(os.path.join(out, f))
        lode("gen", preset, "-o", out, "--format", fmt, "--type", typ, "--seed", seed, "--quiet", *extra)
    return out


def logits(path, tokens, *extra, full=True, env=None):
    """Rows of `lode logits` as dicts; with full=True each has 'logits'."""
    args = ["logits", "-m", path, "--tokens", ",".join(map(str, tokens))]
    if full:
        args.append("--full")
    p = lode(*args, *extra, env=env)
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
