"""`lode lsp` over real pipes: hostile input (bad headers, wrong
Content-Length, invalid JSON and UTF-8, requests before initialize, huge
documents) answered with the proper JSON-RPC errors and never a crash; the
user told what is wrong (no model, model without FIM tokens); a daemon
killed mid-session and the session recovering; a recorded session replayed."""
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from lodetest import LODE, lode, model

HERE = os.path.dirname(os.path.abspath(__file__))
SESSIONS = os.path.join(os.path.dirname(HERE), "node", "sessions")


class Lsp:
    """A minimal LSP client on the pipes of `lode lsp`."""

    def __init__(self, *args, env=None):
        self.p = subprocess.Popen([LODE, "lsp", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env)
        self.q = queue.Queue()
        self.msgs = []
        self.next_id = 0
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        f = self.p.stdout
        while True:
            n = None
            while True:
                line = f.readline()
                if not line:
                    self.q.put(None)
                    return
                line = line.strip()
                if not line:
                    break
                k, v = line.split(b":", 1)
                if k.lower() == b"content-length":
                    n = int(v)
            self.q.put(json.loads(f.read(n)))

    def send_raw(self, b):
        self.p.stdin.write(b)
        self.p.stdin.flush()

    def send(self, msg):
        body = json.dumps(msg).encode()
        self.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def notify(self, method, params=None):
        self.send({"jsonrpc": "2.0", "method": method, "params": params if params is not None else {}})

    def request(self, method, params=None):
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params if params is not None else {}})
        return self.next_id

    def next(self, timeout=60):
        m = self.q.get(timeout=timeout)
        if m is not None:
            self.msgs.append(m)
            # Answer the server's own requests (progress, configuration).
            if "method" in m and "id" in m:
                self.send({"jsonrpc": "2.0", "id": m["id"], "result": None})
        return m

    def next_response(self, timeout=60):
        while True:
            m = self.next(timeout)
            assert m is not None, "lode lsp closed stdout"
            if "method" not in m:
                return m

    def response(self, rid, timeout=60):
        for m in self.msgs:
            if m.get("id") == rid and "method" not in m:
                return m
        deadline = time.time() + timeout
        while True:
            m = self.next(max(0.1, deadline - time.time()))
            assert m is not None, "lode lsp closed stdout: " + self.p.stderr.read().decode()
            if m.get("id") == rid and "method" not in m:
                return m

    def call(self, method, params=None, timeout=60):
        return self.response(self.request(method, params), timeout)

    def wait_note(self, pred, timeout=60):
        for m in self.msgs:
            if "method" in m and pred(m):
                return m
        deadline = time.time() + timeout
        while True:
            m = self.next(max(0.1, deadline - time.time()))
            assert m is not None, "lode lsp closed stdout"
            if "method" in m and pred(m):
                return m

    def initialize(self, **opts):
        r = self.call("initialize", {"processId": None, "rootUri": None, "capabilities": {
            "textDocument": {"inlineCompletion": {}}, "window": {"workDoneProgress": True}},
            "initializationOptions": {"debounceMs": 0, "maxTokens": 8, **opts}})
        self.notify("initialized")
        return r

    def open(self, uri, text, lang="python"):
        self.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": lang, "version": 1, "text": text}})

    def inline(self, uri, line, ch, kind=1):
        return self.call("textDocument/inlineCompletion", {"textDocument": {"uri": uri}, "position": {
            "line": line, "character": ch}, "context": {"triggerKind": kind}})

    def finish(self):
        assert self.call("shutdown")["result"] is None
        self.notify("exit")
        rc = self.p.wait(timeout=30)
        err = self.p.stderr.read().decode()
        assert "ERROR: LeakSanitizer" not in err and "runtime error" not in err, err
        return rc


@pytest.fixture
def rt():
    d = tempfile.mkdtemp(prefix="lode-lsp-py-")
    os.chmod(d, 0o700)
    # Random-weight models write random text, which the syntax-aware post-processing
    # of the project context rejects; these tests are about the protocol (the project
    # context through `lode lsp` is tests/py/test_context.py).
    env = dict(os.environ, XDG_STATE_HOME=d, LODE_NO_PROJECT_CONTEXT="1")
    env.pop("LODE_MODEL", None)
    sock = os.path.join(d, "lode.sock")
    yield d, sock, env
    lode("stop", "--socket", sock, check=False)
    shutil.rmtree(d, ignore_errors=True)


def shown(c, typ=None):
    return [m["params"]["message"] for m in c.msgs if m.get("method") == "window/showMessage"
            and (typ is None or m["params"]["type"] == typ)]


def test_bad_input_never_crashes(rt):
    _, sock, env = rt
    c = Lsp("--socket", sock, env=env)
    # Before initialize: requests get -32002, notifications are dropped.
    assert c.call("textDocument/inlineCompletion", {})["error"]["code"] == -32002
    c.notify("textDocument/didOpen", {"textDocument": {"uri": "file:///x", "languageId": "c", "version": 1, "text": ""}})
    # Body that is not JSON, then one that is not UTF-8: -32700, stream goes on.
    c.send_raw(b"Content-Length: 5\r\n\r\n{bad}")
    assert c.next_response()["error"]["code"] == -32700
    c.send_raw(b"Content-Length: 7\r\n\r\n\"\xff\xfe\xfd\xfc\xfb\"")
    assert c.next_response()["error"]["code"] == -32700
    # Broken framing: no Content-Length, a non-numeric one, a header without
    # a colon: each answered, then resynchronised at the next header.
    for junk in (b"Content-Type: x\r\n\r\n{}", b"Content-Length: abc\r\n\r\n{}", b"garbage line\r\n\r\n"):
        c.send_raw(junk)
        rid = c.request("textDocument/hover", {})
        r = c.response(rid)
        assert r["error"]["code"] == -32002, r
        assert any(m.get("error", {}).get("code") == -32700 and m.get("id") is None for m in c.msgs)
        c.msgs.clear()
    # Not JSON-RPC 2.0 / wrong id type / batch: -32600.
    c.send({"id": 1, "method": "initialize"})
    assert c.next_response()["error"]["code"] == -32600
    c.send({"jsonrpc": "2.0", "id": {"x": 1}, "method": "initialize"})
    assert c.next_response()["error"]["code"] == -32600
    c.send([{"jsonrpc": "2.0", "id": 1, "method": "initialize"}])
    assert c.next_response()["error"]["code"] == -32600
    r = c.initialize()
    assert r["result"]["capabilities"]["positionEncoding"] == "utf-16"
    assert c.call("initialize", {"capabilities": {}})["error"]["code"] == -32600
    uri = "file:///t.py"
    c.open(uri, "a\nb\n")
    for bad in ({}, {"textDocument": {"uri": uri}}, {"textDocument": {"uri": uri}, "position": {"line": -1, "character": 0}},
                {"textDocument": {"uri": uri}, "position": {"line": "0", "character": 0}},
                {"textDocument": {"uri": uri}, "position": {"line": 3, "character": 0}},
                {"textDocument": {"uri": "file:///unknown"}, "position": {"line": 0, "character": 0}}):
        assert c.call("textDocument/inlineCompletion", bad)["error"]["code"] == -32602, bad
    assert c.call("textDocument/completion", [1, 2])["error"]["code"] == -32602
    # Malformed notifications and ranges past the end: ignored or clamped.
    c.notify("textDocument/didChange", {"textDocument": {"uri": uri}, "contentChanges": [{"range": {"start": 1}, "text": "x"}]})
    c.notify("textDocument/didChange", {"textDocument": {"uri": uri}, "contentChanges": [
        {"range": {"start": {"line": 50, "character": 9}, "end": {"line": 60, "character": 0}}, "text": "z"}]})
    c.notify("textDocument/didChange", {"textDocument": {"uri": "file:///unknown"}, "contentChanges": []})
    c.notify("$/unknownNotification", {})
    c.notify("workspace/didChangeConfiguration", {"settings": {"lode": {"maxTokens": "many", "temperature": -3}}})
    c.wait_note(lambda m: m["method"] == "window/showMessage" and "maxTokens" in m["params"]["message"])
    # A huge document (over 16 MiB): a warning, empty answers, no crash.
    big = "x" * (17 << 20)
    c.open("file:///big.txt", big, "plaintext")
    r = c.inline("file:///big.txt", 0, 5)
    assert r["result"] == {"items": []}
    assert any("big.txt" in s for s in shown(c, 2))
    # A message over the 64 MiB frame limit: -32700, then resync.
    c.send_raw(b"Content-Length: 99999999999\r\n\r\n")
    assert c.call("lode/status")["result"]["positionEncoding"] == "utf-16"
    assert c.finish() == 0


def test_exit_without_shutdown_is_1(rt):
    _, sock, env = rt
    c = Lsp("--socket", sock, env=env)
    c.initialize()
    c.notify("exit")
    assert c.p.wait(timeout=30) == 1
    c2 = Lsp("--socket", sock, env=env)
    c2.p.stdin.close()  # EOF without exit
    assert c2.p.wait(timeout=30) == 1


def test_no_model_tells_the_user(rt):
    _, sock, env = rt
    c = Lsp("--socket", sock, env=env)
    c.initialize()
    c.open("file:///a.py", "def f():\n    ")
    r = c.inline("file:///a.py", 1, 4)
    assert r["result"] == {"items": []}  # the spinner ends
    msgs = shown(c, 1)
    assert msgs and "no model" in msgs[0] and "LODE_MODEL" in msgs[0], c.msgs
    st = c.wait_note(lambda m: m["method"] == "lode/status" and m["params"]["state"] == "error")
    assert "no lode daemon" in st["params"]["message"]
    assert c.finish() == 0


def test_bad_model_file_tells_the_user(rt):
    d, sock, env = rt
    bad = os.path.join(d, "broken.gguf")
    with open(bad, "wb") as f:
        f.write(b"GGUF\x03\x00\x00\x00garbage")
    c = Lsp("-m", bad, "--socket", sock, env=env)
    c.initialize()
    c.open("file:///a.py", "x = ")
    r = c.inline("file:///a.py", 0, 4)
    assert r["result"] == {"items": []}
    msgs = shown(c, 1)
    assert msgs and "exited" in msgs[0] and "log" in msgs[0], msgs
    assert c.finish() == 0


VOCAB = os.path.join(os.path.dirname(os.path.dirname(HERE)), "..", "shared", "data", "vocab")


@pytest.mark.skipif(not os.path.exists(os.path.join(VOCAB, "ggml-vocab-deepseek-llm.gguf")),
                    reason="needs ../shared/data/vocab")
def test_model_without_fim_tokens(rt):
    d, sock, env = rt
    # DeepSeek-LLM's vocabulary has no FIM markers (a chat model, not a coder).
    nofim = os.path.join(d, "nofim.gguf")
    lode("gen", "tiny-llama", "-o", nofim, "--type", "q8_0", "--quiet", "--vocab",
         os.path.join(VOCAB, "ggml-vocab-deepseek-llm.gguf"))
    c = Lsp("-m", nofim, "--socket", sock, env=env)
    c.initialize()
    c.open("file:///a.py", "x = ")
    r = c.inline("file:///a.py", 0, 4)
    assert r["result"] == {"items": []}
    msgs = shown(c, 1)
    assert msgs and "cannot complete code" in msgs[0] and "fill-in-the-middle" in msgs[0], msgs
    assert c.finish() == 0


def daemon_pid(sock):
    out = lode("status", "--socket", sock, "--json", check=False)
    return json.loads(out.stdout)["pid"] if out.returncode == 0 else None


def test_daemon_killed_mid_session_recovers(rt):
    _, sock, env = rt
    c = Lsp("-m", model("tiny-coder"), "--socket", sock, env=env)
    c.initialize(maxTokens=16)
    uri = "file:///k.py"
    c.open(uri, "def add(a, b):\n    return ")
    c.wait_note(lambda m: m["method"] == "lode/status" and m["params"]["state"] == "ready")
    pid = daemon_pid(sock)
    assert pid
    # A request in flight when the daemon dies: it is resubmitted to the
    # daemon that `lode lsp` starts again, and answered. The daemon is frozen
    # first so the request cannot finish before the kill (a tiny model answers
    # in milliseconds).
    os.kill(pid, signal.SIGSTOP)
    rid = c.request("textDocument/inlineCompletion", {"textDocument": {"uri": uri}, "position": {
        "line": 1, "character": 11}, "context": {"triggerKind": 1}})
    time.sleep(0.3)
    while not c.q.empty():
        c.next(1)
    assert not any(m.get("id") == rid and "method" not in m for m in c.msgs), "answered by a frozen daemon"
    os.kill(pid, signal.SIGKILL)
    c.notify("workspace/didChangeConfiguration", {"settings": {"lode": {"maxTokens": 8}}})
    r = c.response(rid, timeout=120)
    assert "result" in r, r
    new_pid = daemon_pid(sock)
    assert new_pid and new_pid != pid
    r = c.inline(uri, 1, 11)
    assert len(r["result"]["items"]) == 1, r
    assert not shown(c, 1), shown(c)
    # A clean restart between requests (lode stop): the next request reconnects.
    lode("stop", "--socket", sock)
    time.sleep(0.3)
    r = c.inline(uri, 1, 11)
    assert len(r["result"]["items"]) == 1, r
    assert c.finish() == 0


def test_replay_recorded_session(rt):
    """tests/node/sessions/*.jsonl: one message per line, client→server
    ("send") and the expected server answers ("expect": a subset that must
    match, matched by id)."""
    _, sock, env = rt
    for name in sorted(os.listdir(SESSIONS)):
        c = Lsp("-m", model("tiny-coder"), "--socket", sock, env=env)
        with open(os.path.join(SESSIONS, name)) as f:
            for ln, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("//"):
                    continue
                ev = json.loads(line)
                if "send" in ev:
                    c.send(ev["send"])
                else:
                    want = ev["expect"]
                    got = c.response(want["id"], timeout=60)
                    assert subset(want, got), f"{name}:{ln}: expected {want}, got {got}"
        assert c.p.wait(timeout=30) == 0, name


def subset(want, got):
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and subset(v, got[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(got, list) and len(want) == len(got) and all(subset(a, b) for a, b in zip(want, got))
    if want == "*":
        return True
    return want == got


def test_context_too_small_and_other_model(rt):
    """A running daemon with a tiny KV cache: the user is told the context
    does not fit and what to change; asking for another model than the one
    the daemon serves is explained too."""
    from daemonclient import Daemon
    d, _, env = rt
    dm = Daemon(model("tiny-coder"), "--ctx", "64", "-t", "1")
    try:
        c = Lsp("-m", os.path.join(d, "other.gguf"), "--socket", dm.sock, env=env)
        c.initialize(maxTokens=32)
        c.open("file:///a.py", "def f(x):\n" * 40)
        r = c.inline("file:///a.py", 40, 0)
        assert r["result"] == {"items": []}
        msgs = shown(c, 2)
        assert any("does not fit" in m and "contextBudget" in m and "--ctx" in m for m in msgs), msgs
        assert any("serves" in m and "other.gguf" in m and "lode stop" in m for m in msgs), msgs
        assert c.finish() == 0
    finally:
        dm.stop()


def test_random_garbage_between_messages(rt):
    """Seeded random bytes, half-headers, short Content-Lengths and random
    JSON between valid requests: every valid request is still answered."""
    import random
    _, sock, env = rt
    rnd = random.Random(7)
    c = Lsp("--socket", sock, env=env)
    c.initialize()
    c.open("file:///g.py", "x = 1\n")
    pieces = [b"Content-Length: ", b"\r\n", b"\r\n\r\n", b"{", b"}", b'"jsonrpc":"2.0"', b"\xff", b"\xc3", b":",
              b"Content-Type: a\r\n", b"id", b"method", b"0", b"[", b"null"]
    for i in range(150):
        junk = b"".join(rnd.choice(pieces) if rnd.random() < 0.7 else bytes([rnd.randrange(256)])
                        for _ in range(rnd.randrange(1, 40)))
        if rnd.random() < 0.3:  # a framed body that is too long for its (smaller) Content-Length
            junk += b"Content-Length: %d\r\n\r\n" % rnd.randrange(0, len(junk) + 1) + junk
        c.send_raw(junk.replace(b"Content-Length: \r", b"Content-Length: 1\r"))
        # Whatever the junk left half-parsed, a big enough valid frame closes it and the next one is read.
        c.send_raw(b"\r\n\r\n" + b" " * 64)
        rid = 10000 + i
        body = json.dumps({"jsonrpc": "2.0", "id": rid, "method": "textDocument/inlineCompletion", "params": {
            "textDocument": {"uri": "file:///g.py"}, "position": {"line": 0, "character": 5}}}).encode()
        for _ in range(2):
            c.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        r = c.response(rid, timeout=30)
        assert "result" in r or r["error"]["code"] in (-32602,), r
        assert c.p.poll() is None
    assert c.finish() == 0
