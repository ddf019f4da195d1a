"""Exactness of lode's forward pass against the independent float64 reference
(tests/ref/lode_ref.py). Run with pytest-3 (Debian python3 + numpy).

Part 1 checks the reference itself on hand-made models (our own writers in
refmodels.py; no lode code involved): spec numbers, RoPE pairing, an absorbed-MLA
re-derivation, MoE routing rules, loader/layout agreement and dequantisation.
Part 2 compares `lode logits` with the reference on every tiny preset of `lode gen`,
HF and GGUF, f32 and quantised. Part 2 fails (never skips) without LODE_BIN.
"""

import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import refmodels as rm  # noqa: E402
from ref_lode import (PRESETS, TOL, N_TOKENS, gen_model, lode_logits, lode_ref,  # noqa: E402
                      make_tokens, ref_logits)

lr = lode_ref

# =============================================================================
# Part 1 — the reference on its own
# =============================================================================

LITE_YARN = {"type": "yarn", "factor": 40.0, "orig_ctx": 4096, "beta_fast": 32.0, "beta_slow": 1.0,
             "mscale": 0.707, "mscale_all_dim": 0.707}


def test_yarn_worked_numbers():
    """spec §3.2 table (Lite/V2/V3: d=64, base 1e4, s=40, L0=4096)."""
    th = lr.yarn_inv_freq(64, 10000.0, LITE_YARN)
    want = {0: 1.0, 8: 0.1, 10: 5.623413e-2, 11: 3.900693e-2, 16: 5.5e-3,
            22: 1.778279e-4, 23: 3.333804e-5, 31: 3.333804e-6}
    for i, v in want.items():
        assert th[i] == pytest.approx(v, rel=2e-6), i
    m = lr.yarn_get_mscale(40, 0.707)
    assert 192 ** -0.5 * m * m == pytest.approx(0.11472139, rel=1e-7)
    m3 = lr.yarn_get_mscale(40, 1.0)
    assert 192 ** -0.5 * m3 * m3 == pytest.approx(0.13523378, rel=1e-7)


def test_rope_pairing_matches_remote_code():
    """The original remote code de-interleaves q_pe/k_pe ([32,2] -> [2,32]) and then
    applies rotate_half; q·k must equal our direct (2i, 2i+1) pairing."""
    rng = np.random.default_rng(0)
    d, T = 64, 50
    inv = lr.yarn_inv_freq(d, 10000.0, LITE_YARN)
    pos = np.arange(T, dtype=np.float64)
    q, k = rng.standard_normal((T, d)), rng.standard_normal((T, d))

    def remote(x):
        x = x.reshape(T, d // 2, 2).transpose(0, 2, 1).reshape(T, d)   # de-interleave
        emb = np.concatenate([inv, inv])
        cos, sin = np.cos(pos[:, None] * emb), np.sin(pos[:, None] * emb)
        rot = np.concatenate([-x[:, d // 2:], x[:, :d // 2]], axis=1)
        return x * cos + rot * sin

    ours = lr.rope_pairs_interleaved(q, pos, inv) @ lr.rope_pairs_interleaved(k, pos, inv).T
    theirs = remote(q) @ remote(k).T
    assert np.abs(ours - theirs).max() < 1e-10
    # and the NEOX pairing on raw rows is NOT the same (pitfall 1): must differ beyond pos 0
    neox = lr.rope_rotate_half(q, pos, inv) @ lr.rope_rotate_half(k, pos, inv).T
    assert np.abs(neox - theirs)[5:, 5:].max() > 1e-2


def _absorbed_deepseek2(m, tokens):
    """A second derivation of deepseek2 attention: token-by-token decode with the
    absorbed MLA form and a [c ‖ k_pe'] cache (spec §2.5). Shares only norms, rope
    and the FFN/MoE with forward_deepseek2."""
    c, W = m.cfg, m.W
    nh, dn, dr, dv, dc = c["n_head"], c["d_nope"], c["d_rope"], c["d_v"], c["kv_lora_rank"]
    rs = c["rope_scaling"]
    inv = lr.yarn_inv_freq(dr, c["rope_theta"], rs)
    mm = lr.yarn_get_mscale(rs["factor"], rs["mscale_all_dim"])
    scale = (dn + dr) ** -0.5 * mm * mm
    cache = [[] for _ in range(c["n_layer"])]
    out = []
    for t, tok in enumerate(tokens):
        p = np.array([float(t)])
        h = W["model.embed_tokens.weight"][[tok]]
        for l in range(c["n_layer"]):
            hp, ap = f"model.layers.{l}.", f"model.layers.{l}.self_attn."
            a = lr.rms_norm(h, W[hp + "input_layernorm.weight"], c["eps"])
            if c["q_lora_rank"]:
                q = lr.rms_norm(a @ W[ap + "q_a_proj.weight"].T, W[ap + "q_a_layernorm.weight"], c["eps"]) @ W[ap + "q_b_proj.weight"].T
            else:
                q = a @ W[ap + "q_proj.weight"].T
            q = q.reshape(nh, dn + dr)
            ckv = (a @ W[ap + "kv_a_proj_with_mqa.weight"].T)[0]
            cn = lr.rms_norm(ckv[:dc], W[ap + "kv_a_layernorm.weight"], c["eps"])
            kpe = lr.rope_pairs_interleaved(ckv[None, dc:], p, inv)[0]
            cache[l].append(np.concatenate([cn, kpe]))
            K = np.array(cache[l])                                   # [t+1, dc+dr]
            kvb = W[ap + "kv_b_proj.weight"].reshape(nh, dn + dv, dc)
            wuk, wuv = kvb[:, :dn, :], kvb[:, dn:, :]
            qt = np.einsum("hd,hdc->hc", q[:, :dn], wuk)             # q̃ = W_UKᵀ q_nope
            qpe = lr.rope_pairs_interleaved(q[:, None, dn:], p, inv)[:, 0]
            s = scale * (qt @ K[:, :dc].T + qpe @ K[:, dc:].T)        # [nh, t+1]
            pr = lr.softmax(s)
            o = np.einsum("hc,hdc->hd", pr @ K[:, :dc], wuv).reshape(1, -1)
            h = h + o @ W[ap + "o_proj.weight"].T
            b = lr.rms_norm(h, W[hp + "post_attention_layernorm.weight"], c["eps"])
            if l >= c["first_k_dense"]:
                h = h + lr.moe(b, W, hp, c)
            else:
                h = h + lr.swiglu(b, W[hp + "mlp.gate_proj.weight"], W[hp + "mlp.up_proj.weight"], W[hp + "mlp.down_proj.weight"])
        out.append((lr.rms_norm(h, W["model.norm.weight"], c["eps"]) @ W["lm_head.weight"].T)[0])
    return np.array(out)


def _cfg_variants():
    v3_rope = {"type": "yarn", "factor": 8.0, "original_max_position_embeddings": 16,
               "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}
    return {
        "v2lite": rm.ds2_config(),
        "v2": rm.ds2_config(q_lora_rank=24, n_group=4, topk_group=2, topk_method="group_limited_greedy",
                            routed_scaling_factor=16.0),
        "v3": rm.ds2_config(q_lora_rank=24, n_group=4, topk_group=2, topk_method="noaux_tc",
                            scoring_func="sigmoid", norm_topk_prob=True, routed_scaling_factor=2.5,
                            rope_scaling=v3_rope),
    }


@pytest.fixture(scope="module")
def handmade(tmp_path_factory):
    """Hand-made models in every layout: name -> (config, {layout: path})."""
    d = tmp_path_factory.mktemp("refmodels")
    out = {}
    for name, c in _cfg_variants().items():
        W = rm.ds2_weights(c, seed=3)
        paths = {"hf": str(d / f"{name}-hf"), "hf-sharded": str(d / f"{name}-hf-sh"),
                 "gguf": str(d / f"{name}.gguf"), "gguf-legacy": str(d / f"{name}-legacy.gguf")}
        rm.write_hf_dir(paths["hf"], c, W)
        rm.write_hf_dir(paths["hf-sharded"], c, W, shards=3)
        rm.ds2_to_gguf(paths["gguf"], c, W, split=True)
        rm.ds2_to_gguf(paths["gguf-legacy"], c, W, split=False)
        out[name] = (c, paths)
    c = rm.llama_config(num_key_value_heads=2, rope_scaling={"type": "linear", "factor": 4.0})
    W = rm.llama_weights(c, seed=5)
    paths = {"hf": str(d / "llama-hf"), "gguf": str(d / "llama.gguf")}
    rm.write_hf_dir(paths["hf"], c, W)
    rm.llama_to_gguf(paths["gguf"], c, W)
    out["llama-gqa"] = (c, paths)
    return out


@pytest.mark.parametrize("name", ["v2lite", "v2", "v3"])
def test_absorbed_decode_equals_naive_prefill(handmade, name):
    m = lr.load_model(handmade[name][1]["hf"])
    toks = make_tokens(m.cfg["vocab"], n=40)
    naive = lr.forward(m, toks)
    absorbed = _absorbed_deepseek2(m, toks)
    assert np.abs(naive - absorbed).max() < 1e-9


@pytest.mark.parametrize("name", ["v2lite", "v2", "v3", "llama-gqa"])
def test_layouts_agree(handmade, name):
    """HF (single / sharded), GGUF split attn_k_b/attn_v_b and legacy attn_kv_b, and for
    llama the permuted GGUF q/k rows, all give the same logits. GGUF stores eps and
    yarn_log_multiplier as float32, hence 1e-6 rather than 0."""
    paths = handmade[name][1]
    base = None
    for layout, p in paths.items():
        m = lr.load_model(p)
        lg = lr.forward(m, make_tokens(m.cfg["vocab"], n=40))
        if base is None:
            base = lg
        assert np.abs(lg - base).max() < 1e-5, layout


def test_yarn_and_scale_matter(handmade):
    """Guard against a vacuous reference: dropping m² or using NEOX pairing changes the
    tiny-model logits well beyond the test tolerance (beyond position 0 only)."""
    m = lr.load_model(handmade["v2lite"][1]["hf"])
    toks = make_tokens(m.cfg["vocab"], n=40)
    good = lr.forward(m, toks)
    rs = dict(m.cfg["rope_scaling"])
    m.cfg["rope_scaling"] = dict(rs, mscale_all_dim=0.0, mscale=0.0)    # no m², plain cos/sin
    bad = lr.forward(m, toks)
    m.cfg["rope_scaling"] = rs
    assert np.abs(good[0] - bad[0]).max() < 1e-9            # position 0 hides it
    assert np.abs(good - bad).max() > 100 * TOL


def _gate(E, H, rng):
    return rng.standard_normal((E, H))


def test_routing_greedy_v2_rule():
    rng = np.random.default_rng(1)
    x, g = rng.standard_normal((5, 16)), _gate(8, 16, rng)
    cfg = dict(top_k=2, topk_method="greedy", scoring_func="softmax", norm_topk_prob=False,
               routed_scaling_factor=3.0, n_group=1, topk_group=1)
    idx, w = lr.route(x, g, None, cfg)
    s = lr.softmax(x @ g.T)
    for t in range(5):
        top = np.argsort(-s[t])[:2]
        assert set(idx[t]) == set(top)
        assert np.allclose(sorted(w[t]), sorted(3.0 * s[t][top]))   # scaled, not renormalised
    cfg["norm_topk_prob"] = True                                   # V2: renormalise INSTEAD of scaling
    idx, w = lr.route(x, g, None, cfg)
    assert np.allclose(w.sum(1), 1.0)


def test_routing_group_limited_max_vs_top2sum():
    """One group holds the single best expert, another the best pair: max keeps the
    first group, top-2-sum (llama.cpp) keeps the second."""
    logits = np.log(np.array([[0.30, 0.01, 0.01, 0.01, 0.20, 0.20, 0.01, 0.01]]))
    g = np.eye(8)
    cfg = dict(top_k=1, topk_method="group_limited_greedy", scoring_func="softmax",
               norm_topk_prob=False, routed_scaling_factor=16.0, n_group=2, topk_group=1)
    idx, w = lr.route(logits, g, None, cfg, group_score="max")
    assert idx[0].tolist() == [0]
    p = lr.softmax(logits)[0]
    assert w[0, 0] == pytest.approx(16.0 * p[0])
    idx, _ = lr.route(logits, g, None, cfg, group_score="top2sum")
    assert idx[0].tolist() in ([4], [5])


def test_routing_noaux_tc_mask_zero_and_unbiased_weights():
    """noaux_tc: selection on sigmoid+bias, groups by top-2 sum, masked experts set to
    0.0 (HF/remote), weights from the unbiased sigmoid, renormalised then scaled."""
    E = 8
    logits = np.array([[2.0, 1.5, -3.0, -3.0, 0.5, 0.4, 0.3, 0.2]])
    bias = np.array([0.0, 0.0, 0.0, 0.0, -1.0, -1.0, -1.0, -1.0])
    # biased scores of group 1 (experts 4..7) are all negative: 0.62-1 ... < 0
    cfg = dict(top_k=3, topk_method="noaux_tc", scoring_func="sigmoid", norm_topk_prob=True,
               routed_scaling_factor=2.5, n_group=2, topk_group=1)
    idx, w = lr.route(logits, np.eye(E), bias, cfg)
    s = 1 / (1 + np.exp(-logits[0]))
    # group 0 kept (top2 sums 0.88+0.82 vs negative); top-3 of [s0,s1,s2,s3,0,0,0,0]
    # = experts 0,1 then the larger of s2=s3=sigmoid(-3)=0.047 vs masked 0.0 -> 2 (tie
    # with 3 broken by lower index)
    assert sorted(idx[0].tolist()) == [0, 1, 2]
    sel = s[sorted(idx[0].tolist())]
    assert np.allclose(sorted(w[0]), sorted(2.5 * sel / sel.sum()))
    # with -inf masking a negative in-group expert would still beat a masked one; with
    # 0.0 a masked expert beats negative in-group scores:
    logits2 = np.array([[2.0, -4.0, -4.0, -4.0, 0.5, 0.4, 0.3, 0.2]])
    bias2 = np.array([0.0, -0.5, -0.5, -0.5, -2.0, -2.0, -2.0, -2.0])
    idx2, _ = lr.route(logits2, np.eye(E), bias2, cfg)
    assert 0 in idx2[0] and any(i >= 4 for i in idx2[0])


def test_routing_v3_rule_scales_after_norm():
    rng = np.random.default_rng(2)
    x, g = rng.standard_normal((4, 16)), _gate(8, 16, rng)
    cfg = dict(top_k=2, topk_method="noaux_tc", scoring_func="sigmoid", norm_topk_prob=True,
               routed_scaling_factor=2.5, n_group=1, topk_group=1)
    _, w = lr.route(x, g, np.zeros(8), cfg)
    assert np.allclose(w.sum(1), 2.5)


def test_dequant_q8_0_q4_0_roundtrip():
    rng = np.random.default_rng(3)
    a = rng.standard_normal(32 * 64).astype(np.float32)
    y8 = lr.dequantize(rm.quant_q8_0(a), "Q8_0", a.size)
    assert np.abs(y8 - a).max() < np.abs(a).max() / 127 * 0.51 + 1e-3
    y4 = lr.dequantize(rm.quant_q4_0(a), "Q4_0", a.size)
    blocks = np.abs(a.reshape(-1, 32)).max(1)
    # step d = max/8; values of the other sign clip at +7d, so the error is at most one step
    assert np.all(np.abs(y4 - a).reshape(-1, 32).max(1) <= blocks / 8 * 1.01 + 1e-3)


GGML_BASE = os.path.join(os.path.dirname(__file__), "..", "npm", "node_modules", "@node-llama-cpp", "linux-x64",
                         "bins", "linux-x64", "libggml-base.so")


@pytest.mark.parametrize("tname", ["Q4_1", "Q5_0", "Q5_1"])
def test_dequant_32_block_types_match_libggml(tname):
    """The reference's Q4_1/Q5_0/Q5_1 decoders (written from the GGML block
    definitions) against ggml's own dequantize_row_* on random blocks with
    finite f16 scales: equal up to the f32 rounding of ggml's output."""
    import ctypes
    if not os.path.exists(GGML_BASE):
        pytest.skip("libggml-base.so from node-llama-cpp is not installed")
    g = ctypes.CDLL(GGML_BASE)
    _, bs, bb = next(v for v in lr.GGML_TYPES.values() if v[0] == tname)
    rng = np.random.default_rng(5)
    nb = 256
    raw = bytearray(rng.integers(0, 256, nb * bb, dtype=np.uint8).tobytes())
    for b in range(nb):
        for off in (0,) if tname == "Q5_0" else (0, 2):
            h = int(rng.integers(0, 0x3FF)) | int(rng.integers(5, 20)) << 10 | int(rng.integers(0, 2)) << 15
            raw[b * bb + off:b * bb + off + 2] = h.to_bytes(2, "little")
    out = (ctypes.c_float * (nb * 32))()
    getattr(g, "dequantize_row_" + tname.lower())(ctypes.c_char_p(bytes(raw)), out, ctypes.c_int64(nb * 32))
    got = np.array(out, dtype=np.float64)
    ref = lr.dequantize(bytes(raw), tname, nb * 32)
    assert np.all(np.abs(got - ref) <= np.abs(ref) * 2.0 ** -23 * 2 + 1e-30), tname


def _f16(v):
    return np.array([v], np.float16).view(np.uint8).tobytes()


def test_dequant_q4_k_hand_block():
    """One hand-assembled Q4_K block checked element by element (6-bit scale packing
    of sub-blocks 4..7 included)."""
    sc = [1, 2, 3, 4, 33, 40, 50, 63]      # scales of the 8 sub-blocks
    mn = [5, 6, 7, 8, 17, 20, 30, 62]      # mins
    s = bytearray(12)
    for j in range(4):
        s[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6)
        s[j + 4] = (mn[j] & 63) | ((mn[j + 4] >> 4) << 6)
        s[j + 8] = (sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4)
    q = np.arange(256) % 16
    qs = bytearray(128)
    for c in range(4):
        for l in range(32):
            qs[32 * c + l] = q[64 * c + l] | (q[64 * c + 32 + l] << 4)
    raw = _f16(0.5) + _f16(0.25) + bytes(s) + bytes(qs)
    y = lr.dequantize(raw, "Q4_K", 256)
    want = np.array([0.5 * sc[i // 32] * q[i] - 0.25 * mn[i // 32] for i in range(256)])
    assert np.array_equal(y, want)


def test_dequant_q6_k_hand_block():
    q = (np.arange(256) * 7) % 64          # 6-bit quants
    scales = np.arange(16, dtype=np.int8) - 8
    ql, qh = bytearray(128), bytearray(64)
    for n in range(2):
        for l in range(32):
            v = [q[128 * n + l + 32 * r] for r in range(4)]
            ql[64 * n + l] = (v[0] & 0xF) | ((v[2] & 0xF) << 4)
            ql[64 * n + l + 32] = (v[1] & 0xF) | ((v[3] & 0xF) << 4)
            qh[32 * n + l] = (v[0] >> 4) | ((v[1] >> 4) << 2) | ((v[2] >> 4) << 4) | ((v[3] >> 4) << 6)
    raw = bytes(ql) + bytes(qh) + scales.tobytes() + _f16(0.125)
    y = lr.dequantize(raw, "Q6_K", 256)
    want = np.array([0.125 * scales[i // 16] * (q[i] - 32) for i in range(256)])
    assert np.array_equal(y, want)


# =============================================================================
# Part 2 — lode against the reference (needs LODE_BIN; fails when missing)
# =============================================================================


def _compare(model, group_score="max", logits_args=()):
    m = lr.load_model(model)
    toks = make_tokens(m.cfg["vocab"])
    assert len(toks) >= N_TOKENS
    want = lr.forward(m, toks, group_score)
    got = lode_logits(model, toks, logits_args)
    assert got.shape == want.shape, f"lode gave {got.shape}, reference {want.shape}"
    diff = np.abs(got - want).max(axis=1)
    worst = int(diff.argmax())
    assert diff.max() < TOL, (f"{model}: max |Δlogit| {diff.max():.3g} at position {worst} "
                              f"(first positions {np.round(diff[:4], 6).tolist()})")
    bad = np.nonzero(got.argmax(1) != want.argmax(1))[0]
    assert bad.size == 0, f"{model}: argmax differs at positions {bad.tolist()}"


@pytest.mark.parametrize("fmt", ["hf", "gguf"])
@pytest.mark.parametrize("preset", PRESETS)
def test_lode_f32_exact(preset, fmt):
    _compare(gen_model(preset, fmt, "f32"))


@pytest.mark.parametrize("preset", PRESETS)
def test_lode_bf16_hf_exact(preset):
    """BF16 weights are exact in the reference; lode must match the same values."""
    _compare(gen_model(preset, "hf", "bf16"))


@pytest.mark.parametrize("qtype", ["bf16", "q8_0", "q4_0", "q4_k"])
@pytest.mark.parametrize("preset", PRESETS)
def test_lode_quantized_gguf_exact(preset, qtype):
    """lode vs the reference running on the same (dequantised) quantised file."""
    _compare(gen_model(preset, "gguf", qtype))


@pytest.mark.parametrize("preset", ["tiny-v2lite", "tiny-llama"])
def test_lode_other_seed(preset):
    _compare(gen_model(preset, "gguf", "f32", seed=7))


@pytest.mark.parametrize("qtype", ["f16", "q5_k", "q6_k", "q4_1", "q5_0", "q5_1"])
@pytest.mark.parametrize("preset", ["tiny-v2lite", "tiny-v3", "tiny-llama-gqa"])
def test_lode_more_types_exact(preset, qtype):
    _compare(gen_model(preset, "gguf", qtype))


@pytest.mark.parametrize("preset", ["tiny-v2lite", "tiny-v2", "tiny-v3"])
def test_lode_legacy_kvb_exact(preset):
    """Legacy GGUF layout (one attn_kv_b instead of attn_k_b/attn_v_b)."""
    _compare(gen_model(preset, "gguf", "f32", extra=("--legacy-kvb",)))


@pytest.mark.parametrize("kb", ["bf16", "q8_0"])
def test_lode_quantized_kb_exact(kb):
    """attn_k_b/attn_v_b themselves quantised (--kb-type)."""
    _compare(gen_model("tiny-v3", "gguf", "q4_k", extra=("--kb-type", kb)))


@pytest.mark.parametrize("preset", ["tiny-v2lite", "tiny-v3"])
def test_lode_sharded_hf_exact(preset):
    """HF checkpoint split into shards + model.safetensors.index.json."""
    path = gen_model(preset, "hf", "f32", extra=("--shard-mb", "1"))
    assert os.path.exists(os.path.join(path, "model.safetensors.index.json")), "gen did not shard"
    _compare(path)


@pytest.mark.parametrize("mode", [("--step",), ("--mla", "absorbed"), ("--mla", "decompressed")])
@pytest.mark.parametrize("preset", ["tiny-v2lite", "tiny-v2", "tiny-v3"])
def test_lode_attention_paths_exact(preset, mode):
    """Token-by-token decode and both MLA realisations give the reference logits."""
    _compare(gen_model(preset, "gguf", "f32"), logits_args=mode)
