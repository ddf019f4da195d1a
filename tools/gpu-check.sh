#!/usr/bin/env bash
# tools/gpu-check.sh — the CUDA backend's device check (docs/cuda.md).
#
# The device machine has nvcc but none of lode's build dependencies (jansson,
# libuv, pcre2, tree-sitter, criterion) and no network, so the binaries are
# built HERE and carried:
#
#   1. here:   tools/gpu-check.sh prepare
#              builds build-gpu/ (sm_90: H100/H200) with lode, test_cuda and
#              gpu_bench plus the shared libraries they need (build-gpu/lib),
#              and wrappers in build-gpu/bin that set LD_LIBRARY_PATH.
#   2. device: run(command="tools/gpu-check.sh run all", carry=["build-gpu"], timeout_s=590)
#              (or `run tests` / `run bench`). Prints the GPU, the test
#              results, then one table of the Lite-shape benchmarks.
#
# Env for `run`: TYPES="q4_k q8_0 bf16" (Lite files generated on the device,
# one at a time, deleted after), LONG=131072 (the long-prompt row; 0 = skip),
# LONG_TYPES="q4_k", BENCH_DIR=/tmp/lode-bench, LLAMA_BENCH=/path/llama-bench
# (a llama.cpp CUDA llama-bench on the device, when one was carried; the
# npm @node-llama-cpp/linux-x64-cuda package is 143 MB and does not fit a
# 64 MiB carry, see docs/cuda.md).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=build-gpu

prepare() {
  set -e
  grep -qx '/build-gpu/' .git/info/exclude 2>/dev/null || echo '/build-gpu/' >>.git/info/exclude
  make -j2 BUILD=$OUTDIR CUDA_ARCHS="${CUDA_ARCHS:-90}" all $OUTDIR/tests/test_cuda
  # shellcheck disable=SC2046
  gcc -std=c11 -O2 -Iengine -Ikernels kernels/bench/gpu_bench.c $OUTDIR/liblode.a -o $OUTDIR/gpu_bench \
      $(make -s --no-print-directory -f - print-libs <<'MK'
include Makefile
print-libs:
	@echo $(LDLIBS) -pthread
MK
)
  mkdir -p $OUTDIR/lib $OUTDIR/bin
  for b in $OUTDIR/lode $OUTDIR/tests/test_cuda $OUTDIR/gpu_bench; do
    ldd "$b" | awk '$3 ~ /^\// {print $3}'
  done | sort -u | grep -v -E '/(libc|libm|libdl|libpthread|librt|libresolv|libstdc\+\+|libgcc_s|ld-linux[^/]*|libcublas|libcublasLt|libcudart|libcuda)\.so' \
    | while read -r l; do cp -L "$l" $OUTDIR/lib/; done
  for b in lode gpu_bench test_cuda; do
    src=$b; [ $b = test_cuda ] && src=tests/test_cuda
    cat >$OUTDIR/bin/$b <<EOF
#!/usr/bin/env bash
d=\$(cd "\$(dirname "\$0")/.." && pwd)
export LD_LIBRARY_PATH="\$d/lib\${LODE_CUDA_LIBS:+:\$LODE_CUDA_LIBS}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "\$d/$src" "\$@"
EOF
    chmod +x $OUTDIR/bin/$b
  done
  strip --strip-debug $OUTDIR/lode $OUTDIR/gpu_bench $OUTDIR/tests/test_cuda 2>/dev/null || true
  echo "carry size: $(du -sh $OUTDIR --exclude='*.o' --exclude='*.d' | cut -f1) (build-gpu; objects are carried too: $(du -sh $OUTDIR | cut -f1))"
  echo "next, on the device: run(command=\"tools/gpu-check.sh run all\", carry=[\"build-gpu\"], timeout_s=590)"
}

find_cuda_libs() {
  # The binaries' RUNPATH is this machine's CUDA; add the device's own.
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64 \
           /opt/torch/.venv/lib/python3*/site-packages/nvidia/cu13/lib \
           /opt/torch/.venv/lib/python3*/site-packages/nvidia/cublas/lib \
           /opt/torch/.venv/lib/python3*/site-packages/nvidia/cuda_runtime/lib; do
    [ -e "$d/libcublas.so.13" ] || [ -e "$d/libcudart.so.13" ] || continue
    LODE_CUDA_LIBS="${LODE_CUDA_LIBS:+$LODE_CUDA_LIBS:}$d"
  done
  export LODE_CUDA_LIBS="${LODE_CUDA_LIBS:-}"
}

run_tests() {
  echo "## tests (GPU vs CPU)"
  local t0=$SECONDS rc=0
  $OUTDIR/bin/test_cuda --verbose -j1 2>&1 || rc=1
  local PYT=(python3 -m pytest)
  command -v pytest-3 >/dev/null && PYT=(pytest-3)
  LODE_BIN=$PWD/$OUTDIR/bin/lode LODE_TEST_CACHE=/tmp/lode-test-cache PYTHONUNBUFFERED=1 \
    "${PYT[@]}" -q -rs tests/py/test_cuda_fallback.py 2>&1 || rc=1
  echo "tests: rc=$rc in $((SECONDS - t0)) s"
  return $rc
}

run_bench() {
  local types=${TYPES:-"q4_k q8_0 bf16"} long=${LONG:-131072} long_types=${LONG_TYPES:-"q4_k"}
  local dir=${BENCH_DIR:-/tmp/lode-bench}
  mkdir -p "$dir"
  echo "## Lite shape (DeepSeek-Coder-V2-Lite, random weights) on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
  local rows=()
  for T in $types; do
    local F="$dir/lite-$T.gguf" t0=$SECONDS
    $OUTDIR/bin/lode gen lite -o "$F" --type "$T" --quiet || { echo "gen $T failed"; continue; }
    echo "gen $T: $((SECONDS - t0)) s, $(du -h "$F" | cut -f1)"
    local L=0
    for lt in $long_types; do [ "$lt" = "$T" ] && L=$long; done
    t0=$SECONDS
    local J
    J=$($OUTDIR/bin/gpu_bench "$F" --long "$L" 2>&1 | tail -1)
    echo "bench $T: $((SECONDS - t0)) s: $J"
    local C=""
    if [ -n "${LLAMA_BENCH:-}" ] && [ -x "$LLAMA_BENCH" ]; then
      C=$("$LLAMA_BENCH" -m "$F" -ngl 99 -p 512 -n 128 -o json 2>/dev/null | tr -d '\n')
    fi
    rows+=("$T|$(stat -c %s "$F")|$J|$C")
    rm -f "$F"
  done
  python3 - "${rows[@]}" <<'PY'
import json, sys
print()
print("| type | file GB | tg b1 t/s | roofline b1 t/s | b1 / roofline | tg b8 t/s | pp512 t/s | pp16K t/s | 128K prompt s | llama.cpp pp512 / tg128 |")
print("|---|---|---|---|---|---|---|---|---|---|")
for row in sys.argv[1:]:
    t, size, j, c = row.split("|", 3)
    try:
        d = json.loads(j)
    except Exception:
        print(f"| {t} | {int(size)/1e9:.2f} | failed: {j[:120]} |"); continue
    gb = int(size) / 1e9
    # bytes read per decoded token: the active parameters (2.451B of 15.706B,
    # spec-model.md §1.3) at the file's average bytes per parameter
    active = gb * 2.451 / 15.706
    roof = d["hbm_read_gbps"] / active if active else 0
    lc = "n/a (not carried)"
    if c:
        try:
            r = json.loads(c)
            pp = [x["avg_ts"] for x in r if x.get("n_prompt", 0) > 0]
            tg = [x["avg_ts"] for x in r if x.get("n_gen", 0) > 0]
            lc = f"{pp[0]:.0f} / {tg[0]:.1f}"
        except Exception:
            lc = "unparsed"
    long_s = f"{d['long_s']:.1f} ({d['long_tokens']} tok)" if d["long_tokens"] else "-"
    print(f"| {t} | {gb:.2f} | {d['tg1']:.1f} | {roof:.0f} | {d['tg1']/roof:.0%} | {d['tg8']:.1f} | {d['pp512']:.0f} | "
          f"{d['pp16k']:.0f} | {long_s} | {lc} |")
print()
print("roofline = measured HBM read bandwidth / active bytes per token; bars (issue 8): b1 >= 75% of roofline, >= llama.cpp on every row")
PY
}

case "${1:-}" in
  prepare) prepare ;;
  run)
    [ -x $OUTDIR/bin/lode ] || { echo "no $OUTDIR/bin/lode: run 'tools/gpu-check.sh prepare' here and carry build-gpu"; exit 2; }
    find_cuda_libs
    echo "## device"; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -3
    echo "CUDA libraries: ${LODE_CUDA_LIBS:-<binary RUNPATH only>}"
    $OUTDIR/bin/lode inspect 2>&1 | head -2 || true
    rc=0
    case "${2:-all}" in
      tests) run_tests || rc=1 ;;
      bench) run_bench || rc=1 ;;
      all) run_tests || rc=1; run_bench || rc=1 ;;
      *) echo "usage: tools/gpu-check.sh run [tests|bench|all]"; exit 2 ;;
    esac
    exit $rc ;;
  *) echo "usage: tools/gpu-check.sh prepare | run [tests|bench|all]"; exit 2 ;;
esac
