# LODE_SAN_SKIP: the llama.cpp comparisons run in the normal pass only; the sanitizer pass
# covers the same lode code paths through the other suites.
"""lode's tokenizer against llama.cpp's own (node-llama-cpp, offline, the
vocab-only GGUFs of ../shared/data/vocab) on a corpus of our own: source code
in many languages, mixed scripts, emoji, long runs of whitespace and digits,
CRLF. Token for token, per line and for whole files."""
import json
import os
import random
import subprocess

import pytest

from lodetest import LODE, ROOT

VOCAB = os.environ.get("LODE_VOCAB_DIR", os.path.join(os.path.dirname(ROOT), "shared", "data", "vocab"))
SCRIPT = os.path.join(ROOT, "tests", "tokenizer", "llama_tokenize.mjs")
CORPUS_DIR = os.path.join(ROOT, "tests", "tokenizer", "corpus")


def corpus():
    cases = []
    for f in sorted(os.listdir(CORPUS_DIR)):
        text = open(os.path.join(CORPUS_DIR, f), encoding="utf-8", newline="").read()
        cases.append(text)
        cases.extend(text.splitlines(keepends=True))
        cases.append(text.replace("\n", "\r\n"))
    # lode's own sources: real code nobody tuned the tokenizer for.
    for f in ("engine/tok_encode.c", "engine/model_gen.c", "tests/ref/lode_ref.py", "README.md"):
        cases.append(open(os.path.join(ROOT, f), encoding="utf-8").read())
    rng = random.Random(7)
    for n in (1, 2, 3, 17, 100, 1000):
        cases += [" " * n, "\t" * n, "\n" * n, "7" * n, " x" * n, "\r\n" * n, "🦙" * n, "a1" * n, " " * n + "x"]
    pieces = ["def", " ", "  ", "\n", "\t", "0", "42", "ÄÖÜ", "ß", "ℭ", "K", "Ω", "日本", "😀", "_", "__init__", "'s",
              "'ll", "(", ")", "{", "}", ";", "//", "#", "->", "=>", "é", "ñ", "\u0301", "\u200d", "ǅ"]
    for _ in range(200):
        cases.append("".join(rng.choice(pieces) for _ in range(rng.randint(1, 40))))
    return cases


def lode_ids(model, text):
    p = subprocess.run([LODE, "tokenize", "-m", model, "--json"], input=text.encode(), capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


@pytest.mark.parametrize("name", ["deepseek-llm", "deepseek-coder"])
def test_matches_llamacpp(name, tmp_path):
    vocab = os.path.join(VOCAB, f"ggml-vocab-{name}.gguf")
    cases = corpus()
    cf = tmp_path / "cases.json"
    cf.write_text(json.dumps(cases))
    p = subprocess.run(["node", SCRIPT, vocab, str(cf)], capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    ref = json.loads(p.stdout)
    # One lode process for all cases would be faster; the CLI keeps this an
    # end-to-end check. Batch the short ones through a JSON-lines helper.
    bad = []
    for text, want in zip(cases, ref):
        got = lode_ids(vocab, text)
        if got != want:
            bad.append((text[:60], got[:20], want[:20]))
    assert not bad, f"{len(bad)}/{len(cases)} differ, e.g. {bad[:3]}"
