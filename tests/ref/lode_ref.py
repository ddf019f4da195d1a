#!/usr/bin/python3
"""lode_ref — an independent numpy reference forward pass for lode's test models.

Why this file exists: lode's C forward pass must be checked against something that
shares none of its code or its reading of the formats. Everything here (safetensors
and GGUF parsing, GGML dequantisation, the model maths) was written from DeepSeek's
modeling semantics (original remote `modeling_deepseek.py`, HF transformers
DeepseekV2/V3 and Llama) as summarised in docs/spec-model.md, and from the GGML
block layouts, without reading lode's engine sources.

Precision: every weight is converted exactly to float64 (fp16/bf16/quantised values
are representable exactly) and the whole forward pass runs in float64. The result is
the "real arithmetic" answer that any fp32 implementation should approach to ~1e-5.

Scope: tiny models only (hidden ≤ ~256, vocab ≤ ~32K, a few hundred tokens); the
sequence is processed as one causal prefill (naive / decompressed MLA).

Architectures:
  deepseek2 — MLA (q_lora or not), YaRN (§3 of the spec, incl. the m² softmax scale),
              dense FFN below first_k_dense_replace, MoE with shared experts and the
              routing methods greedy / group_limited_greedy / noaux_tc.
  llama     — RMSNorm, MHA/GQA, rotate_half RoPE on HF-ordered q/k rows, linear
              rope scaling (positions divided by the factor).

CLI (same output format as `lode logits`):
  /usr/bin/python3 tests/ref/lode_ref.py MODEL --tokens 1,2,3 [--full] [--top K]
prints one JSON object per position: {"pos": i, "top": [[id, logit], ...]} and, with
--full, "logits": [...].
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

# ----------------------------------------------------------------------------
# Scalar conversions (exact)
# ----------------------------------------------------------------------------


def f16_to_f64(u16):
    """IEEE half bits (uint16 array) -> float64, exactly."""
    return np.asarray(u16, dtype=np.uint16).view(np.float16).astype(np.float64)


def bf16_to_f64(u16):
    """bfloat16 bits -> float64: bf16 is the top half of an fp32."""
    u32 = np.asarray(u16, dtype=np.uint16).astype(np.uint32) << 16
    return u32.view(np.float32).astype(np.float64)


# ----------------------------------------------------------------------------
# safetensors (HF directory)
# ----------------------------------------------------------------------------

_ST_DTYPES = {"F32": np.float32, "F64": np.float64}


def read_safetensors(path):
    """Return {name: float64 ndarray} for one .safetensors file.

    Layout: u64 little-endian header length N, N bytes of JSON
    {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
    then the raw little-endian row-major data (offsets relative to its start)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack_from("<Q", blob, 0)
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = blob[base + b: base + e]
        dt = info["dtype"]
        shape = tuple(info["shape"])
        if dt in _ST_DTYPES:
            arr = np.frombuffer(raw, dtype=np.dtype(_ST_DTYPES[dt]).newbyteorder("<"))
            arr = arr.astype(np.float64)
        elif dt == "F16":
            arr = f16_to_f64(np.frombuffer(raw, dtype="<u2"))
        elif dt == "BF16":
            arr = bf16_to_f64(np.frombuffer(raw, dtype="<u2"))
        else:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: tensor {name}: {arr.size} values for shape {shape}")
        out[name] = arr.reshape(shape)
    return out


def load_hf_dir(path):
    """config.json + model.safetensors, or shards listed in model.safetensors.index.json."""
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    index = os.path.join(path, "model.safetensors.index.json")
    tensors = {}
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        for shard in sorted(set(weight_map.values())):
            tensors.update(read_safetensors(os.path.join(path, shard)))
    else:
        tensors = read_safetensors(os.path.join(path, "model.safetensors"))
    return config, tensors


# ----------------------------------------------------------------------------
# GGUF v2/v3 parser and GGML dequantisation
# ----------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"

# metadata value types -> struct format (scalars)
_GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9

# ggml tensor types: id -> (name, elements per block, bytes per block)
GGML_TYPES = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),    # f16 d; u8 qs[16]
    3: ("Q4_1", 32, 20),    # f16 d, m; u8 qs[16]
    6: ("Q5_0", 32, 22),    # f16 d; u8 qh[4]; u8 qs[16]
    7: ("Q5_1", 32, 24),    # f16 d, m; u8 qh[4]; u8 qs[16]
    8: ("Q8_0", 32, 34),    # f16 d; i8 qs[32]
    12: ("Q4_K", 256, 144),  # f16 d, dmin; u8 scales[12]; u8 qs[128]
    13: ("Q5_K", 256, 176),  # f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
    14: ("Q6_K", 256, 210),  # u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
    28: ("F64", 1, 8),
    30: ("BF16", 1, 2),
}


class _Reader:
    def __init__(self, blob):
        self.b, self.o = blob, 0

    def scalar(self, fmt):
        (v,) = struct.unpack_from(fmt, self.b, self.o)
        self.o += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.scalar("<Q")
        s = self.b[self.o:self.o + n].decode("utf-8", errors="replace")
        self.o += n
        return s

    def value(self, t):
        if t in _GGUF_SCALAR:
            return self.scalar(_GGUF_SCALAR[t])
        if t == _GGUF_STRING:
            return self.string()
        if t == _GGUF_ARRAY:
            et = self.scalar("<I")
            n = self.scalar("<Q")
            if et in _GGUF_SCALAR and et != 7:
                # bulk-read numeric arrays (token types/scores can be long)
                fmt = _GGUF_SCALAR[et]
                sz = struct.calcsize(fmt)
                arr = np.frombuffer(self.b, dtype=np.dtype(fmt), count=n, offset=self.o)
                self.o += n * sz
                return arr.tolist()
            return [self.value(et) for _ in range(n)]
        raise ValueError(f"GGUF: unknown metadata value type {t} at offset {self.o}")


def _split_k_scales(scales):
    """K-quant 6-bit scale/min unpacking for Q4_K/Q5_K.

    scales: [nb, 12] u8 -> (sc [nb, 8], mn [nb, 8]). Sub-block j<4 keeps its 6 bits in
    the low bits of bytes j (scale) and j+4 (min); sub-blocks 4..7 take the low/high
    nibble of byte j+4 plus the top two bits of bytes j-4 (scale) and j (min)."""
    s = scales.astype(np.int64)
    sc = np.empty((s.shape[0], 8), np.int64)
    mn = np.empty((s.shape[0], 8), np.int64)
    for j in range(4):
        sc[:, j] = s[:, j] & 63
        mn[:, j] = s[:, j + 4] & 63
    for j in range(4, 8):
        sc[:, j] = (s[:, j + 4] & 0xF) | ((s[:, j - 4] >> 6) << 4)
        mn[:, j] = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
    return sc, mn


def dequantize(raw, tname, n_elems):
    """Raw GGML bytes -> flat float64 array of n_elems values (exact)."""
    if tname == "F32":
        return np.frombuffer(raw, "<f4", n_elems).astype(np.float64)
    if tname == "F64":
        return np.frombuffer(raw, "<f8", n_elems).astype(np.float64)
    if tname == "F16":
        return f16_to_f64(np.frombuffer(raw, "<u2", n_elems))
    if tname == "BF16":
        return bf16_to_f64(np.frombuffer(raw, "<u2", n_elems))
    _, bs, bb = next(v for v in GGML_TYPES.values() if v[0] == tname)
    nb = n_elems // bs
    blk = np.frombuffer(raw, np.uint8, nb * bb).reshape(nb, bb)
    if tname == "Q8_0":
        d = f16_to_f64(blk[:, 0:2].copy().view("<u2"))          # [nb,1]
        q = blk[:, 2:34].view(np.int8).astype(np.float64)        # [nb,32]
        return (d * q).reshape(-1)
    if tname == "Q4_0":
        d = f16_to_f64(blk[:, 0:2].copy().view("<u2"))
        qs = blk[:, 2:18].astype(np.int64)
        # element j (< 16) is the low nibble of byte j, element j+16 the high nibble
        q = np.concatenate([qs & 0xF, qs >> 4], axis=1) - 8
        return (d * q).reshape(-1)
    if tname in ("Q4_1", "Q5_0", "Q5_1"):
        # x = d*q + m (Q5_0: q - 16, no m); q's low 4 bits as Q4_0, its 5th bit
        # (Q5_*) is bit j of the little-endian u32 qh for element j.
        d = f16_to_f64(blk[:, 0:2].copy().view("<u2"))
        off = 2 if tname == "Q5_0" else 4
        m = f16_to_f64(blk[:, 2:4].copy().view("<u2")) if tname != "Q5_0" else -16.0 * d
        qs = blk[:, bb - 16:bb].astype(np.int64)
        q = np.concatenate([qs & 0xF, qs >> 4], axis=1)
        if tname != "Q4_1":
            qh = blk[:, off:off + 4].copy().view("<u4").astype(np.int64)  # [nb,1]
            q = q + ((qh >> np.arange(32)) & 1) * 16
        return (d * q + m).reshape(-1)
    if tname in ("Q4_K", "Q5_K"):
        d = f16_to_f64(blk[:, 0:2].copy().view("<u2"))           # [nb,1]
        dmin = f16_to_f64(blk[:, 2:4].copy().view("<u2"))
        sc, mn = _split_k_scales(blk[:, 4:16])                    # [nb,8]
        if tname == "Q4_K":
            qs = blk[:, 16:144].astype(np.int64).reshape(nb, 4, 32)
            qh = None
        else:
            qh = blk[:, 16:48].astype(np.int64)                   # [nb,32]
            qs = blk[:, 48:176].astype(np.int64).reshape(nb, 4, 32)
        # 256 values = 4 chunks of 64; chunk c uses bytes qs[c] (32 of them):
        # low nibbles -> sub-block 2c (values 64c..64c+31), high -> 2c+1.
        # Q5_K: the 5th bit of sub-block s is bit s of qh[l].
        q = np.empty((nb, 8, 32), np.int64)
        q[:, 0::2, :] = qs & 0xF
        q[:, 1::2, :] = qs >> 4
        if qh is not None:
            for s in range(8):
                q[:, s, :] += ((qh >> s) & 1) * 16
        scale = d * sc                                            # [nb,8]
        minv = dmin * mn
        y = scale[:, :, None] * q - minv[:, :, None]
        return y.reshape(-1)
    if tname == "Q6_K":
        ql = blk[:, 0:128].astype(np.int64).reshape(nb, 2, 64)
        qh = blk[:, 128:192].astype(np.int64).reshape(nb, 2, 32)
        sc = blk[:, 192:208].view(np.int8).astype(np.float64).reshape(nb, 2, 8)
        d = f16_to_f64(blk[:, 208:210].copy().view("<u2"))       # [nb,1]
        # each half (128 values) = 4 rows of 32: row r takes low/high nibble of
        # ql[0:32] / ql[32:64] and bits 2r..2r+1 of qh[l]; scale index = 2r + l//16.
        y = np.empty((nb, 2, 4, 32), np.float64)
        for r, (lo_off, shift) in enumerate([(0, 0), (32, 0), (0, 4), (32, 4)]):
            low = (ql[:, :, lo_off:lo_off + 32] >> shift) & 0xF
            high = (qh >> (2 * r)) & 3
            qv = (low | (high << 4)) - 32                        # [nb,2,32]
            s = np.repeat(sc[:, :, 2 * r:2 * r + 2], 16, axis=2)  # [nb,2,32]
            y[:, :, r, :] = d[:, :, None] * s * qv
        return y.reshape(-1)
    raise ValueError(f"dequantize: unsupported type {tname}")


def read_gguf_header(blob):
    """Parse the GGUF header: (metadata dict, [(name, ne, ggml type, offset)], data start)."""
    if blob[:4] != GGUF_MAGIC:
        raise ValueError("not a GGUF file")
    r = _Reader(blob)
    r.o = 4
    version = r.scalar("<I")
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version} not supported (2 or 3)")
    n_tensors = r.scalar("<Q")
    n_kv = r.scalar("<Q")
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        t = r.scalar("<I")
        meta[key] = r.value(t)
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        nd = r.scalar("<I")
        ne = [r.scalar("<Q") for _ in range(nd)]
        ttype = r.scalar("<I")
        off = r.scalar("<Q")
        infos.append((name, ne, ttype, off))
    align = int(meta.get("general.alignment", 32))
    return meta, infos, (r.o + align - 1) // align * align


def gguf_tensor_types(path):
    """{tensor name: ggml type name} without reading the data."""
    with open(path, "rb") as f:
        blob = f.read()
    _, infos, _ = read_gguf_header(blob)
    return {n: GGML_TYPES.get(t, (str(t),))[0] for n, _, t, _ in infos}


def read_gguf(path):
    """Return (metadata dict, {name: (ggml ne list, float64 ndarray in PyTorch order)})."""
    with open(path, "rb") as f:
        blob = f.read()
    meta, infos, data_start = read_gguf_header(blob)
    tensors = {}
    for name, ne, ttype, off in infos:
        if ttype not in GGML_TYPES:
            raise ValueError(f"{path}: tensor {name}: ggml type {ttype} not supported")
        tname, bs, bb = GGML_TYPES[ttype]
        n = int(np.prod(ne, dtype=np.int64))
        if ne[0] % bs:
            raise ValueError(f"{path}: tensor {name}: ne0={ne[0]} not a multiple of {bs}")
        nbytes = n // bs * bb
        start = data_start + off
        if start + nbytes > len(blob):
            raise ValueError(f"{path}: tensor {name}: data past end of file")
        vals = dequantize(blob[start:start + nbytes], tname, n)
        # ggml ne = (n0, n1, ...) with n0 fastest == C-order array of shape reversed(ne)
        tensors[name] = (ne, vals.reshape(tuple(reversed(ne))))
    return meta, tensors


# ----------------------------------------------------------------------------
# Normalised configuration + weights
# ----------------------------------------------------------------------------


class Model:
    """arch, cfg (normalised dict), W (HF names, PyTorch [out, in] layout)."""

    def __init__(self, arch, cfg, W):
        self.arch, self.cfg, self.W = arch, cfg, W


def _hf_rope_scaling(rs):
    if not rs:
        return None
    t = rs.get("type", rs.get("rope_type"))
    if t in (None, "default"):
        return None
    out = {"type": t, "factor": float(rs.get("factor", 1.0))}
    if t == "yarn":
        out.update(
            orig_ctx=int(rs["original_max_position_embeddings"]),
            beta_fast=float(rs.get("beta_fast", 32)),
            beta_slow=float(rs.get("beta_slow", 1)),
            mscale=float(rs.get("mscale", 1.0)),
            mscale_all_dim=float(rs.get("mscale_all_dim", 0.0)),
        )
    elif t != "linear":
        raise ValueError(f"rope_scaling type {t!r} not supported by the reference")
    return out


def model_from_hf(path):
    c, T = load_hf_dir(path)
    if "kv_lora_rank" in c:                 # MLA config (DeepseekV2/V3, any model_type spelling)
        arch = "deepseek2"
        topk_method = c.get("topk_method", "greedy")
        if topk_method == "gready":          # remote-code default typo
            topk_method = "greedy"
        cfg = dict(
            vocab=c["vocab_size"], hidden=c["hidden_size"], n_layer=c["num_hidden_layers"],
            n_head=c["num_attention_heads"], eps=float(c.get("rms_norm_eps", 1e-6)),
            rope_theta=float(c.get("rope_theta", 10000.0)),
            rope_scaling=_hf_rope_scaling(c.get("rope_scaling")),
            q_lora_rank=c.get("q_lora_rank"), kv_lora_rank=c["kv_lora_rank"],
            d_nope=c["qk_nope_head_dim"], d_rope=c["qk_rope_head_dim"], d_v=c["v_head_dim"],
            first_k_dense=c.get("first_k_dense_replace", 0), moe_layer_freq=c.get("moe_layer_freq", 1),
            n_routed=c.get("n_routed_experts"), n_shared=c.get("n_shared_experts") or 0,
            top_k=c.get("num_experts_per_tok"), n_group=c.get("n_group") or 1,
            topk_group=c.get("topk_group") or 1, topk_method=topk_method,
            scoring_func=c.get("scoring_func", "softmax"),
            norm_topk_prob=bool(c.get("norm_topk_prob", False)),
            routed_scaling_factor=float(c.get("routed_scaling_factor") or 1.0),
        )
    else:
        arch = "llama"
        nh = c["num_attention_heads"]
        cfg = dict(
            vocab=c["vocab_size"], hidden=c["hidden_size"], n_layer=c["num_hidden_layers"],
            n_head=nh, n_head_kv=c.get("num_key_value_heads") or nh,
            head_dim=c.get("head_dim") or c["hidden_size"] // nh,
            eps=float(c.get("rms_norm_eps", 1e-6)), rope_theta=float(c.get("rope_theta", 10000.0)),
            rope_scaling=_hf_rope_scaling(c.get("rope_scaling")),
        )
    if "lm_head.weight" not in T:
        T["lm_head.weight"] = T["model.embed_tokens.weight"]   # tied embeddings
    return Model(arch, cfg, T)


# GGUF tensor name -> HF name (per layer suffixes); shapes are converted by reversal
_GGUF_COMMON = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_q_a.weight": "self_attn.q_a_proj.weight",
    "attn_q_a_norm.weight": "self_attn.q_a_layernorm.weight",
    "attn_q_b.weight": "self_attn.q_b_proj.weight",
    "attn_kv_a_mqa.weight": "self_attn.kv_a_proj_with_mqa.weight",
    "attn_kv_a_norm.weight": "self_attn.kv_a_layernorm.weight",
    "attn_kv_b.weight": "self_attn.kv_b_proj.weight",       # legacy unsplit layout
    "ffn_gate_inp.weight": "mlp.gate.weight",
    "exp_probs_b.bias": "mlp.gate.e_score_correction_bias",
    "ffn_gate_shexp.weight": "mlp.shared_experts.gate_proj.weight",
    "ffn_up_shexp.weight": "mlp.shared_experts.up_proj.weight",
    "ffn_down_shexp.weight": "mlp.shared_experts.down_proj.weight",
}


def _unpermute_llama_qk(w, n_head):
    """Undo llama.cpp's converter permutation of q/k rows.

    The converter maps HF rows (rotate_half pairs (i, i+d/2)) to interleaved order so
    that NORM rope (pairs (2i, 2i+1)) applies: new = w.reshape(nh, 2, d/2, in)
    .swapaxes(1, 2). We invert it and keep one rope code path (rotate_half on HF order);
    a row permutation is exact, so nothing numeric is lost."""
    out, inp = w.shape
    d = out // n_head
    return w.reshape(n_head, d // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)


def model_from_gguf(path):
    meta, T = read_gguf(path)
    arch = meta.get("general.architecture")
    if arch not in ("deepseek2", "llama"):
        raise ValueError(f"{path}: architecture {arch!r} not supported by the reference")
    p = arch + "."

    def g(key, default=None):
        return meta.get(p + key, default)

    W = {}
    n_layer = int(g("block_count"))
    W["model.embed_tokens.weight"] = T["token_embd.weight"][1]
    W["model.norm.weight"] = T["output_norm.weight"][1]
    W["lm_head.weight"] = (T.get("output.weight") or T["token_embd.weight"])[1]
    vocab, hidden = W["model.embed_tokens.weight"].shape
    n_head = int(g("attention.head_count"))
    eps = float(g("attention.layer_norm_rms_epsilon", 1e-6))
    theta = float(g("rope.freq_base", 10000.0))
    st = g("rope.scaling.type")
    rs = None
    if st == "linear":
        rs = {"type": "linear", "factor": float(g("rope.scaling.factor"))}
    elif st == "yarn":
        # deepseek2: yarn_log_multiplier is stored as 0.1*mscale_all_dim (spec §3.5,
        # pitfall 4); llama.cpp sets mscale := mscale_all_dim for deepseek2, so the
        # cos/sin factor is 1 and the softmax scale carries m².
        mad = float(g("rope.scaling.yarn_log_multiplier", 0.0)) / 0.1
        rs = {"type": "yarn", "factor": float(g("rope.scaling.factor")),
              "orig_ctx": int(g("rope.scaling.original_context_length")),
              "beta_fast": float(g("rope.scaling.yarn_beta_fast", 32.0)),
              "beta_slow": float(g("rope.scaling.yarn_beta_slow", 1.0)),
              "mscale": mad, "mscale_all_dim": mad}
    elif st not in (None, "none"):
        raise ValueError(f"{path}: rope.scaling.type {st!r} not supported")

    for l in range(n_layer):
        pre = f"blk.{l}."
        hp = f"model.layers.{l}."
        for gname, hname in _GGUF_COMMON.items():
            if pre + gname in T:
                W[hp + hname] = T[pre + gname][1]
        # routed experts are stacked: ggml {in, out, E} == numpy [E, out, in]
        for part in ("gate", "up", "down"):
            key = pre + f"ffn_{part}_exps.weight"
            if key in T:
                stack = T[key][1]
                for e in range(stack.shape[0]):
                    W[hp + f"mlp.experts.{e}.{part}_proj.weight"] = stack[e]

    if arch == "llama":
        n_head_kv = int(g("attention.head_count_kv", n_head))
        cfg = dict(vocab=vocab, hidden=hidden, n_layer=n_layer, n_head=n_head, n_head_kv=n_head_kv,
                   head_dim=int(g("attention.key_length", hidden // n_head)), eps=eps,
                   rope_theta=theta, rope_scaling=rs)
        for l in range(n_layer):
            hp = f"model.layers.{l}.self_attn."
            W[hp + "q_proj.weight"] = _unpermute_llama_qk(W[hp + "q_proj.weight"], n_head)
            W[hp + "k_proj.weight"] = _unpermute_llama_qk(W[hp + "k_proj.weight"], n_head_kv)
        return Model(arch, cfg, W)

    # ---- deepseek2 ----
    d_rope = int(g("rope.dimension_count"))
    kv_lora_rank = int(g("attention.kv_lora_rank"))
    kb0 = T.get("blk.0.attn_k_b.weight")
    if kb0 is not None:
        # split MLA layout: attn_k_b ggml {d_nope, d_c, nh} -> numpy [nh, d_c, d_nope]
        # (W_UK transposed per head); attn_v_b {d_c, d_v, nh} -> [nh, d_v, d_c] (W_UV).
        d_nope = kb0[0][0]
        d_v = T["blk.0.attn_v_b.weight"][0][1]
        for l in range(n_layer):
            kb = T[f"blk.{l}.attn_k_b.weight"][1]
            vb = T[f"blk.{l}.attn_v_b.weight"][1]
            nh = kb.shape[0]
            # rebuild kv_b_proj [nh*(d_nope+d_v), d_c]: per head K rows then V rows
            kvb = np.concatenate([kb.transpose(0, 2, 1), vb], axis=1).reshape(nh * (d_nope + d_v), -1)
            W[f"model.layers.{l}.self_attn.kv_b_proj.weight"] = kvb
    else:
        # legacy: key_length = d_nope + d_rope, value_length = d_v
        d_nope = int(g("attention.key_length")) - d_rope
        d_v = int(g("attention.value_length"))
        if "blk.0.attn_kv_b.weight" not in T:
            raise ValueError(f"{path}: neither attn_k_b/attn_v_b nor attn_kv_b present")
    qa = T.get("blk.0.attn_q_a.weight")
    n_routed = int(g("expert_count", 0)) or None
    gating = int(g("expert_gating_func", 1))          # 1 softmax, 2 sigmoid
    has_bias = "blk.%d.exp_probs_b.bias" % int(g("leading_dense_block_count", 0)) in T
    n_group = int(g("expert_group_count", 1) or 1)
    # GGUF carries no topk_method: infer the DeepSeek method from what the file holds.
    if has_bias or gating == 2:
        method = "noaux_tc"
    elif n_group > 1:
        method = "group_limited_greedy"
    else:
        method = "greedy"
    scale = float(g("expert_weights_scale", 1.0) or 1.0)   # 0/absent -> 1.0 (pitfall 7)
    cfg = dict(
        vocab=vocab, hidden=hidden, n_layer=n_layer, n_head=n_head, eps=eps, rope_theta=theta,
        rope_scaling=rs, q_lora_rank=(qa[0][1] if qa is not None else None),
        kv_lora_rank=kv_lora_rank, d_nope=d_nope, d_rope=d_rope, d_v=d_v,
        first_k_dense=int(g("leading_dense_block_count", 0)), moe_layer_freq=1,
        n_routed=n_routed, n_shared=int(g("expert_shared_count", 0)),
        top_k=int(g("expert_used_count", 0)), n_group=n_group,
        topk_group=int(g("expert_group_used_count", 1) or 1), topk_method=method,
        scoring_func="sigmoid" if gating == 2 else "softmax",
        norm_topk_prob=bool(g("expert_weights_norm", False)), routed_scaling_factor=scale,
    )
    return Model(arch, cfg, W)


def load_model(path):
    if os.path.isdir(path):
        return model_from_hf(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == GGUF_MAGIC:
        return model_from_gguf(path)
    raise ValueError(f"{path}: neither an HF directory nor a GGUF file")


# ----------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def swiglu(x, gate, up, down):
    return (silu(x @ gate.T) * (x @ up.T)) @ down.T


def softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def causal_attention(q, k, v, scale):
    """q [nh,T,dk], k [nh,T,dk], v [nh,T,dv] -> [T, nh*dv] (head-major concat)."""
    T = q.shape[1]
    s = np.einsum("htd,hsd->hts", q, k) * scale
    s = np.where(np.tril(np.ones((T, T), dtype=bool))[None], s, -np.inf)
    p = softmax(s, axis=-1)
    o = np.einsum("hts,hsd->htd", p, v)
    return o.transpose(1, 0, 2).reshape(T, -1)


# ---- YaRN (spec §3) ----------------------------------------------------------


def yarn_get_mscale(s, m):
    return 1.0 if s <= 1 else 0.1 * m * math.log(s) + 1.0


def yarn_inv_freq(d, base, rs):
    """DeepSeek YaRN inv_freq for a rope part of width d (pairs i = 0..d/2-1)."""
    i = np.arange(0, d, 2, dtype=np.float64) / d
    extra = base ** -i
    s = rs["factor"]
    L0 = rs["orig_ctx"]   # original_max_position_embeddings — never max_position_embeddings

    def corr_dim(n_rot):
        return d * math.log(L0 / (n_rot * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(corr_dim(rs["beta_fast"])), 0)
    high = min(math.ceil(corr_dim(rs["beta_slow"])), d - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(d // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    e = 1.0 - ramp                                     # extrapolation weight
    return extra * e + (extra / s) * (1.0 - e)


def rope_pairs_interleaved(x, pos, inv_freq, attn_factor=1.0):
    """DeepSeek MLA rope: pairs (2i, 2i+1). x [..., T, d], pos [T]."""
    ang = pos[:, None] * inv_freq[None, :]             # [T, d/2]
    c, s = np.cos(ang) * attn_factor, np.sin(ang) * attn_factor
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def rope_rotate_half(x, pos, inv_freq):
    """HF Llama rope: pairs (i, i + d/2) on HF-ordered rows. x [..., T, d]."""
    ang = pos[:, None] * inv_freq[None, :]
    c, s = np.cos(ang), np.sin(ang)
    h = x.shape[-1] // 2
    x0, x1 = x[..., :h], x[..., h:]
    return np.concatenate([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1)


# ---- MoE routing (spec §4.3/4.4) ----------------------------------------------


def _topk_idx(v, k):
    """Indices of the k largest values per row; ties -> lower index first.

    torch.topk leaves tie order unspecified; ties only occur here between experts
    masked to exactly 0.0, so we pick a deterministic rule and report it."""
    order = np.argsort(-v, axis=-1, kind="stable")
    return order[..., :k]


def route(x, gate_w, bias, cfg, group_score="max", notes=None):
    """Return (idx [T,k], weight [T,k]) per DeepSeek's MoEGate for the config."""
    logits = x @ gate_w.T                              # [T, E]
    E = logits.shape[-1]
    k = cfg["top_k"]
    method = cfg["topk_method"]
    if cfg["scoring_func"] == "sigmoid":
        scores = 1.0 / (1.0 + np.exp(-logits))
    else:
        scores = softmax(logits)
    if method == "greedy":
        choice = scores
    elif method in ("group_limited_greedy", "noaux_tc"):
        ng, kg = cfg["n_group"], cfg["topk_group"]
        choice = scores + bias[None, :] if (method == "noaux_tc" and bias is not None) else scores
        grp = choice.reshape(len(x), ng, E // ng)
        # V2 (group_limited_greedy): group score = max; V3 (noaux_tc): sum of top-2.
        # llama.cpp uses top-2 sum for both; group_score="top2sum" reproduces that.
        if method == "noaux_tc" or group_score == "top2sum":
            gs = np.sort(grp, axis=-1)[..., -2:].sum(-1)
        else:
            gs = grp.max(-1)
        keep = _topk_idx(gs, kg)                       # [T, kg]
        gmask = np.zeros((len(x), ng), dtype=bool)
        np.put_along_axis(gmask, keep, True, axis=-1)
        emask = np.repeat(gmask, E // ng, axis=-1)
        choice = np.where(emask, choice, 0.0)          # HF/remote masked_fill(…, 0.0)
    else:
        raise ValueError(f"topk_method {method!r} not supported")
    idx = _topk_idx(choice, k)
    if notes is not None:
        srt = np.sort(choice, axis=-1)[:, ::-1]
        if k < E and np.any(srt[:, k - 1] == srt[:, k]):
            notes.append("tie at the top-k boundary (lowest index chosen)")
    w = np.take_along_axis(scores, idx, axis=-1)       # always the UNBIASED scores
    norm, rsf = cfg["norm_topk_prob"], cfg["routed_scaling_factor"]
    if method == "noaux_tc":
        # V3 rule: optional renormalisation, then always scale
        if norm:
            w = w / (w.sum(-1, keepdims=True) + 1e-20)
        w = w * rsf
    else:
        # V2 remote-code rule: renormalise (k > 1) OR scale, never both
        if k > 1 and norm:
            w = w / (w.sum(-1, keepdims=True) + 1e-20)
        else:
            w = w * rsf
    return idx, w


def moe(x, W, hp, cfg, group_score="max", notes=None):
    idx, w = route(x, W[hp + "mlp.gate.weight"], W.get(hp + "mlp.gate.e_score_correction_bias"),
                   cfg, group_score, notes)
    y = np.zeros_like(x)
    for e in np.unique(idx):
        rows, slot = np.nonzero(idx == e)
        ep = hp + f"mlp.experts.{e}."
        out = swiglu(x[rows], W[ep + "gate_proj.weight"], W[ep + "up_proj.weight"], W[ep + "down_proj.weight"])
        y[rows] += w[rows, slot][:, None] * out
    if cfg["n_shared"]:
        sp = hp + "mlp.shared_experts."
        y = y + swiglu(x, W[sp + "gate_proj.weight"], W[sp + "up_proj.weight"], W[sp + "down_proj.weight"])
    return y


# ----------------------------------------------------------------------------
# Forward passes
# ----------------------------------------------------------------------------


def forward_deepseek2(m, tokens, group_score="max", notes=None):
    c, W = m.cfg, m.W
    T = len(tokens)
    pos = np.arange(T, dtype=np.float64)
    nh, dn, dr, dv, dc = c["n_head"], c["d_nope"], c["d_rope"], c["d_v"], c["kv_lora_rank"]
    dqk = dn + dr
    rs = c["rope_scaling"]
    scale = dqk ** -0.5
    attn_factor = 1.0
    if rs and rs["type"] == "yarn":
        inv_freq = yarn_inv_freq(dr, c["rope_theta"], rs)
        # cos/sin factor A = mscale(s, mscale) / mscale(s, mscale_all_dim) (=1 for all releases)
        attn_factor = yarn_get_mscale(rs["factor"], rs["mscale"]) / yarn_get_mscale(rs["factor"], rs["mscale_all_dim"])
        if rs["mscale_all_dim"]:
            mm = yarn_get_mscale(rs["factor"], rs["mscale_all_dim"])
            scale = scale * mm * mm                     # softmax scale m² (spec §3.4)
    else:
        if rs and rs["type"] == "linear":
            pos = pos / rs["factor"]
        inv_freq = c["rope_theta"] ** -(np.arange(0, dr, 2, dtype=np.float64) / dr)
    eps = c["eps"]
    h = W["model.embed_tokens.weight"][np.asarray(tokens)]
    for l in range(c["n_layer"]):
        hp = f"model.layers.{l}."
        ap = hp + "self_attn."
        a = rms_norm(h, W[hp + "input_layernorm.weight"], eps)
        if c["q_lora_rank"]:
            qa = rms_norm(a @ W[ap + "q_a_proj.weight"].T, W[ap + "q_a_layernorm.weight"], eps)
            q = qa @ W[ap + "q_b_proj.weight"].T
        else:
            q = a @ W[ap + "q_proj.weight"].T
        q = q.reshape(T, nh, dqk).transpose(1, 0, 2)      # [nh, T, dqk]
        ckv = a @ W[ap + "kv_a_proj_with_mqa.weight"].T   # [T, dc + dr]
        ckv_n = rms_norm(ckv[:, :dc], W[ap + "kv_a_layernorm.weight"], eps)   # norm on c_kv only
        k_pe = rope_pairs_interleaved(ckv[:, dc:], pos, inv_freq, attn_factor)  # [T, dr] shared
        kv = (ckv_n @ W[ap + "kv_b_proj.weight"].T).reshape(T, nh, dn + dv).transpose(1, 0, 2)
        k_nope, v = kv[..., :dn], kv[..., dn:]
        q_pe = rope_pairs_interleaved(q[..., dn:], pos, inv_freq, attn_factor)
        Q = np.concatenate([q[..., :dn], q_pe], axis=-1)
        K = np.concatenate([k_nope, np.broadcast_to(k_pe, (nh, T, dr))], axis=-1)
        o = causal_attention(Q, K, v, scale)
        h = h + o @ W[ap + "o_proj.weight"].T
        b = rms_norm(h, W[hp + "post_attention_layernorm.weight"], eps)
        is_moe = (c["n_routed"] and l >= c["first_k_dense"] and l % c["moe_layer_freq"] == 0)
        if is_moe:
            h = h + moe(b, W, hp, c, group_score, notes)
        else:
            h = h + swiglu(b, W[hp + "mlp.gate_proj.weight"], W[hp + "mlp.up_proj.weight"], W[hp + "mlp.down_proj.weight"])
    h = rms_norm(h, W["model.norm.weight"], eps)
    return h @ W["lm_head.weight"].T


def forward_llama(m, tokens):
    c, W = m.cfg, m.W
    T = len(tokens)
    nh, nkv, hd = c["n_head"], c["n_head_kv"], c["head_dim"]
    pos = np.arange(T, dtype=np.float64)
    rs = c["rope_scaling"]
    if rs and rs["type"] == "linear":
        pos = pos / rs["factor"]                          # linear scaling: positions / factor
    elif rs:
        raise ValueError(f"llama: rope scaling {rs['type']!r} not supported")
    inv_freq = c["rope_theta"] ** -(np.arange(0, hd, 2, dtype=np.float64) / hd)
    eps = c["eps"]
    h = W["model.embed_tokens.weight"][np.asarray(tokens)]
    for l in range(c["n_layer"]):
        hp = f"model.layers.{l}."
        ap = hp + "self_attn."
        a = rms_norm(h, W[hp + "input_layernorm.weight"], eps)
        q = (a @ W[ap + "q_proj.weight"].T).reshape(T, nh, hd).transpose(1, 0, 2)
        k = (a @ W[ap + "k_proj.weight"].T).reshape(T, nkv, hd).transpose(1, 0, 2)
        v = (a @ W[ap + "v_proj.weight"].T).reshape(T, nkv, hd).transpose(1, 0, 2)
        q = rope_rotate_half(q, pos, inv_freq)
        k = rope_rotate_half(k, pos, inv_freq)
        rep = nh // nkv                                   # GQA: head h uses kv head h // rep
        k = np.repeat(k, rep, axis=0)
        v = np.repeat(v, rep, axis=0)
        o = causal_attention(q, k, v, hd ** -0.5)
        h = h + o @ W[ap + "o_proj.weight"].T
        b = rms_norm(h, W[hp + "post_attention_layernorm.weight"], eps)
        h = h + swiglu(b, W[hp + "mlp.gate_proj.weight"], W[hp + "mlp.up_proj.weight"], W[hp + "mlp.down_proj.weight"])
    h = rms_norm(h, W["model.norm.weight"], eps)
    return h @ W["lm_head.weight"].T


def forward(m, tokens, group_score="max", notes=None):
    """logits [T, vocab] (float64) for the token ids, one causal prefill."""
    if m.arch == "deepseek2":
        return forward_deepseek2(m, tokens, group_score, notes)
    return forward_llama(m, tokens)


# ----------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------


def top_k_list(row, k):
    idx = np.argsort(-row, kind="stable")[:k]
    return [[int(i), float(row[i])] for i in idx]


def main(argv=None):
    ap = argparse.ArgumentParser(description="independent numpy reference forward pass")
    ap.add_argument("model", help="HF directory or .gguf file")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--full", action="store_true", help="also print all logits")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--group-score", choices=["max", "top2sum"], default="max",
                    help="group score for group_limited_greedy (DeepSeek-V2: max; llama.cpp: top2sum)")
    args = ap.parse_args(argv)
    tokens = [int(t) for t in args.tokens.split(",") if t.strip()]
    m = load_model(args.model)
    for t in tokens:
        if not 0 <= t < m.cfg["vocab"]:
            sys.exit(f"lode_ref: token {t} out of range (vocab {m.cfg['vocab']})")
    notes = []
    logits = forward(m, tokens, args.group_score, notes)
    for n in sorted(set(notes)):
        print(f"lode_ref: note: {n}", file=sys.stderr)
    out = sys.stdout
    for i, row in enumerate(logits):
        obj = {"pos": i, "top": top_k_list(row, args.top)}
        if args.full:
            obj["logits"] = [float(v) for v in row]
        out.write(json.dumps(obj) + "\n")


if __name__ == "__main__":
    main()
