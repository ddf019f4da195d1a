#!/usr/bin/env bash
# tools/gpu-check.sh — the CUDA backend's device check (docs/cuda.md).
#
# The device machine has nvcc, cmake and ninja but none of lode's build
# dependencies (jansson, libuv, pcre2, tree-sitter, criterion) and no
# network, so lode's binaries are built HERE and carried:
#
#   1. here:   tools/gpu-check.sh prepare
#              builds build-gpu/ (sm_90: H100/H200) with lode, test_cuda and
#              gpu_bench plus the shared libraries they need (build-gpu/lib)
#              and wrappers in build-gpu/bin that set LD_LIBRARY_PATH; copies
#              llama.cpp's source (the git bundle inside the npm node-llama-cpp
#              package, 35 MB) to .gpu-carry/ for an optional device build.
#   2. device, optional, for the llama.cpp CUDA column (≈ 5 min of device time):
#              run(command="tools/gpu-check.sh llamacpp-build", carry=[".gpu-carry"], timeout_s=590)
#              builds llama-bench with CUDA into /tmp/llama-cuda on the device,
#              which stays there while the machine is warm (30 s after a call):
#              make the next call at once.
#   3. device: run(command="tools/gpu-check.sh run all", timeout_s=590, carry=["build-gpu/bin",
#                  "build-gpu/lib", "build-gpu/lode", "build-gpu/gpu_bench", "build-gpu/tests/test_cuda",
#                  "build-gpu/vocab"])
#              (or `run tests` / `run bench`). Prints the GPU, the test
#              results, then one table of the Lite-shape benchmarks.
#
# Env for `run`: TYPES="q4_k q8_0 bf16" (Lite files generated on the device,
# one at a time, deleted after), LONG=131072 (the long-prompt row; 0 = skip),
# LONG_TYPES="q4_k", BENCH_DIR=/tmp/lode-bench, PRESET=lite, BENCH_ARGS (extra
# gpu_bench flags, e.g. "--device cpu --no-16k" to try the script here), LLAMA_BENCH (default
# /tmp/llama-cuda/bin/llama-bench when step 2 ran). The prebuilt npm
# @node-llama-cpp/linux-x64-cuda package (143 MB) does not fit a 64 MiB
# carry and the image has no node (docs/cuda.md).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=build-gpu

prepare() {
  set -e
  grep -qx '/build-gpu/' .git/info/exclude 2>/dev/null || echo '/build-gpu/' >>.git/info/exclude
  make -j2 BUILD=$OUTDIR CUDA_ARCHS="${CUDA_ARCHS:-90}" all $OUTDIR/tests/test_cuda
  # shellcheck disable=SC2046
  gcc -std=c11 -O2 -Iengine -Ikernels kernels/bench/gpu_bench.c $OUTDIR/liblode.a -o $OUTDIR/gpu_bench \
      $(make -s --no-print-directory BUILD=$OUTDIR -f - print-libs <<'MK'
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
  # The real DeepSeek vocabularies, so that Lite files made there match the ones made here.
  local V=${LODE_VOCAB_DIR:-../shared/data/vocab}
  mkdir -p $OUTDIR/vocab && cp "$V"/ggml-vocab-deepseek-*.gguf $OUTDIR/vocab/ 2>/dev/null || echo "no vocab GGUFs in $V: synthetic vocabularies on the device"
  echo "runtime carry: $(du -csh $OUTDIR/bin $OUTDIR/lib $OUTDIR/lode $OUTDIR/gpu_bench $OUTDIR/tests/test_cuda $OUTDIR/vocab | tail -1 | cut -f1)"
  local B=tests/npm/node_modules/node-llama-cpp/llama/gitRelease.bundle
  grep -qx '/.gpu-carry/' .git/info/exclude || echo '/.gpu-carry/' >>.git/info/exclude
  if [ -f "$B" ]; then
    mkdir -p .gpu-carry && cp "$B" .gpu-carry/llama.cpp.bundle
    cp tests/npm/node_modules/node-llama-cpp/llama/llama.cpp.info.json .gpu-carry/ 2>/dev/null || true
    echo "llama.cpp source bundle: .gpu-carry/llama.cpp.bundle ($(du -h .gpu-carry/llama.cpp.bundle | cut -f1))"
  else
    echo "no $B (run make deps): the llama.cpp CUDA column will be n/a"
  fi
  echo "next, on the device (see the top of $0):"
  echo '  optional: run(command="tools/gpu-check.sh llamacpp-build", carry=[".gpu-carry"], timeout_s=590)'
  echo '  then:     run(command="tools/gpu-check.sh run all", timeout_s=590, carry=["build-gpu/bin", "build-gpu/lib", "build-gpu/lode", "build-gpu/gpu_bench", "build-gpu/tests/test_cuda", "build-gpu/vocab"])'
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
    $OUTDIR/bin/lode gen "${PRESET:-lite}" -o "$F" --type "$T" --quiet || { echo "gen $T failed"; continue; }
    echo "gen $T: $((SECONDS - t0)) s, $(du -h "$F" | cut -f1)"
    local L=0
    for lt in $long_types; do [ "$lt" = "$T" ] && L=$long; done
    t0=$SECONDS
    local J
    J=$($OUTDIR/bin/gpu_bench "$F" --long "$L" ${BENCH_ARGS:-} 2>&1 | tail -1)
    echo "bench $T: $((SECONDS - t0)) s: $J"
    local C=""
    local LB=${LLAMA_BENCH:-/tmp/llama-cuda/bin/llama-bench}
    if [ -x "$LB" ]; then
      t0=$SECONDS
      C=$("$LB" -m "$F" -ngl 99 -fa 1 -p 512,16384 -n 128 -r 2 -o json 2>/dev/null | tr -d '\n')
      echo "llama-bench $T: $((SECONDS - t0)) s"
    fi
    rows+=("$T|$(stat -c %s "$F")|$J|$C")
    rm -f "$F"
  done
  python3 - "${rows[@]}" <<'PY'
import json, sys
print()
print("| type | file GB | tg b1 t/s | roofline b1 t/s | b1 / roofline | tg b8 t/s | pp512 t/s | pp16K t/s | 128K prompt s | llama.cpp pp512 / pp16K / tg128 |")
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
            pp = {x["n_prompt"]: x["avg_ts"] for x in r if x.get("n_prompt", 0) > 0}
            tg = [x["avg_ts"] for x in r if x.get("n_gen", 0) > 0]
            lc = f"{pp.get(512, 0):.0f} / {pp.get(16384, 0):.0f} / {tg[0]:.1f}"
        except Exception:
            lc = "unparsed"
    long_s = f"{d['long_s']:.1f} ({d['long_tokens']} tok)" if d["long_tokens"] else "-"
    pct = f"{d['tg1']/roof:.0%}" if roof else "n/a"
    print(f"| {t} | {gb:.2f} | {d['tg1']:.1f} | {roof:.0f} | {pct} | {d['tg8']:.1f} | {d['pp512']:.0f} | "
          f"{d['pp16k']:.0f} | {long_s} | {lc} |")
print()
print("roofline = measured HBM read bandwidth / active bytes per token; bars (issue 8): b1 >= 75% of roofline, >= llama.cpp on every row")
PY
}

llamacpp_build() {
  # On the device: llama-bench with CUDA (sm_90) from the carried source bundle.
  set -e
  local src=/tmp/llama-src out=/tmp/llama-cuda t0=$SECONDS
  [ -f .gpu-carry/llama.cpp.bundle ] || { echo "no .gpu-carry/llama.cpp.bundle: run prepare here and carry .gpu-carry"; exit 2; }
  command -v git >/dev/null || { echo "no git on the device: cannot unpack the bundle"; exit 2; }
  rm -rf "$src" && git -c advice.detachedHead=false clone -q .gpu-carry/llama.cpp.bundle "$src"
  cmake -S "$src" -B "$src/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF >/dev/null
  ninja -C "$src/build" -j"$(nproc)" llama-bench >/dev/null
  mkdir -p "$out/bin" && cp "$src/build/bin/llama-bench" "$out/bin/"
  echo "llama-bench (CUDA, $(cat .gpu-carry/llama.cpp.info.json 2>/dev/null | tr -d ' \n')) built in $((SECONDS - t0)) s: $out/bin/llama-bench"
}

case "${1:-}" in
  prepare) prepare ;;
  llamacpp-build) llamacpp_build ;;
  run)
    [ -x $OUTDIR/bin/lode ] || { echo "no $OUTDIR/bin/lode: run 'tools/gpu-check.sh prepare' here and carry build-gpu"; exit 2; }
    find_cuda_libs
    [ -d $OUTDIR/vocab ] && export LODE_VOCAB_DIR=$PWD/$OUTDIR/vocab
    echo "## device"; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -3
    echo "CUDA libraries: ${LODE_CUDA_LIBS:-<binary RUNPATH only>}"
    rc=0
    # Full logs under $OUT (the device tool brings them back); the reply shows the tail.
    LOGDIR=${OUT:-/tmp/gpu-check-logs}; mkdir -p "$LOGDIR"
    case "${2:-all}" in
      tests) run_tests 2>&1 | tee "$LOGDIR/tests.log"; rc=${PIPESTATUS[0]} ;;
      bench) run_bench 2>&1 | tee "$LOGDIR/bench.log"; rc=${PIPESTATUS[0]} ;;
      all) run_tests 2>&1 | tee "$LOGDIR/tests.log"; rc=${PIPESTATUS[0]}
           run_bench 2>&1 | tee "$LOGDIR/bench.log"; [ "${PIPESTATUS[0]}" = 0 ] || rc=1 ;;
      *) echo "usage: tools/gpu-check.sh run [tests|bench|all]"; exit 2 ;;
    esac
    echo "logs: $LOGDIR/{tests,bench}.log"
    exit $rc ;;
  *) echo "usage: tools/gpu-check.sh prepare | llamacpp-build | run [tests|bench|all]"; exit 2 ;;
esac
