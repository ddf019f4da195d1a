#!/usr/bin/env bash
# Tokenizer encode speed: lode next to llama.cpp (node-llama-cpp) on the same
# vocab and input, in the same run. Input: lode's own sources concatenated
# (~7.5 MB of C, Python and Markdown). Usage: tools/bench_tokenizer.sh [BUILD]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OUT=${LODE_BENCH_DIR:-$PWD/build/bench}
mkdir -p "$OUT"
IN="$OUT/tokenizer-input.txt"
for i in $(seq 1 20); do cat engine/*.c tests/ref/lode_ref.py README.md tests/tokenizer/corpus/*.txt; done > "$IN"
VOCAB=${LODE_VOCAB_DIR:-../shared/data/vocab}
printf "| vocab | input MB | lode MB/s | llama.cpp MB/s | ratio | same ids |\n|---|---|---|---|---|---|\n"
for name in deepseek-llm deepseek-coder; do
  v="$VOCAB/ggml-vocab-$name.gguf"
  best=0
  for r in 1 2 3; do
    m=$("$BUILD/lode" tokenize -m "$v" --time < "$IN" 2>&1 >/dev/null | sed -n 's/.*"mb_per_s": \([0-9.]*\).*/\1/p')
    best=$(python3 -c "print(max($best, $m))")
  done
  lc=$(node tests/tokenizer/llama_tokenize.mjs "$v" --bench "$IN" --reps 2 2>/dev/null | tail -1)
  lmb=$(echo "$lc" | sed -n 's/.*"mb_per_s":\([0-9.]*\).*/\1/p')
  ltok=$(echo "$lc" | sed -n 's/.*"tokens":\([0-9]*\).*/\1/p')
  ntok=$("$BUILD/lode" tokenize -m "$v" < "$IN" | wc -w)
  same=$([ "$ntok" = "$ltok" ] && echo "yes ($ntok tokens)" || echo "NO: $ntok vs $ltok")
  python3 - "$name" "$IN" "$best" "$lmb" "$same" <<'PY'
import os, sys
name, path, best, lmb, same = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
print(f"| {name} | {os.path.getsize(path) / 1e6:.1f} | {best:.2f} | {lmb:.2f} | {best / lmb:.1f}x | {same} |")
PY
done
