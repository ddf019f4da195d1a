#!/usr/bin/env python3
"""Bytes of weights one generated token reads, from `lode inspect` output
(stdin): every tensor in full, except the token embedding (one row) and the
routed experts (*_exps: top-k of n). Printed in GB. The roofline of `make
bench` divides the measured bandwidth by this (KV cache reads not counted)."""
import re, sys

BPW = {"f32": 4, "f16": 2, "bf16": 2, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32,
       "q5_0": 22 / 32, "q5_1": 24 / 32, "q4_k": 144 / 256, "q5_k": 176 / 256, "q6_k": 210 / 256}
text = sys.stdin.read()
m = re.search(r"MoE: (\d+) routed experts.*?top-(\d+)", text)
frac = int(m.group(2)) / int(m.group(1)) if m else 1.0
total = 0.0
for name, ty, shape in re.findall(r"^\s+(\S+\.weight)\s+(\w+)\s+\[([0-9, ]+)\]", text, re.M):
    dims = [int(d) for d in shape.split(",")]
    n = 1
    for d in dims:
        n *= d
    if ty not in BPW:
        sys.exit(f"active_bytes.py: no size for type {ty} ({name})")
    b = n * BPW[ty]
    if name.startswith("token_embd"):
        b /= dims[-1]          # one row per token
    elif "_exps." in name:
        b *= frac
    total += b
print(f"{total / 1e9:.4f}")
