#!/usr/bin/python3
"""Daemon benchmark: aggregate generated tokens/s with 1, 4 and 16 concurrent
streams, and the latency of a warm lode/infill whose prompt differs from the
previous one only in the last token vs a cold one, on a ~2K-token prompt.
Usage: tools/bench_daemon.py MODEL [--tokens 64]"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "py"))
from daemonclient import Daemon  # noqa: E402


def main():
    m = sys.argv[1]
    n = int(sys.argv[sys.argv.index("--tokens") + 1]) if "--tokens" in sys.argv else 64
    d = Daemon(m, "--ctx", "16384", "--cache-tokens", "8192")
    try:
        # Warm-up: page the weights in (a first request would measure the disk).
        d.client().call("lode/generate", {"text": "warm up", "max_tokens": 4, "ignore_eos": True}, timeout=3600)
        print("| streams | aggregate generated t/s |\n|---|---|")
        for k in (1, 4, 16):
            done = []

            def w(i):
                r = d.client().call("lode/generate", {"text": f"def f{i}(x):", "max_tokens": n, "ignore_eos": True},
                                    timeout=3600)
                done.append(r["result"]["generated_tokens"])

            t0 = time.time()
            th = [threading.Thread(target=w, args=(i,)) for i in range(k)]
            [t.start() for t in th]
            [t.join() for t in th]
            print(f"| {k} | {sum(done) / (time.time() - t0):.1f} |")
        c = d.client()
        body = "".join(f"    value_{i} = compute(value_{i - 1}, {i})\n" for i in range(1, 200))
        prefix = "def pipeline(value_0):\n" + body
        for label, pre in (("cold", prefix + "    return value_1"), ("warm (last token changed)", prefix + "    return value_2")):
            t0 = time.time()
            r = c.call("lode/infill", {"prefix": pre, "suffix": "\n", "max_tokens": 1}, timeout=3600)["result"]
            print(f"infill {label}: {1000 * (time.time() - t0):.1f} ms, prompt {r['prompt_tokens']} tokens, "
                  f"{r['cached_tokens']} reused")
    finally:
        d.stop()


if __name__ == "__main__":
    main()
