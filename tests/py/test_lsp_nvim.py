"""Neovim headless (Debian's 0.7.2) attaching `lode lsp` through
editors/nvim and getting completions; tests/nvim/lsp_spec.lua exits through
`cquit 1` on any error."""
import os
import shutil
import subprocess
import tempfile

import pytest

from lodetest import LODE, lode, model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(not shutil.which("nvim"), reason="nvim not installed (make deps)")
def test_nvim_headless_completions():
    d = tempfile.mkdtemp(prefix="lode-nvim-")
    os.chmod(d, 0o700)
    sock = os.path.join(d, "lode.sock")
    env = dict(os.environ, LODE_NO_PROJECT_CONTEXT="1", LODE_BIN=LODE, LODE_TEST_MODEL=model("tiny-coder"), LODE_TEST_SOCKET=sock,
               LODE_NVIM_PLUGIN=os.path.join(ROOT, "editors", "nvim"), XDG_STATE_HOME=d,
               XDG_CONFIG_HOME=d, XDG_DATA_HOME=d, XDG_CACHE_HOME=d)
    try:
        p = subprocess.run(["nvim", "--headless", "--clean", "-u", "NONE", "-c",
                            "luafile " + os.path.join(ROOT, "tests", "nvim", "lsp_spec.lua")],
                           capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
        assert p.returncode == 0 and "ok" in p.stderr, p.stdout + p.stderr
    finally:
        lode("stop", "--socket", sock, check=False)
        shutil.rmtree(d, ignore_errors=True)
