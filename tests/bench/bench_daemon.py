#!/usr/bin/python3
"""Benchmark of `lode serve` (issue 5):
  1. aggregate generated tokens/s with 1, 4 and 16 concurrent streams
     (continuous batching: decode steps share one pass over the weights);
  2. latency of a warm lode/infill whose ~2K-token prompt differs from the
     previous one only in its last prefix token, vs the same request cold,
     with the tokens computed for each (from lode/status);
  3. latency of a short interactive request submitted while another client's
     long prefill is running (it waits at most one prefill chunk);
  4. time from $/cancelRequest to the cancelled answer during a long prefill.
Usage: tests/bench/bench_daemon.py MODEL [--tokens 32] [--threads N] [--json]
The model needs FIM tokens for (2) (e.g. a deepseek-coder vocabulary)."""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "py"))
from daemonclient import Daemon  # noqa: E402


def arg(name, default):
    return type(default)(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


def computed(c):
    return c.call("lode/status", {})["result"]["tokens"]["computed"]


def streams(d, k, n):
    toks = []

    def w(i):
        r = d.client().call("lode/generate", {"text": f"def f{i}(x):\n    return", "max_tokens": n,
                                              "ignore_eos": True}, timeout=3600)
        toks.append(r["result"]["generated_tokens"])

    th = [threading.Thread(target=w, args=(i,)) for i in range(k)]
    t0 = time.time()
    [t.start() for t in th]
    [t.join() for t in th]
    return sum(toks) / (time.time() - t0)


def prompt_of(n_lines):
    body = "".join(f"    value_{i} = compute(value_{i - 1}, {i})\n" for i in range(1, n_lines))
    return "def pipeline(value_0):\n" + body + "    return value_"


def main():
    m = sys.argv[1]
    n = arg("--tokens", 32)
    threads = arg("--threads", 0)
    res = {}
    extra = ["-t", str(threads)] if threads else []
    d = Daemon(m, "--ctx", "16384", "--cache-tokens", "12288", *extra)
    try:
        c = d.client()
        c.call("lode/generate", {"text": "warm up", "max_tokens": 4, "ignore_eos": True}, timeout=3600)
        res["streams"] = {}
        for k in (1, 4, 16):
            res["streams"][k] = streams(d, k, n)
            print(f"# {k} streams: {res['streams'][k]:.1f} t/s", file=sys.stderr, flush=True)

        # A ~2K-token FIM prompt; the next keystroke changes its last prefix token.
        lines = 120
        while True:
            pre = prompt_of(lines)
            r = c.call("lode/infill", {"prefix": pre + "1", "suffix": "\n", "max_tokens": 1}, timeout=3600)
            if "error" in r:
                raise SystemExit(f"lode/infill failed (does the model have FIM tokens?): {r['error']}")
            if r["result"]["prompt_tokens"] >= 2000:
                break
            lines = int(lines * 2048 / r["result"]["prompt_tokens"]) + 2
        infill = {}
        for label, tail, fresh in (("cold", "3", True), ("warm", "4", False)):
            if fresh:  # a prompt sharing nothing with the cache beyond the first line
                p = pre.replace("compute", "compote") + tail
            else:
                p = pre + tail
            before = computed(c)
            t0 = time.time()
            r = c.call("lode/infill", {"prefix": p, "suffix": "\n", "max_tokens": 1}, timeout=3600)["result"]
            ms = 1000 * (time.time() - t0)
            infill[label] = {"ms": ms, "prompt_tokens": r["prompt_tokens"], "cached_tokens": r["cached_tokens"],
                             "computed": computed(c) - before}
            print(f"# infill {label}: {infill[label]}", file=sys.stderr, flush=True)
        res["infill"] = infill

        # Interactive latency behind a long prefill of another client.
        other = d.client()
        long_text = prompt_of(60).replace("value", "item")  # ~1.2K tokens: several prefill chunks
        rid = other.request("lode/generate", {"text": long_text, "max_tokens": 1})
        time.sleep(0.2)
        t0 = time.time()
        c.call("lode/generate", {"text": "x = ", "max_tokens": 1}, timeout=3600)
        res["interactive_behind_prefill_ms"] = 1000 * (time.time() - t0)
        r = other.response(rid, timeout=3600)
        if "error" in r:
            raise SystemExit(f"the long request failed: {r['error']}")

        # Cancel latency during a long prefill.
        rid = other.request("lode/generate", {"text": long_text.replace("item", "elem"), "max_tokens": 1})
        time.sleep(0.2)
        t0 = time.time()
        other.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": rid}})
        r = other.response(rid, timeout=3600)
        res["cancel_ms"] = 1000 * (time.time() - t0)
        res["cancel_answer"] = "cancelled" if "error" in r and r["error"]["code"] == -32800 else "finished first"
        st = c.call("lode/status", {})["result"]
        res["status"] = {k: st[k] for k in ("cache_hit_rate", "tokens_saved", "rss_mb", "kv_mb")}
    finally:
        d.stop()
    if "--json" in sys.argv:
        print(json.dumps(res))
        return
    print("| streams | aggregate generated t/s | vs 1 stream |\n|---|---|---|")
    for k, v in res["streams"].items():
        print(f"| {k} | {v:.1f} | {v / res['streams'][1]:.2f}x |")
    print()
    print("| lode/infill, ~2K-token prompt | latency ms | prompt tokens | reused | computed |\n|---|---|---|---|---|")
    for label, v in res["infill"].items():
        print(f"| {label} | {v['ms']:.0f} | {v['prompt_tokens']} | {v['cached_tokens']} | {v['computed']} |")
    print()
    print(f"interactive 1-token request behind another client's long prefill: "
          f"{res['interactive_behind_prefill_ms']:.0f} ms")
    print(f"cancel during a long prefill: answered in {res['cancel_ms']:.0f} ms ({res['cancel_answer']})")
    print(f"status: {json.dumps(res['status'])}")


if __name__ == "__main__":
    main()
