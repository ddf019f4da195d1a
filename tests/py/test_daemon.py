"""`lode serve`: the socket API on tiny random models — exact batching,
prefix-cache hits proven by tokens computed, cancellation, deadlines, bad
input, disconnects, security of the socket, single instance, clean stop."""
import json
import os
import signal
import stat
import subprocess
import threading
import time

import pytest

from daemonclient import Client, Daemon
from lodetest import LODE, lode, model


@pytest.fixture(scope="module")
def d():
    dm = Daemon(model("tiny-v2lite"), "-t", "2", "--ctx", "4096")
    yield dm
    rc, err = dm.stop()
    assert rc == 0, err
    assert "ERROR: LeakSanitizer" not in err and "runtime error" not in err, err


PROMPTS = ["def fib(n):", "int main(void) {", "class Stack:\n    def push(self, x):", "import os\nimport sys\n",
           "function add(a, b) {", "SELECT * FROM t WHERE", "fn main() {", "#include <stdio.h>\n"]


def gen(c, text, **kw):
    r = c.call("lode/generate", dict(text=text, max_tokens=kw.pop("max_tokens", 12), **kw))
    assert "result" in r, r
    return r["result"]


def test_socket_is_private(d):
    st = os.stat(d.sock)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d.dir).st_mode) == 0o700


def test_status_and_cli(d):
    s = d.client().call("lode/status", {})["result"]
    assert s["architecture"] == "deepseek2" and s["kv_cells"] == 4096
    p = lode("status", "--socket", d.sock)
    assert "hit rate" in p.stdout and "requests" in p.stdout


def test_concurrent_equals_sequential(d):
    """Batching is exact: the same greedy tokens alone and under 8-way load."""
    c = d.client()
    alone = {t: gen(c, t, max_tokens=16)["tokens"] for t in PROMPTS}
    results = {}

    def worker(t):
        results[t] = gen(d.client(), t, max_tokens=16)["tokens"]

    th = [threading.Thread(target=worker, args=(t,)) for t in PROMPTS]
    [x.start() for x in th]
    [x.join() for x in th]
    assert results == alone


def test_prefix_cache_hits_by_tokens_computed(d):
    c = d.client()
    base = "def long_function_name(alpha, beta, gamma):\n" * 20
    r1 = gen(c, base + "    return alpha", max_tokens=1)
    s1 = c.call("lode/status", {})["result"]["tokens"]["computed"]
    r2 = gen(c, base + "    return beta", max_tokens=1)
    s2 = c.call("lode/status", {})["result"]["tokens"]["computed"]
    assert r2["cached_tokens"] >= r1["prompt_tokens"] - 10, (r1, r2)
    # Only the changed tail (plus the one sampled step) was computed.
    assert s2 - s1 <= r2["prompt_tokens"] - r2["cached_tokens"] + 1, (s1, s2, r2)


def test_cancel_stops_compute(d):
    c = d.client()
    before = c.call("lode/status", {})["result"]["tokens"]["computed"]
    rid = c.request("lode/generate", {"text": "x", "max_tokens": 4000, "stream": True, "ignore_eos": True})
    while not c.notes:
        m = c.read()
        assert "method" in m, f"finished before it could be cancelled: {m}"
        c.notes.append(m)
    c.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": rid}})
    r = c.response(rid)
    assert r["error"]["code"] == -32800, r
    time.sleep(0.2)
    after = c.call("lode/status", {})["result"]["tokens"]["computed"]
    assert after - before < 2000, "compute continued after cancellation"


def test_deadline(d):
    c = d.client()
    r = c.call("lode/generate", {"text": "x", "max_tokens": 4000, "deadline_ms": 200, "ignore_eos": True})
    assert r["error"]["code"] == -32000, r


def test_infill_and_chat_need_model_formats(d):
    c = d.client()
    r = c.call("lode/infill", {"prefix": "def add(a, b):\n    ", "suffix": "\n", "max_tokens": 4})
    assert "result" in r and r["result"]["generated_tokens"] >= 1
    r = c.call("lode/chat", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert "result" in r


def test_bad_input(d):
    c = d.client()
    c.send_raw(b"Content-Length: 5\r\n\r\n{oops")
    m = c.read()
    assert m["error"]["code"] == -32700
    assert c.call("lode/nope", {})["error"]["code"] == -32601
    assert c.call("lode/generate", {"text": 5})["error"]["code"] == -32602
    assert c.call("lode/generate", {"text": "a", "max_tokens": -3})["error"]["code"] == -32602
    assert c.call("lode/generate", {"tokens": [1, 99999999]})["error"]["code"] == -32602
    assert c.call("lode/generate", {"text": "a", "stop": "x"})["error"]["code"] == -32602
    c.send_raw(b"Content-Length: 7\r\n\r\n\"\xff\xfe\x00\"  ")
    assert c.read()["error"]["code"] == -32700, "invalid UTF-8"
    c.send({"jsonrpc": "1.0", "id": 9, "method": "lode/status"})
    assert c.read()["error"]["code"] == -32600
    # Still serving this connection:
    assert "result" in c.call("lode/status", {})
    # Framing errors close only that connection.
    bad = d.client()
    bad.send_raw(b"Content-Length: 999999999999\r\n\r\n")
    assert bad.read()["error"]["code"] == -32700
    assert bad.read() is None
    bad2 = d.client()
    bad2.send_raw(b"garbage without colon\r\n\r\n")
    bad2.read()
    assert bad2.read() is None
    assert "result" in d.client().call("lode/status", {})


def test_disconnect_mid_stream_cancels(d):
    before = d.client().call("lode/status", {})["result"]["requests"]["cancelled"]
    c = d.client()
    c.request("lode/generate", {"text": "x", "max_tokens": 4000, "stream": True, "ignore_eos": True})
    c.read()
    c.close()
    for _ in range(100):
        s = d.client().call("lode/status", {})["result"]
        if s["requests"]["cancelled"] > before and s["requests"]["active"] == 0:
            break
        time.sleep(0.05)
    assert s["requests"]["cancelled"] > before


def test_single_instance_and_sigterm():
    dm = Daemon(model("tiny-llama"))
    p = subprocess.run([LODE, "serve", "-m", model("tiny-llama"), "--socket", dm.sock], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, XDG_STATE_HOME=dm.dir))
    assert p.returncode != 0 and "already running" in p.stderr
    dm.p.send_signal(signal.SIGTERM)
    assert dm.p.wait(timeout=30) == 0
    assert not os.path.exists(dm.sock)


def test_refuses_open_socket_dir(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(d, 0o755)
    p = subprocess.run([LODE, "serve", "-m", model("tiny-llama"), "--socket", str(d / "s.sock")], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, XDG_STATE_HOME=str(tmp_path)))
    assert p.returncode != 0 and "0700" in p.stderr


def test_newest_first_within_a_client(d):
    """An editor's latest request is prefilled before its older ones."""
    c = d.client()
    ids = [c.request("lode/generate", {"text": f"# v{k}\n" + "x = compute(y) + 1\n" * 120, "max_tokens": 1})
           for k in range(3)]
    order = []
    while len(order) < 3:
        m = c.read()
        if "id" in m and "method" not in m:
            order.append(m["id"])
    assert order[0] == ids[-1], f"completion order {order} for requests {ids}"
