"""The tokenizer comparison corpus (ours): source code in many languages,
mixed scripts, emoji, long runs of whitespace and digits, CRLF, random
concatenations of tricky pieces, and lode's own sources."""
import os
import random

from lodetest import ROOT

CORPUS_DIR = os.path.join(ROOT, "tests", "tokenizer", "corpus")


def corpus():
    cases = []
    for f in sorted(os.listdir(CORPUS_DIR)):
        text = open(os.path.join(CORPUS_DIR, f), encoding="utf-8", newline="").read()
        cases.append(text)
        cases.extend(text.splitlines(keepends=True))
        cases.append(text.replace("\n", "\r\n"))
    for f in ("engine/tok_encode.c", "engine/model_gen.c", "tests/ref/lode_ref.py", "README.md"):
        cases.append(open(os.path.join(ROOT, f), encoding="utf-8").read())
    rng = random.Random(7)
    for n in (1, 2, 3, 17, 100, 1000):
        cases += [" " * n, "\t" * n, "\n" * n, "7" * n, " x" * n, "\r\n" * n, "🦙" * n, "a1" * n, " " * n + "x"]
    pieces = ["def", " ", "  ", "\n", "\t", "0", "42", "ÄÖÜ", "ß", "ℭ", "K", "Ω", "日本", "😀", "_", "__init__", "'s",
              "'ll", "(", ")", "{", "}", ";", "//", "#", "->", "=>", "é", "ñ", "\u0301", "\u200d", "ǅ", "ゟ", "ヿ",
              "1234", "!a", "\r\n\r\n", " \n"]
    for _ in range(300):
        cases.append("".join(rng.choice(pieces) for _ in range(rng.randint(1, 40))))
    return cases
