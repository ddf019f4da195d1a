#!/usr/bin/env bash
# `make bench`: lode next to llama.cpp (npm node-llama-cpp, same threads,
# same files) in the same run, with the memory-bandwidth roofline measured in
# the same run. Lite-shape random GGUFs are generated once and cached outside
# git ($LODE_BENCH_DIR, default ~/.cache/lode/bench).
#   tools/bench.sh [BUILD]     env: THREADS=2 PP=512 TG=128 REPS=2 TYPES="q8_0 q4_k"
#                              DEPTHS="4096 32768" DEPTH_TYPES=q4_k (DEPTHS= skips)
#                              FILL_EVAL_MAX=4096 (deeper caches: synthetic fill only)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
LODE="$BUILD/lode"
DIR=${LODE_BENCH_DIR:-$HOME/.cache/lode/bench}
THREADS=${THREADS:-2}; PP=${PP:-512}; TG=${TG:-128}; REPS=${REPS:-2}; TYPES=${TYPES:-"q8_0 q4_k"}
mkdir -p "$DIR"
echo "## machine"
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores available; flags: $(grep -o -w -E 'avx2|avx512f|avx512_vnni|avx512_bf16|amx_tile' /proc/cpuinfo | sort -u | xargs)"
gcc -O2 -pthread tools/bwprobe.c -o "$BUILD/bwprobe"
gcc -O2 -pthread tools/peakprobe.c -o "$BUILD/peakprobe"
BW=$("$BUILD/bwprobe" "$THREADS" | sed -n 's/.*"read_gbps": \([0-9.]*\).*/\1/p')
PEAK=$("$BUILD/peakprobe" "$THREADS")
echo "memory read bandwidth ($THREADS threads): $BW GB/s"
echo "arithmetic peak ($THREADS threads): $PEAK"
echo
echo "## row kernels (tests/bench/bench_quant.c, 1 thread): 4096 x 4096 (weights in cache), 131072 x 2048 (from memory)"
echo "(int8: the int8-activation kernels on plain rows; r16: on the load-time 16-row layout, what lode runs for Q8_0/Q4_K)"
"$BUILD/bench_quant" 4096 4096
"$BUILD/bench_quant" 131072 2048 | tail -n +3
echo
echo "## model: DeepSeek-Coder-V2-Lite shape (random weights), $THREADS threads, pp$PP / tg$TG, mean of $REPS (llama.cpp: best of $REPS)"
# lode runs twice per file: the int8-activation kernels (the default) and the
# exact-f32 kernels (LODE_INT8=0). Both read the weights into memory at load
# (models that fit); llama.cpp runs with and without its mmap.
# Roofline columns: tg = bandwidth / weight bytes one token reads (each
# tensor's own type: tools/active_bytes.py; f32 attn_k_b/v_b weigh 4 B per
# weight, so the parameter ratio undercounted them); pp = int8 peak /
# 2 x active parameters (2.451 B of 15.706 B, spec-model.md §1.3).
printf "| type | lode kernels | file GB | lode pp | llama.cpp pp (no mmap / mmap) | pp ratio | pp / int8 peak | lode tg | llama.cpp tg (no mmap / mmap) | tg ratio | tg roofline | tg / roofline | peak RSS GB | RSS bar |\n"
printf "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
for T in $TYPES; do
  # .g2: files of the current generator (q4_k's 1408-wide rows are q5_0, as
  # llama.cpp writes them; earlier caches had q8_0 there)
  F="$DIR/lite-$T.g2.gguf"
  [ -f "$F" ] || "$LODE" gen lite -o "$F" --type "$T" --quiet
  C=$(node tests/llamacpp/llama_bench.mjs "$F" -p "$PP" -n "$TG" -t "$THREADS" -r "$REPS" -v 100000 --no-mmap 2>/dev/null | tail -1)
  CM=$(node tests/llamacpp/llama_bench.mjs "$F" -p "$PP" -n "$TG" -t "$THREADS" -r "$REPS" -v 100000 2>/dev/null | tail -1)
  ACT=$("$LODE" inspect -m "$F" 2>/dev/null | python3 tools/active_bytes.py)
  for MODE in int8 exact; do
  L=$(LODE_INT8=$([ $MODE = int8 ] && echo 1 || echo 0) "$LODE" bench -m "$F" -p "$PP" -n "$TG" -r "$REPS" -t "$THREADS" --json)
  python3 - "$F" "$L" "$C" "$CM" "$BW" "$T" "$MODE" "$PEAK" "$ACT" <<'PY'
import json, os, sys
f, l, c, cm, bw, t, mode, peak = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4]), float(sys.argv[5]), sys.argv[6], sys.argv[7], json.loads(sys.argv[8])
gb = os.path.getsize(f) / 1e9
active = float(sys.argv[9])           # weight bytes read per generated token (GB), tools/active_bytes.py
roof = bw / active
pp_peak = peak["int8_gops"] / (2 * 2.451)   # t/s if every op ran at the int8 peak
rss_ok = l["peak_rss_gb"] <= (gb + l["kv_gb"]) * 1.10
print(f"| {t} | {mode} | {gb:.2f} | {l['pp_tps']:.2f} | {c['pp_tps']:.2f} / {cm['pp_tps']:.2f} | {l['pp_tps']/c['pp_tps']:.2f}x | "
      f"{l['pp_tps']/pp_peak:.0%} | {l['tg_tps']:.2f} | {c['tg_tps']:.2f} / {cm['tg_tps']:.2f} | {l['tg_tps']/c['tg_tps']:.2f}x | "
      f"{roof:.2f} | {l['tg_tps']/roof:.0%} | {l['peak_rss_gb']:.2f} | {'ok' if rss_ok else 'OVER'} (<= {(gb + l['kv_gb']) * 1.1:.2f}) |")
PY
  done
done
echo
# Generation at depth (lode, int8): DEPTHS tokens in the cache first.
DEPTHS=${DEPTHS:-"4096 32768"}; DEPTH_TYPES=${DEPTH_TYPES:-q4_k}
if [ -n "$DEPTHS" ]; then
  # The cache is filled by evaluating DEPTH tokens (a 32K prefill is ~150
  # TFLOP of attention: tens of minutes here) or, up to FILL_EVAL_MAX, also
  # with synthetic values (lode bench --fill synthetic): decode speed does not
  # depend on the cached values, and the rows where both run show it.
  FILL_EVAL_MAX=${FILL_EVAL_MAX:-4096}
  echo "### tg$TG at depth (lode, int8, 1 repetition)"
  printf "| type | depth | cache filled by | tg t/s | KV cache GB | peak RSS GB |\n|---|---|---|---|---|---|\n"
  for T in $DEPTH_TYPES; do
    for D in $DEPTHS; do
      FILLS="synthetic"; [ "$D" -le "$FILL_EVAL_MAX" ] && FILLS="eval synthetic"
      for FL in $FILLS; do
        L=$("$LODE" bench -m "$DIR/lite-$T.g2.gguf" -p 0 -n "$TG" -d "$D" --fill "$FL" -r 1 -t "$THREADS" --json)
        python3 -c "import json,sys; l=json.loads(sys.argv[1]); print(f\"| $T | $D | $FL | {l['tg_tps']:.2f} | {l['kv_gb']:.3f} | {l['peak_rss_gb']:.2f} |\")" "$L"
      done
    done
  done
  echo
fi
# node-llama-cpp adds a per-call cost to each single-token decode; measure it
# on a tiny model in the same run so the tg column can be read fairly.
"$LODE" gen tiny-llama -o "$DIR/tiny-llama.gguf" --quiet
O=$(node tests/llamacpp/llama_bench.mjs "$DIR/tiny-llama.gguf" -p 8 -n 64 -t "$THREADS" -r 2 -v 500 2>/dev/null | tail -1)
python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(f'node-llama-cpp per-decode overhead (tiny model, tg {d[\"tg_tps\"]:.0f} t/s): <= {1000/d[\"tg_tps\"]:.1f} ms/token')" "$O"
echo
# Daemon and LSP: a 4-layer model of Lite's width with the DeepSeek-Coder
# vocabulary (FIM tokens needed for lode/infill), Q8_0.
VOCAB=${LODE_VOCAB_DIR:-../shared/data/vocab}/ggml-vocab-deepseek-coder.gguf
DM="$DIR/daemon-lite4-q8_0.gguf"
[ -f "$DM" ] || "$LODE" gen tests/bench/bench_daemon.config.json -o "$DM" --type q8_0 --vocab "$VOCAB" --quiet
echo "## daemon (lode serve), 4-layer Lite-width Q8_0"
LODE_BIN="$PWD/$LODE" /usr/bin/python3 tests/bench/bench_daemon.py "$DM" --tokens 16 --threads "$THREADS"
echo
echo "## LSP (lode lsp → daemon), tiny model"
LODE_BIN="$PWD/$LODE" LODE_TEST_CACHE=${LODE_TEST_CACHE:-$PWD/build/test-cache} node tests/node/lsp_bench.mjs --n 200
echo
echo "## tokenizer encode speed"
tools/bench_tokenizer.sh "$BUILD"
echo
echo "## workspace index and incremental reparse (tests/bench/bench_index.c; 1 thread unless said)"
# A generated mixed-language repository (10 languages, 30-260 lines per file),
# cached outside git; plus /usr/include as real code nobody here wrote.
REPO="$DIR/index-repo-5000"
if [ ! -f "$REPO/.complete" ]; then rm -rf "$REPO"; "$BUILD/bench_index" gen "$REPO" 5000; touch "$REPO/.complete"; fi
IDX_ROOTS=("$REPO"); [ -d /usr/include ] && IDX_ROOTS+=(/usr/include)
{
  for R in "${IDX_ROOTS[@]}"; do
    printf '%s\t' "$R"; LODE_INDEX_THREADS=1 "$BUILD/bench_index" index "$R"
  done
  printf '%s\t' "$REPO"; LODE_INDEX_THREADS=$(nproc) "$BUILD/bench_index" index "$REPO"
} | python3 -c '
import json, sys
print("| corpus | threads | files | MB | defs | cold scan CPU s | files per CPU-s | cold scan wall s | files/s wall | restart from cache s | re-parsed on restart | lookup µs |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for line in sys.stdin:
    name, js = line.split("\t", 1)
    d = json.loads(js)
    print("| %s | %d | %d | %.1f | %d | %.2f | %.0f | %.2f | %.0f | %.3f | %d | %.2f |" % (
        name, d["threads"], d["files"], d["mbytes"], d["defs"], d["cold_cpu_s"], d["cold_files_per_cpu_s"],
        d["cold_s"], d["cold_files_per_s"], d["warm_s"], d["warm_parsed"], d["lookup_us"]))
'
echo
# The walker against the query cursor on every generated file (~6 s): any
# difference in a definition or import fails the bench.
CMP=$("$BUILD/bench_index" compare "$REPO") || { echo "walker vs query cursor DIFFER: $CMP"; exit 1; }
echo "walker vs query cursor: $CMP"
echo
"$BUILD/bench_index" reparse 5000 | python3 -c '
import json, sys
print("| language | lines | full parse ms | one-char edit reparse ms (wall): mean | p50 | p99 | max | CPU ms: mean | p50 | p99 |")
print("|---|---|---|---|---|---|---|---|---|---|")
for line in sys.stdin:
    d = json.loads(line)
    print("| %s | %d | %.1f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |" % (
        d["lang"], d["lines"], d["full_parse_ms"], d["reparse_ms_mean"], d["reparse_ms_p50"], d["reparse_ms_p99"],
        d["reparse_ms_max"], d["reparse_cpu_ms_mean"], d["reparse_cpu_ms_p50"], d["reparse_cpu_ms_p99"]))
'
echo
# Context assembly per keystroke with a warm index (tests/bench/bench_context.c):
# the generated 5,000-file repository plus /usr/include and the eval corpus
# (real code, `make eval-context` fetches it); the current files are real
# ones from the corpus when it is there.
echo "## context assembly (lode_ctx_build per keystroke, warm index)"
EVAL=${LODE_EVAL_DIR:-$HOME/.cache/lode/eval}
CTX_ROOTS=("$REPO"); [ -d /usr/include ] && CTX_ROOTS+=(/usr/include); [ -d "$EVAL" ] && CTX_ROOTS+=("$EVAL")
CTX_FILES=()
for F in "$EVAL/lua5.4/src/src/lapi.c" "$EVAL/jinja2/src/src/jinja2/compiler.py"; do [ -f "$F" ] && CTX_FILES+=(--file "$F"); done
[ ${#CTX_FILES[@]} -gt 0 ] || CTX_FILES=(--file "$(find "$REPO" -name '*.c' | sort | head -1)")
CTX_TOK=(); [ -f "$VOCAB" ] && CTX_TOK=(--tokenizer "$VOCAB")
"$BUILD/bench_context" "${CTX_TOK[@]}" "${CTX_FILES[@]}" "${CTX_ROOTS[@]}"
