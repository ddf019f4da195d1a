"""Broken, truncated and hostile model files: `lode inspect` / `lode logits`
must exit 1 with one clear message naming the file (and the tensor or key),
never crash, hang or run out of memory. Runs under ASan/UBSan too."""
import json
import os
import shutil
import struct

import pytest

from lodetest import CACHE, lode, model

TIMEOUT = 60


def bad_dir(name):
    d = os.path.join(CACHE, "malformed", name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def check_fails(path, *needles):
    p = lode("logits", "-m", path, "--tokens", "1,2", check=False, timeout=TIMEOUT)
    assert p.returncode == 1, f"expected exit 1, got {p.returncode}\nstderr: {p.stderr}"
    err = p.stderr.strip()
    assert err.count("\n") == 0, f"expected one message, got:\n{err}"
    for n in needles:
        assert n in err, f"message lacks {n!r}: {err}"
    return err


def test_truncated_gguf_every_section():
    src = model("tiny-v2lite")
    data = open(src, "rb").read()
    d = bad_dir("trunc")
    # Header, kv area, tensor infos, data: cut at many points of each.
    cuts = sorted(set([0, 3, 4, 8, 16, 24, 25, 40, 100, 1000, 5000, 20000] +
                      [len(data) * k // 23 for k in range(1, 23)] + [len(data) - 1]))
    for c in cuts:
        p = os.path.join(d, f"t{c}.gguf")
        open(p, "wb").write(data[:c])
        check_fails(p, p)


def test_gguf_bad_magic_and_version():
    src = model("tiny-llama")
    data = bytearray(open(src, "rb").read())
    d = bad_dir("magic")
    p = os.path.join(d, "magic.gguf")
    open(p, "wb").write(b"GGUX" + data[4:])
    check_fails(p, p)
    for v in (1, 4, 0xFFFFFFFF):
        q = os.path.join(d, f"v{v}.gguf")
        open(q, "wb").write(data[:4] + struct.pack("<I", v) + data[8:])
        check_fails(q, q)


def test_gguf_huge_counts():
    src = model("tiny-llama")
    data = bytearray(open(src, "rb").read())
    d = bad_dir("huge")
    for off, name in ((8, "tensors"), (16, "kvs")):
        for val in (2**63 - 1, 2**40, 2**32 + 5):
            b = bytearray(data)
            b[off:off + 8] = struct.pack("<Q", val)
            p = os.path.join(d, f"{name}{val}.gguf")
            open(p, "wb").write(b)
            check_fails(p, p)


def test_gguf_random_corruption_never_crashes():
    src = model("tiny-v2")
    data = open(src, "rb").read()
    d = bad_dir("flip")
    import random
    rng = random.Random(1234)
    header_end = 40000 if len(data) > 40000 else len(data)
    for i in range(40):
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(0, header_end)
            b[pos] = rng.randrange(256)
        p = os.path.join(d, f"f{i}.gguf")
        open(p, "wb").write(b)
        r = lode("inspect", "-m", p, check=False, timeout=TIMEOUT)
        assert r.returncode in (0, 1), f"corruption {i}: exit {r.returncode}\n{r.stderr[-2000:]}"
        os.unlink(p)


def copy_hf(preset, name):
    src = model(preset, "hf")
    d = bad_dir(name)
    for f in os.listdir(src):
        shutil.copy(os.path.join(src, f), d)
    return d


def test_hf_missing_tensor_named():
    d = copy_hf("tiny-v2lite", "hf_missing")
    st = os.path.join(d, "model.safetensors")
    data = open(st, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8:8 + n])
    del hdr["model.layers.1.self_attn.kv_b_proj.weight"]
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    open(st, "wb").write(struct.pack("<Q", len(h)) + h + data[8 + n:])
    check_fails(d, "model.layers.1.self_attn.kv_b_proj.weight", "missing")


def test_hf_config_shape_mismatch_named():
    d = copy_hf("tiny-llama", "hf_shape")
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg["intermediate_size"] += 32
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    check_fails(d, "mlp.gate_proj.weight", "shape")


def test_hf_bad_config_json():
    d = copy_hf("tiny-llama", "hf_json")
    open(os.path.join(d, "config.json"), "w").write("{ not json")
    check_fails(d, "config.json")
    json.dump({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, open(os.path.join(d, "config.json"), "w"))
    check_fails(d, "not supported")


def test_hf_truncated_shard():
    d = copy_hf("tiny-llama", "hf_trunc")
    st = os.path.join(d, "model.safetensors")
    data = open(st, "rb").read()
    open(st, "wb").write(data[: len(data) // 2])
    check_fails(d, "model.safetensors")


def test_missing_path_and_not_a_model():
    check_fails("/nonexistent/model.gguf", "/nonexistent/model.gguf")
    d = bad_dir("empty")
    check_fails(d, "config.json")
