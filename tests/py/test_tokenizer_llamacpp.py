# LODE_SAN_SKIP: the llama.cpp comparisons run in the normal pass only; the sanitizer pass
# covers the same lode code paths through the other suites.
"""lode's tokenizer against llama.cpp's own (node-llama-cpp, offline, the
vocab-only GGUFs of ../shared/data/vocab) on a corpus of our own: source code
in many languages, mixed scripts, emoji, long runs of whitespace and digits,
CRLF. Token for token, per line and for whole files."""
import json
import os
import subprocess

import pytest

from lodetest import LODE, ROOT
from tokcorpus import corpus

VOCAB = os.environ.get("LODE_VOCAB_DIR", os.path.join(os.path.dirname(ROOT), "shared", "data", "vocab"))
SCRIPT = os.path.join(ROOT, "tests", "tokenizer", "llama_tokenize.mjs")


def lode_batch(model, cases_file):
    p = subprocess.run([LODE, "tokenize", "-m", model, "--batch", cases_file], capture_output=True, timeout=300)
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
    got_all = lode_batch(vocab, str(cf))
    # The single-text path too, for a sample (it must agree with --batch).
    for text in cases[:5]:
        p = subprocess.run([LODE, "tokenize", "-m", vocab, "--json"], input=text.encode(), capture_output=True)
        assert json.loads(p.stdout) == got_all[cases.index(text)]
    bad = [(t[:60], g[:20], w[:20]) for t, g, w in zip(cases, got_all, ref) if g != w]
    assert not bad, f"{len(bad)}/{len(cases)} differ, e.g. {bad[:3]}"
