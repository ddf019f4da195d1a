#!/usr/bin/env bash
# Install lode's build and test dependencies. Idempotent: does nothing when
# everything is present. Debian packages via apt-get; pinned npm packages via
# `npm ci` in the folders that carry a package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential pkg-config libjansson-dev libuv1-dev libtree-sitter-dev libpcre2-dev
      libcriterion-dev python3-numpy python3-pytest neovim valgrind clang libclang-rt-14-dev
      hyperfine nodejs npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from elsewhere (the image ships its own): accept them.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
want=()
for p in "${missing[@]}"; do [ -n "$p" ] && want+=("$p"); done
if [ ${#want[@]} -gt 0 ]; then
  echo "deps: installing ${want[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi

# npm folders with a lockfile: install when node_modules is missing or stale.
for d in tests/npm tests/tokenizer/npm tests/node grammars editors/vscode; do
  [ -f "$d/package-lock.json" ] || continue
  stamp="$d/node_modules/.lode-stamp"
  if [ ! -f "$stamp" ] || [ "$d/package-lock.json" -nt "$stamp" ]; then
    echo "deps: npm ci in $d"
    (cd "$d" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    touch "$stamp"
  fi
done
echo "deps: ok"
