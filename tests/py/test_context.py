"""Project context from the outside: `lode context` (text and --json, bad
input), `lode complete` on a tiny random model, and `lode lsp` with the
project context talking to a scripted daemon (the prompt it sends holds the
other file's definition under its path header; the model's text comes back
post-processed for the syntax at the cursor)."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading

import pytest

from lodetest import LODE, lode, model
from test_lsp import Lsp

FIM_BEGIN = "<\uff5cfim\u2581begin\uff5c>"
FIM_HOLE = "<\uff5cfim\u2581hole\uff5c>"
FIM_END = "<\uff5cfim\u2581end\uff5c>"

UTIL_H = """#ifndef UTIL_H
#define UTIL_H
unsigned checksum32(const char *buf, unsigned n);
int clamp_int(int v, int lo, int hi);
#endif
"""
UTIL_C = """#include "util.h"

unsigned checksum32(const char *buf, unsigned n) {
    unsigned h = 2166136261u;
    for (unsigned i = 0; i < n; i++) h = (h ^ (unsigned char)buf[i]) * 16777619u;
    return h;
}

int clamp_int(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}
"""
MAIN_C = """#include <stdio.h>
#include "util.h"

static int scale(int x) {
    return x * 3;
}

int main(void) {
    int v = clamp_int(scale(7), 0, 10);
    printf("%d\\n", v);
    return 0;
}
"""


@pytest.fixture
def proj():
    d = tempfile.mkdtemp(prefix="lode-ctx-py-")
    os.makedirs(os.path.join(d, ".git"))
    os.makedirs(os.path.join(d, "src"))
    for name, text in (("src/util.h", UTIL_H), ("src/util.c", UTIL_C), ("src/main.c", MAIN_C)):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    env = {"XDG_CACHE_HOME": os.path.join(d, ".cache")}
    yield d, env
    shutil.rmtree(d, ignore_errors=True)


def line_col(text, needle):
    """1-based LINE:COL of the start of needle."""
    i = text.index(needle)
    line = text.count("\n", 0, i) + 1
    return line, i - (text.rfind("\n", 0, i) + 1) + 1


def test_context_prints_the_prompt_and_sections(proj):
    d, env = proj
    main = os.path.join(d, "src", "main.c")
    ln, col = line_col(MAIN_C, "printf")
    p = lode("context", f"{main}:{ln}:{col}", env=env)
    out = p.stdout
    assert out.startswith(FIM_BEGIN) and FIM_HOLE in out and out.rstrip("\n").endswith(FIM_END)
    prefix = out[len(FIM_BEGIN):out.index(FIM_HOLE)]
    # the included header first (its declarations under its path), the current file last
    assert "// src/util.h\n" in prefix
    assert "int clamp_int(int v, int lo, int hi);" in prefix
    assert prefix.index("// src/util.h") < prefix.index("// src/main.c")
    assert prefix.endswith(MAIN_C[:MAIN_C.index("printf")])
    assert out[out.index(FIM_HOLE) + len(FIM_HOLE):].startswith('printf("%d\\n", v);')
    # the section table on stderr
    assert "import" in p.stderr and "file" in p.stderr and "suffix" in p.stderr
    assert "estimated" in p.stderr  # no -m: tokens estimated


def test_context_json_is_the_same_prompt(proj):
    d, env = proj
    main = os.path.join(d, "src", "main.c")
    ln, col = line_col(MAIN_C, "return 0;")
    text = lode("context", f"{main}:{ln}:{col}", "--budget", "1024", env=env).stdout
    j = json.loads(lode("context", f"{main}:{ln}:{col}", "--budget", "1024", "--json", env=env).stdout)
    assert j["budget"] == 1024 and j["tokens"] <= 1024 and not j["exact"]
    assert j["prompt"] + "\n" == text
    assert j["prompt"] == FIM_BEGIN + j["prefix"] + FIM_HOLE + j["suffix"] + FIM_END
    kinds = [s["kind"] for s in j["sections"]]
    assert kinds[-2:] == ["file", "suffix"]
    assert "".join(s["text"] for s in j["sections"] if s["kind"] != "suffix") == j["prefix"]
    assert sum(s["tokens"] for s in j["sections"]) + 4 == j["tokens"]
    # a cross-file definition the cursor uses (clamp_int, called two lines up)
    assert any(x.endswith("\tclamp_int") for x in j["definitions"])
    # deterministic
    again = json.loads(lode("context", f"{main}:{ln}:{col}", "--budget", "1024", "--json", env=env).stdout)
    assert again["prompt"] == j["prompt"]


def test_context_budget_with_the_models_tokenizer(proj):
    d, env = proj
    m = model("tiny-coder")
    main = os.path.join(d, "src", "main.c")
    ln, col = line_col(MAIN_C, "return 0;")
    for budget in (128, 512):
        j = json.loads(lode("context", f"{main}:{ln}:{col}", "--budget", budget, "-m", m, "--json", env=env).stdout)
        assert j["exact"] and j["tokens"] <= budget
        # counted again from the outside, as the prompt is built: BOS + FIM markers + prefix + suffix
        n = 4
        for part in (j["prefix"], j["suffix"]):
            if part:
                n += len(json.loads(lode("tokenize", "-m", m, "--json", "--text", part, env=env).stdout))
        assert n <= budget, (n, budget)


def test_context_bad_input(proj):
    d, env = proj
    main = os.path.join(d, "src", "main.c")
    for args, needle in ((["nocolon"], "FILE:LINE:COL"), ([f"{main}:0:1"], "FILE:LINE:COL"),
                         ([f"{main}:999:1"], "no line 999"), ([f"{main}:1:500"], "column 500"),
                         ([f"{d}/missing.c:1:1"], "cannot open"), ([f"{main}:1:1", "--budget", "5"], "bad argument"),
                         ([f"{main}:1:1", "--bogus"], "bad argument")):
        p = lode("context", *args, check=False, env=env)
        assert p.returncode in (1, 2), (args, p.returncode)
        assert needle in p.stderr, (args, p.stderr)
        assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr


def test_complete_runs_the_model(proj):
    d, env = proj
    m = model("tiny-coder")
    main = os.path.join(d, "src", "main.c")
    ln, col = line_col(MAIN_C, "return 0;")
    p = lode("complete", f"{main}:{ln}:{col}", "-m", m, "-n", "8", "--json", env=env)
    j = json.loads(p.stdout)
    assert j["prompt_tokens"] > 0 and j["mode"] in ("single", "multi")
    if j["rejected"]:  # random weights: the text broke the file's syntax
        assert j["text"] == ""
    else:
        assert j["text"].strip() in j["raw"]
    # the post-processed text never has more lines than the raw output, and a
    # single-line cursor gets one line
    assert j["text"].count("\n") <= j["raw"].count("\n")
    assert j["mode"] == "single" and "\n" not in j["text"]  # "return 0;" has text after the cursor
    p = lode("complete", f"{main}:{ln}:{col}", "-m", m, "-n", "4", env=env)
    assert "prompt" in p.stderr and "tokens" in p.stderr
    p = lode("complete", f"{main}:{ln}:{col}", check=False, env=env)
    assert p.returncode == 2 and "usage" in p.stderr



def recent_sections(j):
    return [s for s in j["sections"] if s["kind"] == "recent"]


def test_context_recent_files_by_mtime(proj):
    """By default the RECENT sections come from the indexed files modified
    within the last 24 h (newest first, not the current file), as the LSP
    path makes them from edits."""
    import time
    d, env = proj
    main = os.path.join(d, "src", "main.c")
    now = time.time()
    os.utime(os.path.join(d, "src", "util.c"), (now - 60, now - 60))
    os.utime(os.path.join(d, "src", "util.h"), (now - 3 * 86400, now - 3 * 86400))  # too old
    ln, col = line_col(MAIN_C, "return 0;")
    j = json.loads(lode("context", f"{main}:{ln}:{col}", "--json", env=env).stdout)
    assert j["recent_from"] == "mtime"
    assert j["recent"] == [{"path": "src/util.c", "line": None, "from": "mtime"}]
    rec = recent_sections(j)
    assert [s["path"] for s in rec] == ["src/util.c"]
    # the chunk is the top of the file under its path header, before the definitions and the file
    assert rec[0]["text"].startswith("// src/util.c\n#include \"util.h\"")
    kinds = [s["kind"] for s in j["sections"]]
    assert kinds.index("recent") < kinds.index("file")
    # a file touched now is the newest; the table on stderr lists it too
    time.sleep(0.01)
    with open(os.path.join(d, "src", "util.h"), "a") as f:
        f.write("int touched(void);\n")
    j = json.loads(lode("context", f"{main}:{ln}:{col}", "--json", env=env).stdout)
    assert [r["path"] for r in j["recent"]] == ["src/util.h", "src/util.c"]
    assert sorted(s["path"] for s in recent_sections(j)) == ["src/util.c", "src/util.h"]
    assert "touched" in "".join(s["text"] for s in recent_sections(j))
    p = lode("context", f"{main}:{ln}:{col}", env=env)
    assert "recent files (modified within the last 24 h, newest first): src/util.h src/util.c" in p.stderr
    assert "\n  recent " in p.stderr
    # nothing recent: no section
    for name in ("util.c", "util.h"):
        os.utime(os.path.join(d, "src", name), (now - 2 * 86400, now - 2 * 86400))
    j = json.loads(lode("context", f"{main}:{ln}:{col}", "--json", env=env).stdout)
    assert j["recent"] == [] and not recent_sections(j)


def test_context_recent_flag(proj):
    d, env = proj
    main = os.path.join(d, "src", "main.c")
    util = os.path.join(d, "src", "util.c")
    ln, col = line_col(MAIN_C, "return 0;")
    cl, _ = line_col(UTIL_C, "int clamp_int")
    j = json.loads(lode("context", f"{main}:{ln}:{col}", "--recent", f"{util}:{cl}", "--json", env=env).stdout)
    assert j["recent_from"] == "--recent"
    assert j["recent"] == [{"path": "src/util.c", "line": cl, "from": "--recent"}]
    rec = recent_sections(j)
    assert [s["path"] for s in rec] == ["src/util.c"] and "int clamp_int(int v, int lo, int hi)" in rec[0]["text"]
    # the flags replace the mtime default (util.h is fresh too, but not named)
    assert "src/util.h" not in [s["path"] for s in rec]
    # the same section as the text prompt; the table names the flag
    p = lode("context", f"{main}:{ln}:{col}", "--recent", f"{util}:{cl}", env=env)
    assert rec[0]["text"] in p.stdout and "recent files (--recent): src/util.c:%d" % cl in p.stderr
    # repeatable, a path without LINE, the current file is not used
    j = json.loads(lode("context", f"{main}:{ln}:{col}", "--recent", util, "--recent", os.path.join(d, "src", "util.h"),
                        "--recent", main, "--json", env=env).stdout)
    assert [r["path"] for r in j["recent"]] == ["src/util.c", "src/util.h", "src/main.c"]
    assert sorted(s["path"] for s in recent_sections(j)) == ["src/util.c", "src/util.h"]
    # --no-recent: none
    j = json.loads(lode("context", f"{main}:{ln}:{col}", "--no-recent", "--json", env=env).stdout)
    assert j["recent_from"] == "none" and not recent_sections(j)
    # bad flags
    for args, needle in ((["--recent", f"{d}/missing.c"], "missing.c"), (["--recent", f"{util}:0"], "FILE[:LINE]"),
                         (["--recent", f"{util}:999"], "no line 999"), (["--recent"], "bad argument")):
        p = lode("context", f"{main}:{ln}:{col}", *args, check=False, env=env)
        assert p.returncode in (1, 2) and needle in p.stderr, (args, p.stderr)


def test_budget_capped_at_the_models_context(proj):
    """-m: the budget is at most the model's context less the tokens kept
    for generation (64 for context, -n for complete), and the output says so."""
    d, env = proj
    m = model("tiny-llama")  # n_ctx_train 256
    main = os.path.join(d, "src", "main.c")
    ln, col = line_col(MAIN_C, "return 0;")
    j = json.loads(lode("context", f"{main}:{ln}:{col}", "-m", m, "--json", env=env).stdout)
    assert j["budget"] == 256 - 64 and j["budget_capped"] and j["budget_asked"] == 4096
    assert j["n_ctx"] == 256 and j["generation_reserve"] == 64 and j["tokens"] <= 192
    p = lode("context", f"{main}:{ln}:{col}", "-m", m, env=env)
    assert "budget capped at 192 tokens: the model's context is 256, less 64 kept for generation (asked: 4096)" in p.stderr
    assert "tokens of 192" in p.stderr
    # a budget that fits is kept
    j = json.loads(lode("context", f"{main}:{ln}:{col}", "-m", m, "--budget", 100, "--json", env=env).stdout)
    assert j["budget"] == 100 and not j["budget_capped"]
    p = lode("context", f"{main}:{ln}:{col}", "-m", m, "--budget", 100, env=env)
    assert "capped" not in p.stderr
    # complete keeps -n for generation
    p = lode("complete", f"{main}:{ln}:{col}", "-m", m, "-n", 16, env=env)
    assert "budget capped at 240 tokens: the model's context is 256, less 16 kept for generation" in p.stderr
    # a context too small for the prompt and the generation
    p = lode("complete", f"{main}:{ln}:{col}", "-m", model("tiny-v2lite"), "-n", 100, check=False, env=env)
    assert p.returncode == 1 and "the model's context (128 tokens) less 100 kept for generation" in p.stderr


class FakeDaemon:
    """A scripted `lode serve`: answers lode/status, records lode/infill
    params and answers each with the next scripted text."""

    def __init__(self, path, texts):
        self.path, self.texts, self.infills = path, list(texts), []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        f = c.makefile("rb")
        while True:
            n = None
            while True:
                line = f.readline()
                if not line:
                    return
                line = line.strip()
                if not line:
                    break
                k, v = line.split(b":", 1)
                if k.lower() == b"content-length":
                    n = int(v)
            msg = json.loads(f.read(n))
            if "id" not in msg:
                continue
            if msg["method"] == "lode/status":
                res = {"model": "fake.gguf"}
            elif msg["method"] == "lode/infill":
                self.infills.append(msg["params"])
                text = self.texts.pop(0) if self.texts else ""
                res = {"text": text, "prompt_tokens": 1, "cached_tokens": 0, "generated_tokens": 1}
            else:
                res = {}
            body = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": res}).encode()
            c.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def close(self):
        self.srv.close()


def test_lsp_uses_the_project_context(proj):
    d, env = proj
    sock = os.path.join(d, "fake.sock")
    fake = FakeDaemon(sock, ["clamp_int(v, 0, 5);\n    return 0;\n}\n",
                             "\n    int t = x * 3;\n    return t;\n}\n\nint other(void) {\n"])
    try:
        e = dict(os.environ, XDG_STATE_HOME=d, **env)
        e.pop("LODE_MODEL", None)
        e.pop("LODE_NO_PROJECT_CONTEXT", None)
        c = Lsp("--socket", sock, env=e)
        root_uri = "file://" + d
        r = c.call("initialize", {"processId": None, "rootUri": root_uri, "workspaceFolders": [{"uri": root_uri, "name": "p"}],
                                  "capabilities": {"textDocument": {"inlineCompletion": {}}},
                                  "initializationOptions": {"debounceMs": 0, "contextTokens": 2048}})
        assert "capabilities" in r["result"]
        c.notify("initialized")
        uri = "file://" + os.path.join(d, "src", "main.c")
        c.open(uri, MAIN_C, lang="c")
        # type a new line in main() with incremental edits
        ln, _ = line_col(MAIN_C, "return 0;")
        c.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [
            {"range": {"start": {"line": ln - 1, "character": 4}, "end": {"line": ln - 1, "character": 4}},
             "text": "v = \n    "}]})
        r = c.inline(uri, ln - 1, 8)
        items = r["result"]["items"]
        # the model's line: "clamp_int(v, 0, 5);" — one line (text after the cursor? no: the line ends at the cursor)
        assert len(items) == 1 and items[0]["insertText"] == "clamp_int(v, 0, 5);", r
        p = fake.infills[0]
        assert "// src/util.h\n" in p["prefix"] and "int clamp_int(int v, int lo, int hi);" in p["prefix"]
        assert p["prefix"].endswith("    v = ") and "// src/main.c\n" in p["prefix"]
        assert p["suffix"].startswith("\n    return 0;")
        # after a block opener: several lines, cut where the block closes
        c.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 3}, "contentChanges": [
            {"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}},
             "text": "int triple(int x) {\n}\n"}]})
        r = c.inline(uri, 0, len("int triple(int x) {"))
        items = r["result"]["items"]
        assert len(items) == 1 and items[0]["insertText"] == "\n    int t = x * 3;\n    return t;", r
        assert fake.infills[1]["prefix"].endswith("int triple(int x) {")
        assert c.finish() == 0
    finally:
        fake.close()
