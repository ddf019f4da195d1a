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
# Debian's source of the installed libtree-sitter, for the Makefile's TS_SRC
# (compiled with lode's flags; the binary library stays the fallback). Needs a
# deb-src entry, added for the system's own suites when missing. Failure
# (offline, no sudo) only costs speed, so it warns and goes on.
ts_ver=$(dpkg-query -W -f='${Version}' libtree-sitter-dev 2>/dev/null || true)
ts_dir=build/tree-sitter-src
if [ -n "$ts_ver" ] && [ "$(cat "$ts_dir/.lode-version" 2>/dev/null)" != "$ts_ver" ]; then
  echo "deps: Debian source of tree-sitter $ts_ver into $ts_dir"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if ! apt-cache showsrc tree-sitter 2>/dev/null | grep -q "^Version: $ts_ver\$"; then
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    if [ -n "$codename" ] && [ ! -f /etc/apt/sources.list.d/lode-deb-src.sources ]; then
      printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$codename" "$codename" | $SUDO tee /etc/apt/sources.list.d/lode-deb-src.sources >/dev/null || true
    fi
    $SUDO apt-get update -qq || true
  fi
  tmp=$(mktemp -d build/.ts-src.XXXXXX 2>/dev/null || { mkdir -p build && mktemp -d build/.ts-src.XXXXXX; })
  if (cd "$tmp" && apt-get source -qq "tree-sitter=$ts_ver" >/dev/null 2>&1) && [ -f "$tmp"/tree-sitter-*/lib/src/lib.c ]; then
    rm -rf "$ts_dir" && mv "$tmp"/tree-sitter-*/ "$ts_dir" && echo "$ts_ver" > "$ts_dir/.lode-version"
  else
    echo "deps: warning: no Debian source for tree-sitter $ts_ver (deb-src/network?): linking the binary library" >&2
  fi
  rm -rf "$tmp"
fi
echo "deps: ok"
