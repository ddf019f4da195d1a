#!/usr/bin/env bash
# `make eval-context`: how often the definition a masked call needs lands in
# the assembled prompt, on real open-source code (Debian source packages,
# fetched once into $LODE_EVAL_DIR, default ~/.cache/lode/eval, never into
# git). For each project: mask call sites of functions defined in another
# file of the project, assemble the context at 2K / 4K / 8K tokens and count
# the calls whose definition is in it. See docs/context.md "## Evaluation".
#   tools/eval-context.sh [BUILD]   env: PACKAGES="lua5.4 jq ..." SITES=300 VOCAB=path
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
DIR=${LODE_EVAL_DIR:-$HOME/.cache/lode/eval}
# C (lua5.4, jq), Python (jinja2), Go (cobra), Rust (clap): ones this mirror serves.
PACKAGES=${PACKAGES:-"lua5.4 jq jinja2 golang-github-spf13-cobra rust-clap"}
SITES=${SITES:-300}
VOCAB=${VOCAB:-../shared/data/vocab/ggml-vocab-deepseek-coder.gguf}
mkdir -p "$DIR"

# deb-src for bookworm main, when no source entry exists (needs root once).
if ! grep -rqs '^Types:.*deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  if [ "$(id -u)" = 0 ]; then
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      > /etc/apt/sources.list.d/lode-deb-src.sources
    apt-get update -q >/dev/null
  else
    echo "eval-context: no deb-src entry in /etc/apt; add one for bookworm main (see tools/eval-context.sh)" >&2
    exit 1
  fi
fi

ROOTS=()
for P in $PACKAGES; do
  if ! ls -d "$DIR/$P"/*/ >/dev/null 2>&1; then
    mkdir -p "$DIR/$P"
    (cd "$DIR/$P" && apt-get source -q --download-only "$P" >/dev/null 2>&1 && dpkg-source -x --no-check ./*.dsc src >/dev/null) \
      || { echo "eval-context: could not fetch $P" >&2; rm -rf "${DIR:?}/$P"; continue; }
  fi
  ROOTS+=("$P=$(ls -d "$DIR/$P"/*/ | head -1)")
done
[ -x "$BUILD/eval_context" ] || make --no-print-directory "$BUILD/eval_context"
TOK=()
[ -f "$VOCAB" ] && TOK=(--tokenizer "$VOCAB")
"$BUILD/eval_context" --sites "$SITES" "${TOK[@]}" "${ROOTS[@]}"
