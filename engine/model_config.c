/*
 * model_config.c — read lode_config from an HF config.json (jansson) or from
 * GGUF metadata, with the defaults DeepSeek's remote code and llama.cpp use
 * when a key is absent (spec-model.md §1, §5.2, pitfalls 4, 6, 7, 19).
 */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "model_config.h"

static void cfg_defaults(lode_config *c) {
    memset(c, 0, sizeof *c);
    c->rms_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    c->rope_factor = 1.0f;
    c->yarn_beta_fast = 32.0f;
    c->yarn_beta_slow = 1.0f;
    c->moe_layer_freq = 1;
    c->n_group = 1;
    c->topk_group = 1;
    c->routed_scaling = 1.0f;
    c->bos_id = -1;
    c->eos_id = -1;
}

/* ---- HF config.json ------------------------------------------------- */
static int64_t jint(json_t *o, const char *k, int64_t def) {
    json_t *v = json_object_get(o, k);
    if (json_is_integer(v)) return json_integer_value(v);
    if (json_is_real(v)) return (int64_t)json_real_value(v);
    return def;
}
static double jnum(json_t *o, const char *k, double def) {
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : def;
}
static bool jbool(json_t *o, const char *k, bool def) {
    json_t *v = json_object_get(o, k);
    return json_is_boolean(v) ? json_is_true(v) : def;
}
static const char *jstr(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

lode_status lode__config_from_hf(const char *path, lode_config *c, lode_error *err) {
    cfg_defaults(c);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return lode_error_set(err, LODE_ERR_FORMAT, "%s: invalid JSON at line %d: %s", path, je.line, je.text);
    lode_status st = LODE_OK;
    if (!json_is_object(root)) {
        st = lode_error_set(err, LODE_ERR_FORMAT, "%s: expected a JSON object", path);
        goto done;
    }
    const char *mt = jstr(root, "model_type");
    const char *arch0 = NULL;
    json_t *archs = json_object_get(root, "architectures");
    if (json_is_array(archs) && json_array_size(archs) > 0) arch0 = json_string_value(json_array_get(archs, 0));
    bool ds = (mt && (!strcmp(mt, "deepseek_v2") || !strcmp(mt, "deepseek_v3") || !strcmp(mt, "deepseek"))) ||
              (arch0 && (strstr(arch0, "DeepseekV2") || strstr(arch0, "DeepseekV3") ||
                         !strcmp(arch0, "DeepseekForCausalLM")));
    bool llama = (mt && !strcmp(mt, "llama")) || (arch0 && !strcmp(arch0, "LlamaForCausalLM"));
    if (ds && json_object_get(root, "kv_lora_rank") == NULL) {
        /* "deepseek" MoE v1 (DeepSeekMoE-16B) has no MLA: not supported. */
        st = lode_error_set(err, LODE_ERR_UNSUPPORTED,
                            "%s: model_type '%s' without kv_lora_rank (DeepSeekMoE v1) is not supported; "
                            "lode runs DeepSeek-V2/V3 (MLA) and llama-architecture models",
                            path, mt ? mt : "?");
        goto done;
    }
    if (!ds && !llama) {
        st = lode_error_set(err, LODE_ERR_UNSUPPORTED,
                            "%s: model_type '%s' / architecture '%s' is not supported (expected deepseek_v2, "
                            "deepseek_v3 or llama)",
                            path, mt ? mt : "?", arch0 ? arch0 : "?");
        goto done;
    }
    c->arch = ds ? LODE_ARCH_DEEPSEEK2 : LODE_ARCH_LLAMA;
    c->n_vocab = jint(root, "vocab_size", 0);
    c->n_embd = jint(root, "hidden_size", 0);
    c->n_layer = jint(root, "num_hidden_layers", 0);
    c->n_head = jint(root, "num_attention_heads", 0);
    c->n_head_kv = jint(root, "num_key_value_heads", c->n_head);
    c->n_ff = jint(root, "intermediate_size", 0);
    c->n_ctx_train = jint(root, "max_position_embeddings", 4096);
    c->rms_eps = (float)jnum(root, "rms_norm_eps", 1e-6);
    c->rope_theta = (float)jnum(root, "rope_theta", 10000.0);
    c->tie_embeddings = jbool(root, "tie_word_embeddings", false);
    c->bos_id = (int32_t)jint(root, "bos_token_id", -1);
    c->eos_id = (int32_t)jint(root, "eos_token_id", -1);
    c->head_dim = jint(root, "head_dim", c->n_head ? c->n_embd / c->n_head : 0);
    json_t *rs = json_object_get(root, "rope_scaling");
    if (json_is_object(rs)) {
        const char *t = jstr(rs, "type");
        if (!t) t = jstr(rs, "rope_type");
        if (t && !strcmp(t, "yarn")) {
            c->rope_scaling = LODE_ROPE_SCALING_YARN;
            c->rope_factor = (float)jnum(rs, "factor", 1.0);
            c->rope_orig_ctx = jint(rs, "original_max_position_embeddings", 4096);
            c->yarn_beta_fast = (float)jnum(rs, "beta_fast", 32.0);
            c->yarn_beta_slow = (float)jnum(rs, "beta_slow", 1.0);
            c->yarn_mscale = (float)jnum(rs, "mscale", 1.0);
            c->yarn_mscale_all_dim = (float)jnum(rs, "mscale_all_dim", 0.0);
        } else if (t && !strcmp(t, "linear")) {
            c->rope_scaling = LODE_ROPE_SCALING_LINEAR;
            c->rope_factor = (float)jnum(rs, "factor", 1.0);
        } else if (t && strcmp(t, "default") != 0) {
            st = lode_error_set(err, LODE_ERR_UNSUPPORTED, "%s: rope_scaling type '%s' is not supported", path, t);
            goto done;
        }
    }
    if (ds) {
        json_t *ql = json_object_get(root, "q_lora_rank");
        c->q_lora_rank = json_is_integer(ql) ? json_integer_value(ql) : 0;
        c->kv_lora_rank = jint(root, "kv_lora_rank", 0);
        c->qk_nope_dim = jint(root, "qk_nope_head_dim", 0);
        c->qk_rope_dim = jint(root, "qk_rope_head_dim", 0);
        c->v_head_dim = jint(root, "v_head_dim", 0);
        c->n_expert = jint(root, "n_routed_experts", 0);
        c->n_expert_used = jint(root, "num_experts_per_tok", 0);
        c->n_expert_shared = jint(root, "n_shared_experts", 0);
        c->n_ff_exp = jint(root, "moe_intermediate_size", 0);
        c->first_k_dense = jint(root, "first_k_dense_replace", 0);
        c->moe_layer_freq = jint(root, "moe_layer_freq", 1);
        c->n_group = jint(root, "n_group", 1);
        c->topk_group = jint(root, "topk_group", 1);
        c->norm_topk_prob = jbool(root, "norm_topk_prob", false);
        c->routed_scaling = (float)jnum(root, "routed_scaling_factor", 1.0);
        const char *tm = jstr(root, "topk_method");
        const char *sf = jstr(root, "scoring_func");
        /* Remote-code default is "gready" (sic) = greedy. */
        if (!tm || !strcmp(tm, "greedy") || !strcmp(tm, "gready")) c->topk_method = LODE_TOPK_GREEDY;
        else if (!strcmp(tm, "group_limited_greedy")) c->topk_method = LODE_TOPK_GROUP_LIMITED;
        else if (!strcmp(tm, "noaux_tc")) c->topk_method = LODE_TOPK_NOAUX_TC;
        else {
            st = lode_error_set(err, LODE_ERR_UNSUPPORTED, "%s: topk_method '%s' is not supported", path, tm);
            goto done;
        }
        if (!sf || !strcmp(sf, "softmax")) c->scoring = LODE_SCORING_SOFTMAX;
        else if (!strcmp(sf, "sigmoid")) c->scoring = LODE_SCORING_SIGMOID;
        else {
            st = lode_error_set(err, LODE_ERR_UNSUPPORTED, "%s: scoring_func '%s' is not supported", path, sf);
            goto done;
        }
        c->head_dim = c->qk_nope_dim + c->qk_rope_dim;
        c->n_head_kv = c->n_head;
    }
done:
    json_decref(root);
    return st;
}

/* ---- GGUF metadata ---------------------------------------------------- */
typedef struct {
    const lode_gguf *g;
    char arch[32];
    lode_error *err;
    lode_status st;
} kctx;

static const char *K(kctx *k, const char *suffix, char *buf, size_t n) {
    snprintf(buf, n, "%s.%s", k->arch, suffix);
    return buf;
}
static int64_t gi(kctx *k, const char *suffix, int64_t def, bool required) {
    char key[128];
    int64_t v;
    lode_status s = lode_gguf_get_i64(k->g, K(k, suffix, key, sizeof key), &v, NULL);
    if (s == LODE_OK) return v;
    if (s == LODE_ERR_NOT_FOUND && !required) return def;
    if (k->st == LODE_OK)
        k->st = lode_error_set(k->err, LODE_ERR_FORMAT, "%s: metadata key '%s' is %s", lode_gguf_path(k->g), key,
                               s == LODE_ERR_NOT_FOUND ? "missing" : "not an integer");
    return def;
}
static float gf(kctx *k, const char *suffix, float def) {
    char key[128];
    float v;
    if (lode_gguf_get_f32(k->g, K(k, suffix, key, sizeof key), &v, NULL) == LODE_OK) return v;
    return def;
}
static bool gb(kctx *k, const char *suffix, bool def) {
    char key[128];
    bool v;
    if (lode_gguf_get_bool(k->g, K(k, suffix, key, sizeof key), &v, NULL) == LODE_OK) return v;
    return def;
}

lode_status lode__config_from_gguf(const lode_gguf *g, lode_config *c, lode_error *err) {
    cfg_defaults(c);
    const char *s;
    uint64_t len;
    if (lode_gguf_get_str(g, "general.architecture", &s, &len, NULL) != LODE_OK)
        return lode_error_set(err, LODE_ERR_FORMAT, "%s: metadata key 'general.architecture' is missing",
                              lode_gguf_path(g));
    kctx k = {.g = g, .err = err, .st = LODE_OK};
    if (len >= sizeof k.arch) len = sizeof k.arch - 1;
    memcpy(k.arch, s, len);
    k.arch[len] = 0;
    if (!strcmp(k.arch, "deepseek2")) c->arch = LODE_ARCH_DEEPSEEK2;
    else if (!strcmp(k.arch, "llama")) c->arch = LODE_ARCH_LLAMA;
    else
        return lode_error_set(err, LODE_ERR_UNSUPPORTED,
                              "%s: architecture '%s' is not supported (lode runs deepseek2 and llama)",
                              lode_gguf_path(g), k.arch);
    c->n_embd = gi(&k, "embedding_length", 0, true);
    c->n_layer = gi(&k, "block_count", 0, true);
    c->n_head = gi(&k, "attention.head_count", 0, true);
    c->n_head_kv = gi(&k, "attention.head_count_kv", c->n_head, false);
    c->n_ff = gi(&k, "feed_forward_length", 0, false);
    c->n_ctx_train = gi(&k, "context_length", 4096, false);
    c->rms_eps = gf(&k, "attention.layer_norm_rms_epsilon", 1e-6f);
    c->rope_theta = gf(&k, "rope.freq_base", 10000.0f);
    c->n_vocab = gi(&k, "vocab_size", 0, false);
    if (c->n_vocab == 0) {
        lode_gguf_vtype et;
        uint64_t cnt;
        if (lode_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &cnt, NULL) == LODE_OK) c->n_vocab = (int64_t)cnt;
    }
    uint32_t u;
    if (lode_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u, NULL) == LODE_OK) c->bos_id = (int32_t)u;
    if (lode_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u, NULL) == LODE_OK) c->eos_id = (int32_t)u;
    char key[128];
    const char *rst;
    uint64_t rl;
    if (lode_gguf_get_str(g, K(&k, "rope.scaling.type", key, sizeof key), &rst, &rl, NULL) == LODE_OK) {
        if (rl == 4 && !memcmp(rst, "yarn", 4)) c->rope_scaling = LODE_ROPE_SCALING_YARN;
        else if (rl == 6 && !memcmp(rst, "linear", 6)) c->rope_scaling = LODE_ROPE_SCALING_LINEAR;
        else if (!(rl == 4 && !memcmp(rst, "none", 4)))
            return lode_error_set(err, LODE_ERR_UNSUPPORTED, "%s: rope scaling type '%.*s' is not supported",
                                  lode_gguf_path(g), (int)rl, rst);
        c->rope_factor = gf(&k, "rope.scaling.factor", 1.0f);
    } else {
        float lin = gf(&k, "rope.scale_linear", 0.0f); /* older llama GGUFs */
        if (lin > 0 && lin != 1.0f) {
            c->rope_scaling = LODE_ROPE_SCALING_LINEAR;
            c->rope_factor = lin;
        }
    }
    if (c->rope_scaling == LODE_ROPE_SCALING_YARN) {
        c->rope_orig_ctx = gi(&k, "rope.scaling.original_context_length", c->n_ctx_train, false);
        c->yarn_beta_fast = gf(&k, "rope.scaling.yarn_beta_fast", 32.0f);
        c->yarn_beta_slow = gf(&k, "rope.scaling.yarn_beta_slow", 1.0f);
        /* The converter stores 0.1 * mscale_all_dim (spec §3.5, pitfall 4). For
         * deepseek2, mscale = mscale_all_dim, so the cos/sin factor is 1. */
        float lm = gf(&k, "rope.scaling.yarn_log_multiplier", 0.0f);
        c->yarn_mscale_all_dim = lm / 0.1f;
        c->yarn_mscale = c->yarn_mscale_all_dim;
    }
    c->head_dim = gi(&k, "rope.dimension_count", c->n_head ? c->n_embd / c->n_head : 0, false);
    if (c->arch == LODE_ARCH_LLAMA) {
        int64_t kl = gi(&k, "attention.key_length", 0, false);
        if (kl > 0) c->head_dim = kl;
        else c->head_dim = c->n_embd / (c->n_head ? c->n_head : 1);
    }
    if (c->arch == LODE_ARCH_DEEPSEEK2) {
        c->q_lora_rank = gi(&k, "attention.q_lora_rank", 0, false);
        c->kv_lora_rank = gi(&k, "attention.kv_lora_rank", 0, true);
        c->qk_rope_dim = gi(&k, "rope.dimension_count", 0, true);
        int64_t kl_mla = gi(&k, "attention.key_length_mla", 0, false);
        int64_t vl_mla = gi(&k, "attention.value_length_mla", 0, false);
        int64_t kl = gi(&k, "attention.key_length", 0, false);
        int64_t vl = gi(&k, "attention.value_length", 0, false);
        c->qk_nope_dim = (kl_mla ? kl_mla : kl) - c->qk_rope_dim;
        c->v_head_dim = vl_mla ? vl_mla : vl;
        c->n_expert = gi(&k, "expert_count", 0, false);
        c->n_expert_used = gi(&k, "expert_used_count", 0, false);
        c->n_expert_shared = gi(&k, "expert_shared_count", 0, false);
        c->n_ff_exp = gi(&k, "expert_feed_forward_length", 0, false);
        c->first_k_dense = gi(&k, "leading_dense_block_count", 0, false);
        c->routed_scaling = gf(&k, "expert_weights_scale", 1.0f);
        if (c->routed_scaling == 0.0f) c->routed_scaling = 1.0f; /* pitfall 7 */
        c->norm_topk_prob = gb(&k, "expert_weights_norm", false);
        int64_t gating = gi(&k, "expert_gating_func", 1, false);
        c->scoring = gating == 2 ? LODE_SCORING_SIGMOID : LODE_SCORING_SOFTMAX;
        c->n_group = gi(&k, "expert_group_count", 1, false);
        c->topk_group = gi(&k, "expert_group_used_count", c->n_group, false);
        /* The routing method is not stored in GGUF: it follows from the
         * gating function and the presence of the correction bias, checked
         * again at tensor binding (exp_probs_b). */
        if (c->scoring == LODE_SCORING_SIGMOID) c->topk_method = LODE_TOPK_NOAUX_TC;
        else if (c->n_group > 1) c->topk_method = LODE_TOPK_GROUP_LIMITED;
        else c->topk_method = LODE_TOPK_GREEDY;
        c->head_dim = c->qk_nope_dim + c->qk_rope_dim;
        c->n_head_kv = c->n_head;
    }
    return k.st;
}

/* ---- validation --------------------------------------------------------- */
#define REQ(cond, ...)                                                               \
    do {                                                                             \
        if (!(cond)) return lode_error_set(err, LODE_ERR_FORMAT, __VA_ARGS__);       \
    } while (0)

lode_status lode__config_validate(const lode_config *c, const char *path, lode_error *err) {
    const int64_t big = (int64_t)1 << 24;
    REQ(c->n_vocab > 0 && c->n_vocab < big, "%s: vocab size %lld is invalid", path, (long long)c->n_vocab);
    REQ(c->n_embd > 0 && c->n_embd < big, "%s: hidden size %lld is invalid", path, (long long)c->n_embd);
    REQ(c->n_layer > 0 && c->n_layer < 4096, "%s: layer count %lld is invalid", path, (long long)c->n_layer);
    REQ(c->n_head > 0 && c->n_head < 4096, "%s: head count %lld is invalid", path, (long long)c->n_head);
    REQ(c->rms_eps >= 0 && isfinite(c->rms_eps), "%s: rms epsilon is invalid", path);
    REQ(c->rope_theta > 0 && isfinite(c->rope_theta), "%s: rope theta is invalid", path);
    REQ(c->rope_factor > 0 && isfinite(c->rope_factor), "%s: rope scaling factor is invalid", path);
    if (c->arch == LODE_ARCH_LLAMA) {
        REQ(c->n_head_kv > 0 && c->n_head % c->n_head_kv == 0, "%s: %lld heads not divisible by %lld KV heads",
            path, (long long)c->n_head, (long long)c->n_head_kv);
        REQ(c->head_dim > 0 && c->head_dim % 2 == 0 && c->head_dim < 4096, "%s: head dim %lld is invalid", path,
            (long long)c->head_dim);
        REQ(c->n_ff > 0 && c->n_ff < big, "%s: FFN size is invalid", path);
    } else {
        REQ(c->kv_lora_rank > 0 && c->kv_lora_rank < 65536, "%s: kv_lora_rank is invalid", path);
        REQ(c->qk_rope_dim > 0 && c->qk_rope_dim % 2 == 0 && c->qk_rope_dim < 4096,
            "%s: qk_rope_head_dim %lld is invalid", path, (long long)c->qk_rope_dim);
        REQ(c->qk_nope_dim > 0 && c->qk_nope_dim < 4096, "%s: qk_nope_head_dim %lld is invalid", path,
            (long long)c->qk_nope_dim);
        REQ(c->v_head_dim > 0 && c->v_head_dim < 4096, "%s: v_head_dim is invalid", path);
        REQ(c->q_lora_rank >= 0 && c->q_lora_rank < 65536, "%s: q_lora_rank is invalid", path);
        REQ(c->first_k_dense >= 0, "%s: first_k_dense_replace is invalid", path);
        REQ(c->moe_layer_freq >= 1, "%s: moe_layer_freq is invalid", path);
        if (c->first_k_dense > 0) REQ(c->n_ff > 0 && c->n_ff < big, "%s: dense FFN size is invalid", path);
        if (c->n_expert > 0 && c->first_k_dense < c->n_layer) {
            REQ(c->n_expert < 65536, "%s: expert count is invalid", path);
            REQ(c->n_expert_used > 0 && c->n_expert_used <= c->n_expert, "%s: experts per token %lld invalid",
                path, (long long)c->n_expert_used);
            REQ(c->n_ff_exp > 0 && c->n_ff_exp < big, "%s: expert FFN size is invalid", path);
            REQ(c->n_expert_shared >= 0 && c->n_expert_shared < 256, "%s: shared expert count is invalid", path);
            REQ(c->n_group >= 1 && c->n_expert % c->n_group == 0,
                "%s: %lld experts not divisible into %lld groups", path, (long long)c->n_expert,
                (long long)c->n_group);
            REQ(c->topk_group >= 1 && c->topk_group <= c->n_group, "%s: topk_group is invalid", path);
            REQ(c->n_expert_used <= c->topk_group * (c->n_expert / c->n_group),
                "%s: top-k %lld exceeds the experts in the selected groups", path, (long long)c->n_expert_used);
        }
    }
    if (c->rope_scaling == LODE_ROPE_SCALING_YARN)
        REQ(c->rope_orig_ctx > 0, "%s: yarn original context length is invalid", path);
    return LODE_OK;
}
