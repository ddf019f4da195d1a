"""`lode serve` API details on tiny random models: JSON-RPC envelopes (null
ids, wrong params types, notifications and responses from the client), the
warm infill of an editor's next keystroke (only the changed tail computed),
work of an abandoned request kept for the next one, exact batching of
concurrent infills, status fields, and LODE_MODEL as the default model."""
import os
import subprocess
import threading
import time

import pytest

from daemonclient import Client, Daemon
from lodetest import LODE, model


@pytest.fixture(scope="module")
def d():
    dm = Daemon(model("tiny-coder"), "-t", "2", "--ctx", "8192")
    yield dm
    rc, err = dm.stop()
    assert rc == 0, err
    assert "ERROR: LeakSanitizer" not in err and "runtime error" not in err, err


def status(d):
    return d.client().call("lode/status", {})["result"]


def test_envelopes(d):
    c = d.client()
    c.send({"jsonrpc": "2.0", "id": None, "method": "lode/status"})
    assert c.read()["error"]["code"] == -32600
    c.send({"jsonrpc": "2.0", "id": 5, "method": "lode/generate", "params": 3})
    m = c.read()
    assert m["error"]["code"] == -32602 and m["id"] == 5
    c.send({"jsonrpc": "2.0", "id": "s", "method": 7})
    assert c.read()["error"]["code"] == -32600
    c.send([{"jsonrpc": "2.0", "id": 1, "method": "lode/status"}])
    assert c.read()["error"]["code"] == -32600
    # Never answered: unknown notifications, invalid notifications, responses.
    c.send({"jsonrpc": "2.0", "method": "$/setTrace", "params": {"value": "off"}})
    c.send({"jsonrpc": "2.0", "method": "lode/status", "params": 1})
    c.send({"jsonrpc": "2.0", "id": 99, "result": {}})
    c.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 12345}})
    c.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": [1]})
    rid = c.request("lode/status", {})
    m = c.read()
    assert m.get("id") == rid and "result" in m, m
    # A notification method called as a request is unknown.
    assert c.call("$/cancelRequest", {"id": 1})["error"]["code"] == -32601
    # Wrong types of every field are -32602 with a message naming the field.
    for bad in ({"prefix": 1}, {"prefix": "a", "suffix": 2}, {"prefix": "a", "extra": "x"},
                {"prefix": "a", "extra": [1]}, {"prefix": "a", "temperature": "hot"},
                {"prefix": "a", "stream": 1}, {"prefix": "a", "deadline_ms": -1}):
        r = c.call("lode/infill", bad)
        assert r["error"]["code"] == -32602 and r["error"]["message"], (bad, r)
    for bad in ({"messages": []}, {"messages": [{"role": "user"}]}, {"messages": "hi"}):
        assert c.call("lode/chat", bad)["error"]["code"] == -32602, bad


def test_warm_infill_computes_only_the_changed_tail(d):
    c = d.client()
    body = "".join(f"    v{i} = step(v{i - 1}, {i})\n" for i in range(1, 60))
    prefix = "def run(v0):\n" + body + "    return v"
    r1 = c.call("lode/infill", {"prefix": prefix + "1", "suffix": "\n", "max_tokens": 2})["result"]
    before = status(d)["tokens"]["computed"]
    r2 = c.call("lode/infill", {"prefix": prefix + "2", "suffix": "\n", "max_tokens": 2})["result"]
    after = status(d)["tokens"]["computed"]
    assert r2["prompt_tokens"] > 500, r2
    assert r2["cached_tokens"] >= r1["prompt_tokens"] - 8, (r1, r2)
    # The FIM suffix markers follow the changed token: a handful of tokens plus the decode step.
    assert after - before <= r2["prompt_tokens"] - r2["cached_tokens"] + 2, (before, after, r2)
    st = status(d)
    assert st["cache_hits"] >= 1 and st["tokens_saved"] >= r2["cached_tokens"]


def test_abandoned_prefill_is_kept(d):
    """A request cancelled mid-prefill leaves its computed chunks cached: the
    two requests together compute the prompt once."""
    c = d.client()
    text = "".join(f"let x{i} = {i} * y;\n" for i in range(300))
    before = status(d)["tokens"]["computed"]
    rid = c.request("lode/generate", {"text": text, "max_tokens": 4, "ignore_eos": True})
    time.sleep(0.02)
    c.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": rid}})
    r = c.response(rid)
    assert "result" in r or r["error"]["code"] == -32800, r
    r2 = c.call("lode/generate", {"text": text, "max_tokens": 4, "ignore_eos": True})["result"]
    after = status(d)["tokens"]["computed"]
    decode_steps = 3 + (4 if "result" in r else 0)  # +1: the last prompt token is re-evaluated
    assert after - before <= r2["prompt_tokens"] + decode_steps, (before, after, r2)
    assert r2["cached_tokens"] > 0


def test_concurrent_infills_are_exact(d):
    c = d.client()
    cases = [{"prefix": f"def f{i}(a, b):\n    ", "suffix": "\n    return a\n", "max_tokens": 10} for i in range(6)]
    alone = [c.call("lode/infill", p)["result"]["tokens"] for p in cases]
    got = [None] * len(cases)

    def w(i):
        got[i] = d.client().call("lode/infill", cases[i])["result"]["tokens"]

    th = [threading.Thread(target=w, args=(i,)) for i in range(len(cases))]
    [t.start() for t in th]
    [t.join() for t in th]
    assert got == alone


def test_status_fields(d):
    st = status(d)
    for k in ("rss_mb", "kv_mb", "cache_hit_rate", "cache_hits", "tokens_saved", "tokens_per_s",
              "generated_tokens_per_s"):
        assert k in st, k
    assert st["rss_mb"] > 0
    assert set(st["requests"]) >= {"received", "done", "cancelled", "active", "queued"}


def test_lode_model_env_is_the_default_model(tmp_path):
    os.chmod(tmp_path, 0o700)
    sock = str(tmp_path / "s.sock")
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path), LODE_MODEL=model("tiny-llama"))
    p = subprocess.Popen([LODE, "serve", "--socket", sock], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        for _ in range(400):
            if os.path.exists(sock) or p.poll() is not None:
                break
            time.sleep(0.05)
        assert os.path.exists(sock), p.stderr.read().decode() if p.poll() is not None else "no socket"
        assert Client(sock).call("lode/status", {})["result"]["architecture"] == "llama"
        assert subprocess.run([LODE, "stop", "--socket", sock], capture_output=True, timeout=30).returncode == 0
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
    env.pop("LODE_MODEL")
    q = subprocess.run([LODE, "serve", "--socket", sock], capture_output=True, text=True, env=env, timeout=30)
    assert q.returncode == 2 and "LODE_MODEL" in q.stderr


def test_in_flight_cap_per_connection(d):
    """A client flooding requests is refused beyond 256 in flight; others are unaffected."""
    c = d.client()
    for i in range(300):
        c.request("lode/generate", {"text": "x", "max_tokens": 4000, "ignore_eos": True}, rid=i)
    refused = 0
    while True:
        m = c.read(timeout=60)
        if m and "method" not in m and m.get("error", {}).get("code") == -32803:
            refused += 1
            if refused == 300 - 256:
                break
    assert "too many" in m["error"]["message"]
    c.close()  # cancels the 256 still running
    r = d.client().call("lode/generate", {"text": "y", "max_tokens": 2})
    assert "result" in r, r
