#!/usr/bin/env bash
# Run every lode test suite against one build folder and print one closing
# line "lode-tests: N passed, M failed". Exit status is non-zero on failure.
#   tools/run-tests.sh build        normal build
#   tools/run-tests.sh build-san    ASan/UBSan build (LODE_SAN=1)
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
export LODE_BIN="$PWD/$BUILD/lode"
export LODE_TEST_CACHE=${LODE_TEST_CACHE:-$PWD/build/test-cache}
mkdir -p "$LODE_TEST_CACHE"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
pass=0; fail=0; failed=()
logdir="$BUILD/test-logs"; mkdir -p "$logdir"

run_one() { # name, command...
  local name=$1; shift
  local t0=$SECONDS
  # A hung suite (a child left holding its pipes) fails after 20 minutes
  # instead of holding CI until its limit.
  if timeout --kill-after=10 1200 "$@" >"$logdir/$name.log" 2>&1 && ! grep -q "^usage:\|^Usage:" "$logdir/$name.log"; then
    # Criterion forks: a leak in a child does not change the exit code.
    if grep -q "ERROR: LeakSanitizer\|runtime error:" "$logdir/$name.log"; then
      echo "FAIL $name (sanitizer report) [$((SECONDS - t0))s]"; fail=$((fail + 1)); failed+=("$name")
      tail -40 "$logdir/$name.log"
    else
      echo "ok   $name [$((SECONDS - t0))s]"; pass=$((pass + 1))
    fi
  else
    echo "FAIL $name [$((SECONDS - t0))s]"; fail=$((fail + 1)); failed+=("$name")
    tail -60 "$logdir/$name.log"
  fi
}

for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  run_one "$(basename "$t")" "$t" -j2
done

# Python suites (reference comparisons, CLI, malformed files). Debian's
# pytest (system python3 with numpy), never the pyenv python3.
PYTEST=$(command -v pytest-3 || command -v pytest || true)
if [ -n "$PYTEST" ]; then
  for f in tests/py/test_*.py; do
    [ -f "$f" ] || continue
    n=$(basename "$f" .py)
    if [ -n "${LODE_SAN:-}" ] && grep -q "LODE_SAN_SKIP" "$f"; then continue; fi
    run_one "py_$n" "$PYTEST" -q -x "$f"
  done
else
  echo "FAIL pytest not found (run make deps)"; fail=$((fail + 1))
fi

for f in tests/node/*.test.mjs; do
  [ -f "$f" ] || continue
  [ -n "${LODE_SAN:-}" ] && grep -q "LODE_SAN_SKIP" "$f" && continue
  run_one "node_$(basename "$f" .test.mjs)" node --test "$f"
done

# Short coverage-guided fuzz runs of the parsers (longer: make fuzz).
if [ -z "${LODE_SAN:-}" ] && command -v clang >/dev/null; then
  run_one "fuzz_parsers" make --no-print-directory fuzz FUZZ_TIME=${LODE_FUZZ_TIME:-15}
fi

echo
[ $fail -gt 0 ] && echo "failed: ${failed[*]}"
echo "lode-tests: $pass passed, $fail failed"
[ $fail -eq 0 ]
