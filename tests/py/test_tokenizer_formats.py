"""The same vocabulary through its GGUF metadata and through a generated
Hugging Face tokenizer.json (pre_tokenizer Split/Digits/ByteLevel, added
tokens, merges) gives identical ids on a mixed corpus; `lode tokenize` and
`lode detokenize` round-trip through the CLI; bad tokenizer files get a clear
error."""
import json
import os
import subprocess

import pytest

from lodetest import CACHE, LODE, lode, model

CORPUS = [
    "def fib(n):\n    return n if n < 2 else fib(n-1) + fib(n-2)\n",
    "int main(void) {\r\n\treturn 0;\r\n}\r\n",
    "    \n\n   \t\t  x  = 1234567890 + 3.14159e-10;",
    "Ελληνικά, русский, 日本語のテキスト, 한국어, العربية 🦙🚀👍🏽",
    "<｜fim▁begin｜>prefix<｜fim▁hole｜>suffix<｜fim▁end｜>",
    "<|fim_begin|> ASCII look-alikes stay text",
    "ΩΩΩ KKK ℭℭ µµ ǅ ǈ",
]


def tokenize(m, text, *extra):
    p = subprocess.run([LODE, "tokenize", "-m", m, "--json", *extra], input=text.encode(), capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


@pytest.mark.parametrize("preset", ["tiny-coder", "tiny-v2lite"])
def test_tokenizer_json_equals_gguf(preset):
    g = model(preset, "gguf")
    h = model(preset, "hf")
    for text in CORPUS:
        assert tokenize(g, text) == tokenize(h, text), text
        assert tokenize(g, text, "--bos") == tokenize(os.path.join(h, "tokenizer.json"), text, "--bos"), text


def test_cli_roundtrip():
    g = model("tiny-coder")
    for text in CORPUS:
        ids = tokenize(g, text)
        p = subprocess.run([LODE, "detokenize", "-m", g, "--tokens", ",".join(map(str, ids))], capture_output=True)
        assert p.returncode == 0 and p.stdout == text.encode()


def test_bad_tokenizer_files():
    d = os.path.join(CACHE, "badtok")
    os.makedirs(d, exist_ok=True)
    j = os.path.join(d, "tokenizer.json")
    open(j, "w").write("{broken")
    p = lode("tokenize", "-m", j, "--text", "x", check=False)
    assert p.returncode == 1 and "tokenizer.json" in p.stderr
    json.dump({"model": {"type": "Unigram", "vocab": []}}, open(j, "w"))
    p = lode("tokenize", "-m", j, "--text", "x", check=False)
    assert p.returncode == 1 and "not supported" in p.stderr
    p = lode("detokenize", "-m", model("tiny-coder"), "--tokens", "99999999", check=False)
    assert p.returncode == 1 and "outside the vocabulary" in p.stderr
