"""Hand-made tiny models for checking tests/ref/lode_ref.py without lode.

Independent of lode on purpose: our own safetensors / GGUF writers, random weights
in numpy, and a converter that follows llama.cpp's convert_hf_to_gguf semantics
(spec §5): deepseek2 kv_b_proj split into attn_k_b (transposed per head) and
attn_v_b, or kept as legacy attn_kv_b; llama q/k rows permuted into NORM-rope order;
experts stacked; yarn_log_multiplier = 0.1*mscale_all_dim.
"""

import json
import os
import struct

import numpy as np

# ---------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------


def ds2_config(**over):
    """A Lite-shaped DeepSeek-V2 config (spec §10), HF keys."""
    c = {
        "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
        "vocab_size": 300, "hidden_size": 64, "intermediate_size": 96,
        "moe_intermediate_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4,
        "num_key_value_heads": 4, "q_lora_rank": None, "kv_lora_rank": 32,
        "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
        "first_k_dense_replace": 1, "moe_layer_freq": 1, "n_routed_experts": 8,
        "n_shared_experts": 1, "num_experts_per_tok": 2, "n_group": 1, "topk_group": 1,
        "topk_method": "greedy", "scoring_func": "softmax", "norm_topk_prob": False,
        "routed_scaling_factor": 1.0, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "max_position_embeddings": 128, "tie_word_embeddings": False,
        "rope_scaling": {"type": "yarn", "factor": 8.0, "original_max_position_embeddings": 16,
                         "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
        "bos_token_id": 0, "eos_token_id": 1, "torch_dtype": "float32",
    }
    c.update(over)
    return c


def llama_config(**over):
    c = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 300, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "max_position_embeddings": 256, "rope_scaling": None,
        "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 1, "torch_dtype": "float32",
    }
    c.update(over)
    return c


# ---------------------------------------------------------------------------
# random weights (HF names, PyTorch [out, in]); float32 values
# ---------------------------------------------------------------------------


def _rand(rng, *shape, scale=None):
    fan_in = shape[-1]
    s = scale if scale is not None else 1.0 / np.sqrt(fan_in)
    return (rng.standard_normal(shape) * s).astype(np.float32)


def _norm_w(rng, n):
    return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)


def ds2_weights(c, seed=0):
    rng = np.random.default_rng(seed)
    H, nh = c["hidden_size"], c["num_attention_heads"]
    dn, dr, dv, dc = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
    W = {"model.embed_tokens.weight": _rand(rng, c["vocab_size"], H, scale=1.0),
         "model.norm.weight": _norm_w(rng, H),
         "lm_head.weight": _rand(rng, c["vocab_size"], H)}
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        W[p + "input_layernorm.weight"] = _norm_w(rng, H)
        W[p + "post_attention_layernorm.weight"] = _norm_w(rng, H)
        a = p + "self_attn."
        if c["q_lora_rank"]:
            W[a + "q_a_proj.weight"] = _rand(rng, c["q_lora_rank"], H)
            W[a + "q_a_layernorm.weight"] = _norm_w(rng, c["q_lora_rank"])
            W[a + "q_b_proj.weight"] = _rand(rng, nh * (dn + dr), c["q_lora_rank"])
        else:
            # larger q so that rope/scale errors move logits visibly
            W[a + "q_proj.weight"] = _rand(rng, nh * (dn + dr), H, scale=2.0 / np.sqrt(H))
        W[a + "kv_a_proj_with_mqa.weight"] = _rand(rng, dc + dr, H, scale=2.0 / np.sqrt(H))
        W[a + "kv_a_layernorm.weight"] = _norm_w(rng, dc)
        W[a + "kv_b_proj.weight"] = _rand(rng, nh * (dn + dv), dc)
        W[a + "o_proj.weight"] = _rand(rng, H, nh * dv)
        m = p + "mlp."
        if l < c["first_k_dense_replace"]:
            I = c["intermediate_size"]
            W[m + "gate_proj.weight"] = _rand(rng, I, H)
            W[m + "up_proj.weight"] = _rand(rng, I, H)
            W[m + "down_proj.weight"] = _rand(rng, H, I)
        else:
            E, I = c["n_routed_experts"], c["moe_intermediate_size"]
            W[m + "gate.weight"] = _rand(rng, E, H, scale=3.0 / np.sqrt(H))
            if c["topk_method"] == "noaux_tc":
                W[m + "gate.e_score_correction_bias"] = (0.3 * rng.standard_normal(E)).astype(np.float32)
            for e in range(E):
                W[m + f"experts.{e}.gate_proj.weight"] = _rand(rng, I, H)
                W[m + f"experts.{e}.up_proj.weight"] = _rand(rng, I, H)
                W[m + f"experts.{e}.down_proj.weight"] = _rand(rng, H, I)
            if c["n_shared_experts"]:
                Is = I * c["n_shared_experts"]
                W[m + "shared_experts.gate_proj.weight"] = _rand(rng, Is, H)
                W[m + "shared_experts.up_proj.weight"] = _rand(rng, Is, H)
                W[m + "shared_experts.down_proj.weight"] = _rand(rng, H, Is)
    return W


def llama_weights(c, seed=0):
    rng = np.random.default_rng(seed)
    H, nh = c["hidden_size"], c["num_attention_heads"]
    nkv = c["num_key_value_heads"]
    hd = H // nh
    I = c["intermediate_size"]
    W = {"model.embed_tokens.weight": _rand(rng, c["vocab_size"], H, scale=1.0),
         "model.norm.weight": _norm_w(rng, H),
         "lm_head.weight": _rand(rng, c["vocab_size"], H)}
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        W[p + "input_layernorm.weight"] = _norm_w(rng, H)
        W[p + "post_attention_layernorm.weight"] = _norm_w(rng, H)
        W[p + "self_attn.q_proj.weight"] = _rand(rng, nh * hd, H, scale=2.0 / np.sqrt(H))
        W[p + "self_attn.k_proj.weight"] = _rand(rng, nkv * hd, H, scale=2.0 / np.sqrt(H))
        W[p + "self_attn.v_proj.weight"] = _rand(rng, nkv * hd, H)
        W[p + "self_attn.o_proj.weight"] = _rand(rng, H, nh * hd)
        W[p + "mlp.gate_proj.weight"] = _rand(rng, I, H)
        W[p + "mlp.up_proj.weight"] = _rand(rng, I, H)
        W[p + "mlp.down_proj.weight"] = _rand(rng, H, I)
    return W


# ---------------------------------------------------------------------------
# safetensors writer
# ---------------------------------------------------------------------------


def _bf16_bits(a):
    """float32 -> bf16 bits, round-to-nearest-even."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def write_safetensors(path, tensors, dtype="F32"):
    header, chunks, off = {}, [], 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name], np.float32)
        if dtype == "F32":
            raw = a.astype("<f4").tobytes()
        elif dtype == "F16":
            raw = a.astype("<f2").tobytes()
        elif dtype == "BF16":
            raw = _bf16_bits(a).astype("<u2").tobytes()
        else:
            raise ValueError(dtype)
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header).encode()
    hj += b" " * (-len(hj) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for c in chunks:
            f.write(c)


def write_hf_dir(path, config, W, dtype="F32", shards=1):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    names = sorted(W)
    if shards == 1:
        write_safetensors(os.path.join(path, "model.safetensors"), W, dtype)
        return
    wm = {}
    for s in range(shards):
        fn = f"model-{s + 1:05d}-of-{shards:06d}.safetensors"
        part = {n: W[n] for n in names[s::shards]}
        write_safetensors(os.path.join(path, fn), part, dtype)
        wm.update({n: fn for n in part})
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": wm}, f)


# ---------------------------------------------------------------------------
# GGML quantisers (our own, from the block layouts) — enough to produce valid
# blocks; they need not be llama.cpp's optimal quantisers.
# ---------------------------------------------------------------------------


def _f16_bits(x):
    return np.asarray(x, np.float32).astype(np.float16).view(np.uint16)


def quant_q8_0(a):
    x = np.asarray(a, np.float32).reshape(-1, 32)
    amax = np.abs(x).max(1)
    d = (amax / 127.0).astype(np.float16).astype(np.float32)
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0)
    q = np.clip(np.rint(x * inv[:, None]), -127, 127).astype(np.int8)
    out = np.zeros((x.shape[0], 34), np.uint8)
    out[:, 0:2] = _f16_bits(d).reshape(-1, 1).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out.tobytes()


def quant_q4_0(a):
    x = np.asarray(a, np.float32).reshape(-1, 32)
    idx = np.abs(x).argmax(1)
    mx = x[np.arange(len(x)), idx]
    d = (mx / -8.0).astype(np.float16).astype(np.float32)
    inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0)
    q = np.clip(np.rint(x * inv[:, None]) + 8, 0, 15).astype(np.uint8)
    out = np.zeros((x.shape[0], 18), np.uint8)
    out[:, 0:2] = _f16_bits(d).reshape(-1, 1).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
    return out.tobytes()


def random_kquant_blocks(rng, n_elems, tname, d_scale=1e-3):
    """Random but valid K-quant blocks (random quants/scales, small finite d/dmin).

    Used to test dequantisation against llama.cpp: any bit pattern is a legal block,
    so random bytes exercise every bit position of the layout."""
    nb = n_elems // 256
    size = {"Q4_K": 144, "Q5_K": 176, "Q6_K": 210}[tname]
    blk = rng.integers(0, 256, size=(nb, size), dtype=np.uint8)

    def put_f16(col, vals):
        blk[:, col:col + 2] = _f16_bits(vals).reshape(-1, 1).view(np.uint8).reshape(-1, 2)

    if tname in ("Q4_K", "Q5_K"):
        put_f16(0, d_scale * (0.5 + rng.random(nb)))
        put_f16(2, d_scale * (0.5 + rng.random(nb)) * 4)
    else:
        put_f16(208, d_scale * (0.5 + rng.random(nb)) * 0.1)
    return blk.tobytes()


# ---------------------------------------------------------------------------
# GGUF writer
# ---------------------------------------------------------------------------

GT = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 8, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "BF16": 30}
_V_U32, _V_I32, _V_F32, _V_BOOL, _V_STR, _V_ARR = 4, 5, 6, 7, 8, 9


def _gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def _gval(v):
    """(type, bytes) for a python value: bool, int (u32), float (f32), str, list."""
    if isinstance(v, bool):
        return _V_BOOL, struct.pack("<?", v)
    if isinstance(v, int):
        return _V_U32, struct.pack("<I", v)
    if isinstance(v, float):
        return _V_F32, struct.pack("<f", v)
    if isinstance(v, str):
        return _V_STR, _gstr(v)
    if isinstance(v, (list, tuple)):
        if not v or isinstance(v[0], str):
            return _V_ARR, struct.pack("<IQ", _V_STR, len(v)) + b"".join(_gstr(s) for s in v)
        if isinstance(v[0], int):
            return _V_ARR, struct.pack("<IQ", _V_I32, len(v)) + np.asarray(v, "<i4").tobytes()
        return _V_ARR, struct.pack("<IQ", _V_F32, len(v)) + np.asarray(v, "<f4").tobytes()
    raise TypeError(type(v))


def write_gguf(path, meta, tensors, align=32):
    """meta: dict key -> python value; tensors: list of (name, ne list (ggml order),
    type name, raw bytes)."""
    out = bytearray(b"GGUF")
    out += struct.pack("<IQQ", 3, len(tensors), len(meta))
    for k, v in meta.items():
        t, b = _gval(v)
        out += _gstr(k) + struct.pack("<I", t) + b
    off = 0
    offs = []
    for name, ne, tname, raw in tensors:
        offs.append(off)
        out += _gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", GT[tname], off)
        off += len(raw) + (-len(raw) % align)
    out += b"\0" * (-len(out) % align)
    for (name, ne, tname, raw), o in zip(tensors, offs):
        out += raw + b"\0" * (-len(raw) % align)
    with open(path, "wb") as f:
        f.write(out)


def _byte_tokens():
    """GPT-2 byte-level unicode strings for bytes 0..255 (so llama.cpp's BPE vocab
    loads: it looks up the newline token)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    m = dict(zip(bs, cs))
    return [chr(m[b]) for b in range(256)]


def tokenizer_meta(vocab):
    toks = _byte_tokens() + [f"<x{i}>" for i in range(256, vocab)]
    toks = toks[:vocab]
    return {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "default",
            "tokenizer.ggml.tokens": toks, "tokenizer.ggml.token_type": [1] * vocab,
            "tokenizer.ggml.merges": [], "tokenizer.ggml.bos_token_id": 0,
            "tokenizer.ggml.eos_token_id": 1, "tokenizer.ggml.add_bos_token": False}


def _tensor(name, a, tname="F32"):
    a = np.asarray(a, np.float32)
    ne = list(reversed(a.shape))
    if tname == "F32":
        raw = a.astype("<f4").tobytes()
    elif tname == "F16":
        raw = a.astype("<f2").tobytes()
    elif tname == "BF16":
        raw = _bf16_bits(a).astype("<u2").tobytes()
    elif tname == "Q8_0":
        raw = quant_q8_0(a)
    elif tname == "Q4_0":
        raw = quant_q4_0(a)
    else:
        raise ValueError(tname)
    return (name, ne, tname, raw)


def ds2_to_gguf(path, c, W, split=True, wtype="F32", kb_type="F32"):
    """Convert like llama.cpp's DeepseekV2Model: weight matrices in wtype (norms,
    router and bias always F32), kv_b split (or legacy) in kb_type."""
    nh, dn, dr, dv, dc = (c["num_attention_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"],
                          c["v_head_dim"], c["kv_lora_rank"])
    rs = c.get("rope_scaling") or {}
    a = "deepseek2."
    meta = {"general.architecture": "deepseek2", "general.name": "ref-tiny",
            a + "block_count": c["num_hidden_layers"], a + "context_length": c["max_position_embeddings"],
            a + "embedding_length": c["hidden_size"], a + "feed_forward_length": c["intermediate_size"],
            a + "attention.head_count": nh,
            a + "attention.head_count_kv": 1 if split else nh,
            a + "rope.freq_base": float(c["rope_theta"]),
            a + "attention.layer_norm_rms_epsilon": float(c["rms_norm_eps"]),
            a + "expert_used_count": c["num_experts_per_tok"],
            a + "leading_dense_block_count": c["first_k_dense_replace"],
            a + "vocab_size": c["vocab_size"],
            a + "attention.kv_lora_rank": dc,
            a + "attention.key_length": (dc + dr) if split else (dn + dr),
            a + "attention.value_length": dc if split else dv,
            a + "expert_feed_forward_length": c["moe_intermediate_size"],
            a + "expert_count": c["n_routed_experts"],
            a + "expert_shared_count": c["n_shared_experts"],
            a + "expert_weights_scale": float(c["routed_scaling_factor"]),
            a + "expert_weights_norm": bool(c["norm_topk_prob"]),
            a + "expert_gating_func": 2 if c["scoring_func"] == "sigmoid" else 1,
            a + "rope.dimension_count": dr}
    if split:
        meta[a + "attention.key_length_mla"] = dn + dr
        meta[a + "attention.value_length_mla"] = dv
    # llama.cpp's loader reads q_lora_rank unless n_layer == 27 ("is_lite", spec
    # pitfall 19); writing 0 for a q_proj model keeps tiny Lite-shaped files loadable.
    meta[a + "attention.q_lora_rank"] = c["q_lora_rank"] or 0
    if c["n_group"] > 1:
        meta[a + "expert_group_count"] = c["n_group"]
        meta[a + "expert_group_used_count"] = c["topk_group"]
    if rs.get("type") == "yarn":
        meta[a + "rope.scaling.type"] = "yarn"
        meta[a + "rope.scaling.factor"] = float(rs["factor"])
        meta[a + "rope.scaling.original_context_length"] = rs["original_max_position_embeddings"]
        meta[a + "rope.scaling.yarn_log_multiplier"] = 0.1 * float(rs["mscale_all_dim"])
    meta.update(tokenizer_meta(c["vocab_size"]))
    T = [_tensor("token_embd.weight", W["model.embed_tokens.weight"], wtype),
         _tensor("output_norm.weight", W["model.norm.weight"]),
         _tensor("output.weight", W["lm_head.weight"], wtype)]
    names = {"input_layernorm.weight": ("attn_norm.weight", "F32"),
             "post_attention_layernorm.weight": ("ffn_norm.weight", "F32"),
             "self_attn.q_proj.weight": ("attn_q.weight", wtype),
             "self_attn.q_a_proj.weight": ("attn_q_a.weight", wtype),
             "self_attn.q_a_layernorm.weight": ("attn_q_a_norm.weight", "F32"),
             "self_attn.q_b_proj.weight": ("attn_q_b.weight", wtype),
             "self_attn.kv_a_proj_with_mqa.weight": ("attn_kv_a_mqa.weight", wtype),
             "self_attn.kv_a_layernorm.weight": ("attn_kv_a_norm.weight", "F32"),
             "self_attn.o_proj.weight": ("attn_output.weight", wtype),
             "mlp.gate_proj.weight": ("ffn_gate.weight", wtype),
             "mlp.up_proj.weight": ("ffn_up.weight", wtype),
             "mlp.down_proj.weight": ("ffn_down.weight", wtype),
             "mlp.gate.weight": ("ffn_gate_inp.weight", "F32"),
             "mlp.gate.e_score_correction_bias": ("exp_probs_b.bias", "F32"),
             "mlp.shared_experts.gate_proj.weight": ("ffn_gate_shexp.weight", wtype),
             "mlp.shared_experts.up_proj.weight": ("ffn_up_shexp.weight", wtype),
             "mlp.shared_experts.down_proj.weight": ("ffn_down_shexp.weight", wtype)}
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        for hn, (gn, t) in names.items():
            if p + hn in W:
                T.append(_tensor(f"blk.{l}.{gn}", W[p + hn], t))
        kvb = W[p + "self_attn.kv_b_proj.weight"]
        if split:
            v = kvb.reshape(nh, dn + dv, dc)
            T.append(_tensor(f"blk.{l}.attn_k_b.weight", v[:, :dn, :].transpose(0, 2, 1), kb_type))
            T.append(_tensor(f"blk.{l}.attn_v_b.weight", v[:, dn:, :], kb_type))
        else:
            T.append(_tensor(f"blk.{l}.attn_kv_b.weight", kvb, kb_type))
        if p + "mlp.experts.0.gate_proj.weight" in W:
            E = c["n_routed_experts"]
            for part in ("gate", "up", "down"):
                st = np.stack([W[p + f"mlp.experts.{e}.{part}_proj.weight"] for e in range(E)])
                T.append(_tensor(f"blk.{l}.ffn_{part}_exps.weight", st, wtype))
    write_gguf(path, meta, T)


def permute_qk(w, n_head):
    """llama.cpp LlamaModel.permute: rotate_half rows -> interleaved (NORM rope)."""
    out, inp = w.shape
    return w.reshape(n_head, 2, out // n_head // 2, inp).swapaxes(1, 2).reshape(out, inp)


def llama_to_gguf(path, c, W, wtype="F32", raw_override=None):
    """raw_override: {gguf tensor name: (type name, raw bytes)} to inject e.g. random
    K-quant blocks."""
    nh, nkv = c["num_attention_heads"], c["num_key_value_heads"]
    a = "llama."
    meta = {"general.architecture": "llama", "general.name": "ref-tiny-llama",
            a + "block_count": c["num_hidden_layers"], a + "context_length": c["max_position_embeddings"],
            a + "embedding_length": c["hidden_size"], a + "feed_forward_length": c["intermediate_size"],
            a + "attention.head_count": nh, a + "attention.head_count_kv": nkv,
            a + "rope.freq_base": float(c["rope_theta"]),
            a + "attention.layer_norm_rms_epsilon": float(c["rms_norm_eps"]),
            a + "rope.dimension_count": c["hidden_size"] // nh, a + "vocab_size": c["vocab_size"]}
    rs = c.get("rope_scaling") or {}
    if rs.get("type") == "linear":
        meta[a + "rope.scaling.type"] = "linear"
        meta[a + "rope.scaling.factor"] = float(rs["factor"])
    meta.update(tokenizer_meta(c["vocab_size"]))
    T = [_tensor("token_embd.weight", W["model.embed_tokens.weight"], wtype),
         _tensor("output_norm.weight", W["model.norm.weight"]),
         _tensor("output.weight", W["lm_head.weight"], wtype)]
    names = {"input_layernorm.weight": ("attn_norm.weight", False),
             "post_attention_layernorm.weight": ("ffn_norm.weight", False),
             "self_attn.q_proj.weight": ("attn_q.weight", True),
             "self_attn.k_proj.weight": ("attn_k.weight", True),
             "self_attn.v_proj.weight": ("attn_v.weight", True),
             "self_attn.o_proj.weight": ("attn_output.weight", True),
             "mlp.gate_proj.weight": ("ffn_gate.weight", True),
             "mlp.up_proj.weight": ("ffn_up.weight", True),
             "mlp.down_proj.weight": ("ffn_down.weight", True)}
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        for hn, (gn, is_mat) in names.items():
            w = W[p + hn]
            if hn.startswith("self_attn.q_proj"):
                w = permute_qk(w, nh)
            elif hn.startswith("self_attn.k_proj"):
                w = permute_qk(w, nkv)
            T.append(_tensor(f"blk.{l}.{gn}", w, wtype if is_mat else "F32"))
    if raw_override:
        for i, t in enumerate(T):
            if t[0] in raw_override:
                tname, raw = raw_override[t[0]]
                T[i] = (t[0], t[1], tname, raw)
    write_gguf(path, meta, T)
