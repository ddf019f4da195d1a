"""A bounded soak of `lode serve`: many clients, random cancels and abrupt
disconnects, hostile bytes (malformed, oversized and half frames) on side
connections, mixed methods. Zero crashes, every request answered exactly
once, and a flat RSS. CI runs it short; `make soak` runs it long
(LODE_SOAK_CLIENTS, LODE_SOAK_REQUESTS)."""
import os
import random
import threading
import time

from daemonclient import Daemon
from lodetest import model

CLIENTS = int(os.environ.get("LODE_SOAK_CLIENTS", "16"))
REQUESTS = int(os.environ.get("LODE_SOAK_REQUESTS", "25"))


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


HOSTILE = [
    b"Content-Length: 12\r\n\r\n{not json!!}",                      # -32700, stream goes on
    b"Content-Length: 6\r\n\r\n\"\xff\xfe\"  ",                      # invalid UTF-8: -32700
    b"Content-Length: 99999999999\r\n\r\n",                          # oversized: -32700 + close
    b"no colon here\r\n\r\n",                                        # malformed header: close
    b"Content-Length: 40\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1",          # half a frame, then gone
]


def answer(c, rid, seen, errors):
    """The response to rid; a second response to any id is an error."""
    while True:
        m = c.read(timeout=120)
        if m is None:
            raise EOFError("connection closed")
        if "method" in m:
            continue
        mid = m.get("id")
        if mid is not None:
            if mid in seen:
                errors.append(f"second response to id {mid}: {m}")
            seen.add(mid)
        if mid == rid:
            return m


def worker(d, seed, errors, counts):
    rng = random.Random(seed)
    c, seen, next_id = d.client(), set(), 0
    for i in range(REQUESTS):
        kind = rng.random()
        try:
            if kind < 0.1:  # abrupt disconnect mid-request
                c.request("lode/generate", {"text": "x" * rng.randint(1, 50), "max_tokens": 64, "ignore_eos": True})
                c.close()
                c, seen = d.client(), set()
                counts["disconnect"] += 1
                continue
            if kind < 0.15:  # hostile bytes on a fresh connection of their own
                h = d.client()
                h.send_raw(rng.choice(HOSTILE))
                if rng.random() < 0.5:
                    h.s.settimeout(5)
                    try:
                        h.read(timeout=5)
                    except Exception:  # noqa: BLE001 - a timeout or reset is fine here
                        pass
                h.close()
                counts["hostile"] += 1
                continue
            method = rng.choice(["lode/generate", "lode/infill", "lode/chat"])
            params = {"max_tokens": rng.randint(1, 12), "temperature": rng.choice([0, 0.8]), "seed": i,
                      "stream": rng.random() < 0.5}
            if method == "lode/generate":
                params["text"] = "def f%d(x):\n    return " % rng.randint(0, 5)
            elif method == "lode/infill":
                params.update(prefix="int main() {\n  ", suffix="\n}\n")
            else:
                params["messages"] = [{"role": "user", "content": "hello %d" % rng.randint(0, 3)}]
            next_id += 1
            rid = c.request(method, params, rid=next_id)
            if rng.random() < 0.2:
                c.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": rid}})
            r = answer(c, rid, seen, errors)
            if "result" in r:
                counts["ok"] += 1
            elif r["error"]["code"] == -32800:
                counts["cancelled"] += 1
            else:
                errors.append(r)
        except Exception as e:  # noqa: BLE001 - any failure is a soak failure
            errors.append(repr(e))
    c.close()


def test_soak():
    d = Daemon(model("tiny-v2lite"), "-t", "2", "--ctx", "8192")
    try:
        # Warm up, then measure RSS around the soak.
        c = d.client()
        for _ in range(20):
            c.call("lode/generate", {"text": "warm up", "max_tokens": 8})
        before = rss_kb(d.p.pid)
        errors, counts = [], {"ok": 0, "cancelled": 0, "disconnect": 0, "hostile": 0}
        th = [threading.Thread(target=worker, args=(d, k, errors, counts)) for k in range(CLIENTS)]
        [t.start() for t in th]
        [t.join() for t in th]
        assert not errors, errors[:5]
        assert d.p.poll() is None, "daemon died"
        # A worker's last step may be an abrupt disconnect with a 64-token
        # request in flight: the daemon cancels it once it reads the EOF, so
        # the count must drain to 0 shortly after, never stay up (a leak).
        deadline = time.monotonic() + 15
        while True:
            active = c.call("lode/status", {})["result"]["requests"]["active"]
            if active == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert active == 0, f"{active} requests still active 15 s after every client finished"
        after = rss_kb(d.p.pid)
        print(f"soak: {CLIENTS} clients x {REQUESTS}: {counts}; RSS {before} -> {after} kB")
        assert counts["ok"] > CLIENTS * REQUESTS // 2, counts
        assert after - before < 64 * 1024, f"RSS grew {before} -> {after} kB"
    finally:
        rc, err = d.stop()
    assert rc == 0, err
    assert "ERROR: LeakSanitizer" not in err and "runtime error" not in err, err
