"""Tokenizer conformance: llama.cpp's own test vectors for the deepseek-llm
(DeepSeek-V2 / Coder-V2) and deepseek-coder (v1) vocabularies, from
../shared/data/vocab (vocab-only GGUFs + .inp/.out files): every case must
match token for token, and decoding must give the input back."""
import os
import subprocess

import pytest

from lodetest import LODE, ROOT

VOCAB = os.environ.get("LODE_VOCAB_DIR", os.path.join(os.path.dirname(ROOT), "shared", "data", "vocab"))
NAMES = ["deepseek-llm", "deepseek-coder"]


def cases(name):
    inp = open(os.path.join(VOCAB, f"ggml-vocab-{name}.gguf.inp"), encoding="utf-8").read()
    out = open(os.path.join(VOCAB, f"ggml-vocab-{name}.gguf.out"), encoding="utf-8").read()
    texts = inp.split("\n__ggml_vocab_test__\n")
    if texts and texts[-1].endswith("\n__ggml_vocab_test__"):
        texts[-1] = texts[-1][: -len("\n__ggml_vocab_test__")]
    expected = out.split("\n")
    return texts, expected


def tok(model, text):
    p = subprocess.run([LODE, "tokenize", "-m", model], input=text.encode(), capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode().split()


@pytest.mark.parametrize("name", NAMES)
def test_llamacpp_vectors(name):
    path = os.path.join(VOCAB, f"ggml-vocab-{name}.gguf")
    if not os.path.exists(path):
        pytest.fail(f"vocabulary test data not found at {path} (set LODE_VOCAB_DIR)")
    texts, expected = cases(name)
    bad = []
    for i, t in enumerate(texts):
        got = tok(path, t)
        want = expected[i].split()
        if got != want:
            bad.append(f"case {i} {t!r}: got {got} want {want}")
    assert not bad, f"{len(bad)}/{len(texts)} cases differ:\n" + "\n".join(bad[:10])
