/*
 * model_gen.c — deterministic random models in GGUF or HF safetensors form.
 *
 * Every weight is a function of (seed, Hugging Face tensor name, row): the
 * GGUF writer maps each GGUF row back to the HF row it comes from (stacked
 * experts, split attn_k_b/attn_v_b, llama q/k permutation), so both formats
 * of one preset hold the same model. Rows are generated in parallel into a
 * chunk buffer, converted to the output type and streamed to disk, so the
 * 16 GB Lite shape never needs more than a few MB of memory per thread.
 *
 * Initialisation (uniform with the given standard deviation): embeddings 1,
 * linear layers 1/sqrt(in), router 2/sqrt(H) (decisive routing), lm_head
 * 4/sqrt(H) (sharp next-token distribution), norms 1 ± 0.1, routing bias
 * in [0, 0.3] (keeps V3 biased scores positive, where 0.0 and -inf masking
 * agree).
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gen_vocab.h"
#include "lode_gen.h"
#include "lode_gguf.h"
#include "lode_pool.h"
#include "lode_quant.h"
#include "lode_safetensors.h"
#include "quant_policy.h"

/* ---- presets ------------------------------------------------------------- */
static lode_config base_ds(void) {
    lode_config c = {0};
    c.arch = LODE_ARCH_DEEPSEEK2;
    c.rms_eps = 1e-6f;
    c.rope_theta = 10000.0f;
    c.rope_factor = 1.0f;
    c.yarn_beta_fast = 32.0f;
    c.yarn_beta_slow = 1.0f;
    c.moe_layer_freq = 1;
    c.n_group = 1;
    c.topk_group = 1;
    c.routed_scaling = 1.0f;
    c.bos_id = c.eos_id = -1;
    return c;
}

static lode_config tiny_ds(void) {
    lode_config c = base_ds();
    c.n_vocab = 512;
    c.n_embd = 256;
    c.n_layer = 3;
    c.n_head = 4;
    c.n_head_kv = 4;
    c.n_ff = 512;
    c.n_ctx_train = 128;
    c.qk_nope_dim = 32;
    c.qk_rope_dim = 16;
    c.v_head_dim = 32;
    c.head_dim = 48;
    c.kv_lora_rank = 64;
    c.n_expert = 8;
    c.n_expert_used = 2;
    c.n_expert_shared = 1;
    c.n_ff_exp = 256;
    c.first_k_dense = 1;
    c.rope_scaling = LODE_ROPE_SCALING_YARN;
    c.rope_factor = 8.0f;
    c.rope_orig_ctx = 16;
    c.yarn_mscale = 0.707f;
    c.yarn_mscale_all_dim = 0.707f;
    return c;
}

static lode_config tiny_llama(void) {
    lode_config c = base_ds();
    c.arch = LODE_ARCH_LLAMA;
    c.n_vocab = 512;
    c.n_embd = 256;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 4;
    c.head_dim = 64;
    c.n_ff = 512;
    c.n_ctx_train = 256;
    return c;
}

lode_status lode_gen_preset(const char *name, lode_config *c, const char **vocab, lode_error *err) {
    *vocab = "synthetic";
    if (!strcmp(name, "tiny-v2lite")) {
        *c = tiny_ds();
    } else if (!strcmp(name, "tiny-v2")) {
        *c = tiny_ds();
        c->q_lora_rank = 128;
        c->n_expert = 16;
        c->n_expert_used = 4;
        c->n_group = 4;
        c->topk_group = 2;
        c->topk_method = LODE_TOPK_GROUP_LIMITED;
        c->routed_scaling = 16.0f;
        c->n_expert_shared = 2;
        c->n_ff_exp = 128;
    } else if (!strcmp(name, "tiny-v3")) {
        *c = tiny_ds();
        c->q_lora_rank = 128;
        c->n_expert = 16;
        c->n_expert_used = 4;
        c->n_group = 4;
        c->topk_group = 2;
        c->topk_method = LODE_TOPK_NOAUX_TC;
        c->scoring = LODE_SCORING_SIGMOID;
        c->norm_topk_prob = true;
        c->routed_scaling = 2.5f;
        c->yarn_mscale = 1.0f;
        c->yarn_mscale_all_dim = 1.0f;
        c->first_k_dense = 1;
        c->n_layer = 4;
    } else if (!strcmp(name, "tiny-llama")) {
        *c = tiny_llama();
    } else if (!strcmp(name, "tiny-llama-gqa")) {
        *c = tiny_llama();
        c->n_head = 8;
        c->n_head_kv = 2;
        c->head_dim = 32;
        c->rope_theta = 100000.0f;
        c->rope_scaling = LODE_ROPE_SCALING_LINEAR;
        c->rope_factor = 4.0f;
    } else if (!strcmp(name, "tiny-coder")) {
        /* DeepSeek-Coder v1 layout (6.7B-style linear RoPE) with the real
         * deepseek-coder vocabulary: end-to-end FIM tests. */
        *c = tiny_llama();
        c->n_embd = 128;
        c->n_head = 4;
        c->head_dim = 32;
        c->n_ff = 256;
        c->rope_theta = 100000.0f;
        c->rope_scaling = LODE_ROPE_SCALING_LINEAR;
        c->rope_factor = 4.0f;
        c->n_vocab = 32256;
        c->n_ctx_train = 16384;
        *vocab = "deepseek-coder";
    } else if (!strcmp(name, "lite")) {
        /* DeepSeek-Coder-V2-Lite, exactly (spec-model.md §1.1). */
        *c = base_ds();
        c->n_vocab = 102400;
        c->n_embd = 2048;
        c->n_layer = 27;
        c->n_head = 16;
        c->n_head_kv = 16;
        c->n_ff = 10944;
        c->n_ctx_train = 163840;
        c->qk_nope_dim = 128;
        c->qk_rope_dim = 64;
        c->v_head_dim = 128;
        c->head_dim = 192;
        c->kv_lora_rank = 512;
        c->n_expert = 64;
        c->n_expert_used = 6;
        c->n_expert_shared = 2;
        c->n_ff_exp = 1408;
        c->first_k_dense = 1;
        c->rope_scaling = LODE_ROPE_SCALING_YARN;
        c->rope_factor = 40.0f;
        c->rope_orig_ctx = 4096;
        c->yarn_mscale = 0.707f;
        c->yarn_mscale_all_dim = 0.707f;
        c->bos_id = 100000;
        c->eos_id = 100001;
        *vocab = "deepseek-llm";
    } else {
        return lode_error_set(err, LODE_ERR_NOT_FOUND, "unknown preset '%s'", name);
    }
    return LODE_OK;
}

const char *const *lode_gen_preset_names(void) {
    static const char *const names[] = {"tiny-v2lite", "tiny-v2",    "tiny-v3", "tiny-llama",
                                        "tiny-llama-gqa", "tiny-coder", "lite",    NULL};
    return names;
}

char *lode_gen_find_vocab(const char *name) {
    char rel[8192], path[8400];
    const char *dirs[4] = {getenv("LODE_VOCAB_DIR"), "../shared/data/vocab", NULL, NULL};
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *sl = strrchr(exe, '/');
        if (sl) *sl = 0;
        snprintf(rel, sizeof rel, "%s/../../shared/data/vocab", exe); /* build/lode → repo/../shared */
        dirs[2] = rel;
    }
    for (int i = 0; i < 3; i++) {
        if (!dirs[i]) continue;
        snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf", dirs[i], name);
        if (access(path, R_OK) == 0) return lode_xstrdup(path);
    }
    return NULL;
}

/* ---- deterministic values ------------------------------------------------------ */
static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

typedef enum { K_MAT, K_EMBED, K_HEAD, K_ROUTER, K_NORM, K_BIAS } kind;

static kind kind_of(const char *hf) {
    if (strstr(hf, "embed_tokens")) return K_EMBED;
    if (strstr(hf, "lm_head")) return K_HEAD;
    if (strstr(hf, "e_score_correction_bias")) return K_BIAS;
    if (strstr(hf, "norm")) return K_NORM;
    if (strstr(hf, "mlp.gate.weight")) return K_ROUTER;
    return K_MAT;
}

/* Row `row` of HF tensor `hf` ([rows, cols]) into dst. */
static void hf_row(uint64_t seed, const char *hf, int64_t row, int64_t cols, float *dst) {
    uint64_t s = seed ^ hash_str(hf) ^ ((uint64_t)row * 0xD1B54A32D192ED03ull);
    splitmix(&s);
    kind k = kind_of(hf);
    double std = k == K_EMBED ? 1.0 : k == K_HEAD ? 4.0 / sqrt((double)cols) : k == K_ROUTER ? 2.0 / sqrt((double)cols)
                                                                                  : 1.0 / sqrt((double)cols);
    const float a = (float)(std * 1.7320508075688772);
    for (int64_t i = 0; i < cols; i++) {
        uint64_t r = splitmix(&s);
        float u = (float)((double)(r >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f; /* [-1, 1) */
        if (k == K_NORM) dst[i] = 1.0f + 0.1f * u;
        else if (k == K_BIAS) dst[i] = 0.15f + 0.15f * u;
        else dst[i] = a * u;
    }
}

/* ---- tensor plan ------------------------------------------------------------------ */
typedef enum { T_PLAIN, T_PERMUTE, T_EXPERTS, T_KB, T_VB } xform;

typedef struct {
    char gguf[96];
    char hf[128];      /* HF name (printf pattern with %d for T_EXPERTS) */
    int n_dims;
    int64_t ne[3];     /* GGML order of the OUTPUT tensor (GGUF) */
    int64_t rows, cols; /* HF [rows, cols] of the source (one expert for T_EXPERTS) */
    xform x;
    int64_t n_head;    /* T_PERMUTE: heads; T_KB/T_VB: heads */
    int64_t a, b;      /* T_KB/T_VB: nope, v dims */
    bool vec;
} tplan;

typedef struct {
    tplan *t;
    int n, cap;
} plan;

static tplan *add(plan *p, const char *g, const char *h, int64_t rows, int64_t cols, bool vec) {
    if (p->n == p->cap) p->t = lode_xrealloc(p->t, (size_t)(p->cap = p->cap ? p->cap * 2 : 64) * sizeof(tplan));
    tplan *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->gguf, sizeof t->gguf, "%s", g);
    snprintf(t->hf, sizeof t->hf, "%s", h);
    t->rows = rows;
    t->cols = cols;
    t->vec = vec;
    t->n_dims = vec ? 1 : 2;
    t->ne[0] = cols;
    t->ne[1] = vec ? 1 : rows;
    t->ne[2] = 1;
    return t;
}

static void build_plan(const lode_config *c, bool gguf, bool legacy, plan *p) {
    char g[96], h[128];
    const int64_t H = c->n_embd;
    add(p, "token_embd.weight", "model.embed_tokens.weight", c->n_vocab, H, false);
    for (int64_t l = 0; l < c->n_layer; l++) {
#define A(gs, hs, r, cl, v)                                                       \
    (snprintf(g, sizeof g, "blk.%d." gs, (int)l), snprintf(h, sizeof h, "model.layers.%d." hs, (int)l), \
     add(p, g, h, r, cl, v))
        A("attn_norm.weight", "input_layernorm.weight", 1, H, true);
        if (c->arch == LODE_ARCH_LLAMA) {
            const int64_t hd = c->head_dim;
            tplan *q = A("attn_q.weight", "self_attn.q_proj.weight", c->n_head * hd, H, false);
            tplan *k = A("attn_k.weight", "self_attn.k_proj.weight", c->n_head_kv * hd, H, false);
            if (gguf) {
                q->x = T_PERMUTE, q->n_head = c->n_head;
                k->x = T_PERMUTE, k->n_head = c->n_head_kv;
            }
            A("attn_v.weight", "self_attn.v_proj.weight", c->n_head_kv * hd, H, false);
            A("attn_output.weight", "self_attn.o_proj.weight", H, c->n_head * hd, false);
            A("ffn_norm.weight", "post_attention_layernorm.weight", 1, H, true);
            A("ffn_gate.weight", "mlp.gate_proj.weight", c->n_ff, H, false);
            A("ffn_up.weight", "mlp.up_proj.weight", c->n_ff, H, false);
            A("ffn_down.weight", "mlp.down_proj.weight", H, c->n_ff, false);
            continue;
        }
        const int64_t nh = c->n_head, dn = c->qk_nope_dim, dr = c->qk_rope_dim, dv = c->v_head_dim,
                      dc = c->kv_lora_rank;
        if (c->q_lora_rank > 0) {
            A("attn_q_a.weight", "self_attn.q_a_proj.weight", c->q_lora_rank, H, false);
            A("attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight", 1, c->q_lora_rank, true);
            A("attn_q_b.weight", "self_attn.q_b_proj.weight", nh * (dn + dr), c->q_lora_rank, false);
        } else {
            A("attn_q.weight", "self_attn.q_proj.weight", nh * (dn + dr), H, false);
        }
        A("attn_kv_a_mqa.weight", "self_attn.kv_a_proj_with_mqa.weight", dc + dr, H, false);
        A("attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight", 1, dc, true);
        if (gguf && !legacy) {
            tplan *kb = A("attn_k_b.weight", "self_attn.kv_b_proj.weight", nh * (dn + dv), dc, false);
            kb->x = T_KB, kb->n_head = nh, kb->a = dn, kb->b = dv;
            kb->n_dims = 3, kb->ne[0] = dn, kb->ne[1] = dc, kb->ne[2] = nh;
            tplan *vb = A("attn_v_b.weight", "self_attn.kv_b_proj.weight", nh * (dn + dv), dc, false);
            vb->x = T_VB, vb->n_head = nh, vb->a = dn, vb->b = dv;
            vb->n_dims = 3, vb->ne[0] = dc, vb->ne[1] = dv, vb->ne[2] = nh;
        } else {
            A("attn_kv_b.weight", "self_attn.kv_b_proj.weight", nh * (dn + dv), dc, false);
        }
        A("attn_output.weight", "self_attn.o_proj.weight", H, nh * dv, false);
        A("ffn_norm.weight", "post_attention_layernorm.weight", 1, H, true);
        bool moe = c->n_expert > 0 && l >= c->first_k_dense && l % c->moe_layer_freq == 0;
        if (!moe) {
            A("ffn_gate.weight", "mlp.gate_proj.weight", c->n_ff, H, false);
            A("ffn_up.weight", "mlp.up_proj.weight", c->n_ff, H, false);
            A("ffn_down.weight", "mlp.down_proj.weight", H, c->n_ff, false);
            continue;
        }
        const int64_t E = c->n_expert, I = c->n_ff_exp;
        A("ffn_gate_inp.weight", "mlp.gate.weight", E, H, false);
        if (c->topk_method == LODE_TOPK_NOAUX_TC) A("exp_probs_b.bias", "mlp.gate.e_score_correction_bias", 1, E, true);
        static const char *proj[3] = {"gate", "up", "down"};
        for (int j = 0; j < 3; j++) {
            int64_t r = j == 2 ? H : I, cl = j == 2 ? I : H;
            if (gguf) {
                snprintf(g, sizeof g, "blk.%d.ffn_%s_exps.weight", (int)l, proj[j]);
                snprintf(h, sizeof h, "model.layers.%d.mlp.experts.%%d.%s_proj.weight", (int)l, proj[j]);
                tplan *t = add(p, g, h, r, cl, false);
                t->x = T_EXPERTS;
                t->n_dims = 3, t->ne[0] = cl, t->ne[1] = r, t->ne[2] = E;
            } else {
                for (int64_t e = 0; e < E; e++) {
                    snprintf(h, sizeof h, "model.layers.%d.mlp.experts.%d.%s_proj.weight", (int)l, (int)e, proj[j]);
                    add(p, "-", h, r, cl, false);
                }
            }
        }
        if (c->n_expert_shared > 0) {
            const int64_t S = c->n_expert_shared * I;
            A("ffn_gate_shexp.weight", "mlp.shared_experts.gate_proj.weight", S, H, false);
            A("ffn_up_shexp.weight", "mlp.shared_experts.up_proj.weight", S, H, false);
            A("ffn_down_shexp.weight", "mlp.shared_experts.down_proj.weight", H, S, false);
        }
#undef A
    }
    add(p, "output_norm.weight", "model.norm.weight", 1, H, true);
    if (!c->tie_embeddings) add(p, "output.weight", "lm_head.weight", c->n_vocab, H, false);
}

/* Output rows of a planned tensor (product of ne[1..]). */
static int64_t out_rows(const tplan *t) { return t->ne[1] * t->ne[2]; }

/* Row `r` of the OUTPUT tensor. `tmp` has room for t->cols floats. */
static void out_row(uint64_t seed, const tplan *t, int64_t r, float *dst, float *tmp) {
    char name[160];
    switch (t->x) {
    case T_PLAIN:
        hf_row(seed, t->hf, t->vec ? 0 : r, t->ne[0], dst);
        return;
    case T_PERMUTE: { /* llama.cpp: interleave the two rotate_half halves */
        int64_t hd = t->rows / t->n_head, h = r / hd, w = r % hd, i = w / 2, j = w % 2;
        hf_row(seed, t->hf, h * hd + j * (hd / 2) + i, t->cols, dst);
        return;
    }
    case T_EXPERTS: {
        int64_t e = r / t->rows;
        snprintf(name, sizeof name, t->hf, (int)e);
        hf_row(seed, name, r % t->rows, t->cols, dst);
        return;
    }
    case T_KB: { /* row (h, c): W_UK_h[d][c] for d < nope */
        int64_t dc = t->cols, h = r / dc, cc = r % dc;
        for (int64_t d = 0; d < t->a; d++) {
            hf_row(seed, t->hf, h * (t->a + t->b) + d, dc, tmp);
            dst[d] = tmp[cc];
        }
        return;
    }
    case T_VB: { /* row (h, d): W_UV_h row d */
        int64_t h = r / t->b, d = r % t->b;
        hf_row(seed, t->hf, h * (t->a + t->b) + t->a + d, t->cols, dst);
        return;
    }
    }
}

/* ---- writing ----------------------------------------------------------------------- */
typedef struct {
    uint64_t seed;
    const tplan *t;
    lode_type type;
    int64_t r0, n_rows;
    char *out;
    size_t row_bytes;
    float *f32; /* [n_threads][2][cols] */
    int64_t cols;
} fill_ctx;

static void fill_row(void *ctx, int64_t i) {
    fill_ctx *f = ctx;
    float *buf = f->f32 + (size_t)lode_pool_thread_index() * 2 * (size_t)f->cols;
    out_row(f->seed, f->t, f->r0 + i, buf, buf + f->cols);
    lode_type_get(f->type)->from_f32(buf, f->out + (size_t)i * f->row_bytes, f->t->ne[0]);
}

static lode_type pick_type(const lode_gen_params *p, const tplan *t, bool gguf) {
    if (t->vec) return LODE_TYPE_F32;
    lode_type ty = p->type;
    bool quant = lode_type_get(ty) && lode_type_get(ty)->is_quantized;
    if (gguf && quant && (t->x == T_KB || t->x == T_VB))
        ty = p->kb_type >= 0 ? (lode_type)p->kb_type : LODE_TYPE_F32;
    return lode__quant_fallback(ty, t->ne[0]);
}

typedef lode_status (*write_fn)(void *w, const void *data, size_t n, lode_error *err);
static lode_status gguf_write(void *w, const void *d, size_t n, lode_error *err) { return lode_gguf_writer_write_data(w, d, n, err); }
static lode_status st_write(void *w, const void *d, size_t n, lode_error *err) { return lode_st_writer_write_data(w, d, n, err); }

static lode_status stream_tensor(lode_pool *pool, const lode_gen_params *p, const tplan *t, lode_type ty, write_fn wf,
                                 void *w, lode_error *err) {
    const int64_t rows = out_rows(t), cols = t->ne[0];
    const size_t rb = lode_row_size(ty, cols);
    int64_t chunk = (int64_t)((8u << 20) / (rb ? rb : 1));
    if (chunk < 1) chunk = 1;
    if (chunk > rows) chunk = rows;
    char *buf = lode_try_malloc((size_t)chunk * rb);
    int nt = lode_pool_size(pool);
    float *f32 = lode_try_malloc((size_t)nt * 2 * (size_t)(cols > t->cols ? cols : t->cols) * sizeof(float));
    if (!buf || !f32) {
        lode_free(buf);
        lode_free(f32);
        return lode_error_set(err, LODE_ERR_NOMEM, "out of memory generating '%s'", t->gguf);
    }
    lode_status s = LODE_OK;
    for (int64_t r0 = 0; r0 < rows && !s; r0 += chunk) {
        int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
        fill_ctx fc = {p->seed, t, ty, r0, n, buf, rb, f32, cols > t->cols ? cols : t->cols};
        lode_pool_run(pool, n, fill_row, &fc);
        s = wf(w, buf, (size_t)n * rb, err);
    }
    lode_free(buf);
    lode_free(f32);
    return s;
}

static void gguf_config_keys(const lode_config *c, lode_gguf_writer *w, bool legacy) {
    const char *a = c->arch == LODE_ARCH_DEEPSEEK2 ? "deepseek2" : "llama";
    char k[128];
#define KEY(s) (snprintf(k, sizeof k, "%s." s, a), k)
    lode_gguf_writer_set_str(w, "general.architecture", a);
    lode_gguf_writer_set_str(w, "general.name", "lode random model");
    lode_gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)c->n_ctx_train);
    lode_gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)c->n_embd);
    lode_gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)c->n_layer);
    lode_gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->n_ff);
    lode_gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_head);
    lode_gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->rms_eps);
    lode_gguf_writer_set_f32(w, KEY("rope.freq_base"), c->rope_theta);
    lode_gguf_writer_set_u32(w, KEY("vocab_size"), (uint32_t)c->n_vocab);
    if (c->rope_scaling == LODE_ROPE_SCALING_LINEAR) {
        lode_gguf_writer_set_str(w, KEY("rope.scaling.type"), "linear");
        lode_gguf_writer_set_f32(w, KEY("rope.scaling.factor"), c->rope_factor);
    }
    if (c->arch == LODE_ARCH_LLAMA) {
        lode_gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_head_kv);
        lode_gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim);
        lode_gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim);
        lode_gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim);
        return;
    }
    lode_gguf_writer_set_u32(w, KEY("attention.head_count_kv"), legacy ? (uint32_t)c->n_head : 1);
    /* Written as 0 when absent: llama.cpp requires the key unless the model
     * has exactly 27 layers (its old "is_lite" rule); lode decides q-LoRA
     * by tensor presence. */
    lode_gguf_writer_set_u32(w, KEY("attention.q_lora_rank"), (uint32_t)c->q_lora_rank);
    lode_gguf_writer_set_u32(w, KEY("attention.kv_lora_rank"), (uint32_t)c->kv_lora_rank);
    if (legacy) {
        lode_gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)(c->qk_nope_dim + c->qk_rope_dim));
        lode_gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)c->v_head_dim);
    } else {
        lode_gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)(c->kv_lora_rank + c->qk_rope_dim));
        lode_gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)c->kv_lora_rank);
        lode_gguf_writer_set_u32(w, KEY("attention.key_length_mla"), (uint32_t)(c->qk_nope_dim + c->qk_rope_dim));
        lode_gguf_writer_set_u32(w, KEY("attention.value_length_mla"), (uint32_t)c->v_head_dim);
    }
    lode_gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->qk_rope_dim);
    lode_gguf_writer_set_u32(w, KEY("leading_dense_block_count"), (uint32_t)c->first_k_dense);
    lode_gguf_writer_set_u32(w, KEY("expert_count"), (uint32_t)c->n_expert);
    lode_gguf_writer_set_u32(w, KEY("expert_used_count"), (uint32_t)c->n_expert_used);
    lode_gguf_writer_set_u32(w, KEY("expert_shared_count"), (uint32_t)c->n_expert_shared);
    lode_gguf_writer_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)c->n_ff_exp);
    lode_gguf_writer_set_f32(w, KEY("expert_weights_scale"), c->routed_scaling);
    lode_gguf_writer_set_bool(w, KEY("expert_weights_norm"), c->norm_topk_prob);
    lode_gguf_writer_set_u32(w, KEY("expert_gating_func"), c->scoring == LODE_SCORING_SIGMOID ? 2 : 1);
    if (c->n_group > 1) {
        lode_gguf_writer_set_u32(w, KEY("expert_group_count"), (uint32_t)c->n_group);
        lode_gguf_writer_set_u32(w, KEY("expert_group_used_count"), (uint32_t)c->topk_group);
    }
    if (c->rope_scaling == LODE_ROPE_SCALING_YARN) {
        lode_gguf_writer_set_str(w, KEY("rope.scaling.type"), "yarn");
        lode_gguf_writer_set_f32(w, KEY("rope.scaling.factor"), c->rope_factor);
        lode_gguf_writer_set_u32(w, KEY("rope.scaling.original_context_length"), (uint32_t)c->rope_orig_ctx);
        lode_gguf_writer_set_f32(w, KEY("rope.scaling.yarn_log_multiplier"), 0.1f * c->yarn_mscale_all_dim);
        lode_gguf_writer_set_f32(w, KEY("rope.scaling.yarn_beta_fast"), c->yarn_beta_fast);
        lode_gguf_writer_set_f32(w, KEY("rope.scaling.yarn_beta_slow"), c->yarn_beta_slow);
    }
#undef KEY
}

static lode_status write_hf_config(const lode_config *c, const lode_gen_vocab *v, const char *dir, lode_error *err);

lode_status lode_gen_write(const lode_config *c0, const lode_gen_params *p, lode_error *err) {
    lode_config c = *c0;
    lode_gen_vocab v;
    lode_status s;
    if (p->vocab_gguf) s = lode__gen_vocab_from_gguf(p->vocab_gguf, &v, err);
    else s = lode__gen_vocab_synthetic(c.n_vocab, p->vocab_pre, &v, err);
    if (s) return s;
    if (p->vocab_gguf) c.n_vocab = v.n_tokens > c.n_vocab ? v.n_tokens : c.n_vocab;
    if (p->coder_v2_fim && v.n_tokens > 100004) {
        /* As in real DeepSeek-Coder-V2-Lite GGUFs (llama.cpp load logs):
         * 100002 <｜fim▁hole｜>, 100003 <｜fim▁begin｜>, 100004 <｜fim▁end｜>. */
        static const char *fim[3] = {"<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>"};
        for (int i = 0; i < 3; i++) {
            lode_free(v.tokens[100002 + i]);
            v.tokens[100002 + i] = lode_xstrdup(fim[i]);
            v.types[100002 + i] = 3;
        }
    }
    c.bos_id = v.bos;
    c.eos_id = v.eos;
    const lode_type_traits *tr = lode_type_get(p->type);
    bool gguf = p->format == LODE_GEN_GGUF;
    if (!tr) {
        lode__gen_vocab_free(&v);
        return lode_error_set(err, LODE_ERR_UNSUPPORTED, "weight type %s cannot be written", lode_type_name(p->type));
    }
    if (!gguf && p->type != LODE_TYPE_F32 && p->type != LODE_TYPE_F16 && p->type != LODE_TYPE_BF16) {
        lode__gen_vocab_free(&v);
        return lode_error_set(err, LODE_ERR_INVALID_ARG,
                              "HF safetensors output holds f32, f16 or bf16 weights; use --format gguf for %s",
                              tr->name);
    }
    plan pl = {0};
    build_plan(&c, gguf, p->legacy_kvb, &pl);
    lode_pool *pool = lode_pool_new(p->n_threads);
    double t0 = lode_time_s();
    uint64_t total = 0;
    if (gguf) {
        lode_gguf_writer *w = lode_gguf_writer_new();
        gguf_config_keys(&c, w, p->legacy_kvb);
        lode_gguf_writer_set_u32(w, "general.quantization_version", 2);
        lode__gen_vocab_to_gguf(&v, w);
        lode_type *types = lode_xcalloc((size_t)pl.n, sizeof(lode_type));
        for (int i = 0; i < pl.n && !s; i++) {
            types[i] = pick_type(p, &pl.t[i], true);
            s = lode_gguf_writer_add_tensor(w, pl.t[i].gguf, types[i], pl.t[i].n_dims, pl.t[i].ne, err);
        }
        if (!s) s = lode_gguf_writer_begin(w, p->out, err);
        for (int i = 0; i < pl.n && !s; i++) {
            s = stream_tensor(pool, p, &pl.t[i], types[i], gguf_write, w, err);
            total += lode_row_size(types[i], pl.t[i].ne[0]) * (uint64_t)out_rows(&pl.t[i]);
        }
        if (!s) s = lode_gguf_writer_finish(w, err);
        lode_gguf_writer_free(w);
        lode_free(types);
    } else {
        if (mkdir(p->out, 0755) != 0 && errno != EEXIST) {
            s = lode_error_set(err, LODE_ERR_IO, "cannot create directory %s: %s", p->out, strerror(errno));
        }
        if (!s) s = write_hf_config(&c, &v, p->out, err);
        if (!s) s = lode__gen_vocab_to_hf(&v, p->out, err);
        /* Shards: consecutive tensors up to shard_bytes each. */
        uint64_t cap = p->shard_bytes ? p->shard_bytes : (4ull << 30);
        int n_shards = 0;
        int *shard_of = lode_xcalloc((size_t)pl.n, sizeof(int));
        uint64_t acc = 0;
        for (int i = 0; i < pl.n; i++) {
            uint64_t b = lode_row_size(pick_type(p, &pl.t[i], false), pl.t[i].ne[0]) * (uint64_t)out_rows(&pl.t[i]);
            if (acc > 0 && acc + b > cap) {
                n_shards++;
                acc = 0;
            }
            shard_of[i] = n_shards;
            acc += b;
        }
        n_shards++;
        json_t *wm = n_shards > 1 ? json_object() : NULL;
        for (int sh = 0; sh < n_shards && !s; sh++) {
            char fn[256], path[4096];
            if (n_shards == 1) snprintf(fn, sizeof fn, "model.safetensors");
            else snprintf(fn, sizeof fn, "model-%05d-of-%06d.safetensors", sh + 1, n_shards);
            snprintf(path, sizeof path, "%s/%s", p->out, fn);
            lode_st_writer *w = lode_st_writer_new();
            for (int i = 0; i < pl.n && !s; i++) {
                if (shard_of[i] != sh) continue;
                tplan *t = &pl.t[i];
                int64_t ne[2] = {t->ne[0], t->ne[1]};
                s = lode_st_writer_add_tensor(w, t->hf, pick_type(p, t, false), t->vec ? 1 : 2, ne, err);
                if (wm) json_object_set_new(wm, t->hf, json_string(fn));
            }
            if (!s) s = lode_st_writer_begin(w, path, err);
            for (int i = 0; i < pl.n && !s; i++) {
                if (shard_of[i] != sh) continue;
                lode_type ty = pick_type(p, &pl.t[i], false);
                s = stream_tensor(pool, p, &pl.t[i], ty, st_write, w, err);
                total += lode_row_size(ty, pl.t[i].ne[0]) * (uint64_t)out_rows(&pl.t[i]);
            }
            if (!s) s = lode_st_writer_finish(w, err);
            lode_st_writer_free(w);
        }
        if (wm && !s) {
            char path[4096];
            snprintf(path, sizeof path, "%s/model.safetensors.index.json", p->out);
            json_t *idx = json_pack("{s:{s:I}, s:O}", "metadata", "total_size", (json_int_t)total, "weight_map", wm);
            if (json_dump_file(idx, path, JSON_INDENT(2)) != 0) s = lode_error_set(err, LODE_ERR_IO, "cannot write %s", path);
            json_decref(idx);
        }
        json_decref(wm);
        lode_free(shard_of);
    }
    if (!s && !p->quiet) {
        double dt = lode_time_s() - t0;
        fprintf(stderr, "lode gen: wrote %s (%.1f MB of weights, %d tensors) in %.1f s\n", p->out, (double)total / 1e6,
                pl.n, dt);
    }
    lode_pool_free(pool);
    lode_free(pl.t);
    lode__gen_vocab_free(&v);
    return s;
}

static lode_status write_hf_config(const lode_config *c, const lode_gen_vocab *v, const char *dir, lode_error *err) {
    json_t *o = json_object();
    bool ds = c->arch == LODE_ARCH_DEEPSEEK2;
    json_object_set_new(o, "architectures", json_pack("[s]", ds ? "DeepseekV2ForCausalLM" : "LlamaForCausalLM"));
    json_object_set_new(o, "model_type", json_string(ds ? (c->topk_method == LODE_TOPK_NOAUX_TC ? "deepseek_v3" : "deepseek_v2") : "llama"));
    json_object_set_new(o, "vocab_size", json_integer(c->n_vocab));
    json_object_set_new(o, "hidden_size", json_integer(c->n_embd));
    json_object_set_new(o, "intermediate_size", json_integer(c->n_ff));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->n_layer));
    json_object_set_new(o, "num_attention_heads", json_integer(c->n_head));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->n_head_kv));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->n_ctx_train));
    json_object_set_new(o, "rms_norm_eps", json_real(c->rms_eps));
    json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_embeddings));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "attention_bias", json_false());
    json_object_set_new(o, "torch_dtype", json_string("float32"));
    if (v->bos >= 0) json_object_set_new(o, "bos_token_id", json_integer(v->bos));
    if (v->eos >= 0) json_object_set_new(o, "eos_token_id", json_integer(v->eos));
    if (c->rope_scaling == LODE_ROPE_SCALING_LINEAR)
        json_object_set_new(o, "rope_scaling", json_pack("{s:s, s:f}", "type", "linear", "factor", c->rope_factor));
    else if (c->rope_scaling == LODE_ROPE_SCALING_YARN)
        json_object_set_new(o, "rope_scaling",
                            json_pack("{s:s, s:f, s:I, s:f, s:f, s:f, s:f}", "type", "yarn", "factor", c->rope_factor,
                                      "original_max_position_embeddings", (json_int_t)c->rope_orig_ctx, "beta_fast",
                                      c->yarn_beta_fast, "beta_slow", c->yarn_beta_slow, "mscale", c->yarn_mscale,
                                      "mscale_all_dim", c->yarn_mscale_all_dim));
    if (ds) {
        json_object_set_new(o, "q_lora_rank", c->q_lora_rank > 0 ? json_integer(c->q_lora_rank) : json_null());
        json_object_set_new(o, "kv_lora_rank", json_integer(c->kv_lora_rank));
        json_object_set_new(o, "qk_nope_head_dim", json_integer(c->qk_nope_dim));
        json_object_set_new(o, "qk_rope_head_dim", json_integer(c->qk_rope_dim));
        json_object_set_new(o, "v_head_dim", json_integer(c->v_head_dim));
        json_object_set_new(o, "n_routed_experts", json_integer(c->n_expert));
        json_object_set_new(o, "num_experts_per_tok", json_integer(c->n_expert_used));
        json_object_set_new(o, "n_shared_experts", json_integer(c->n_expert_shared));
        json_object_set_new(o, "moe_intermediate_size", json_integer(c->n_ff_exp));
        json_object_set_new(o, "first_k_dense_replace", json_integer(c->first_k_dense));
        json_object_set_new(o, "moe_layer_freq", json_integer(c->moe_layer_freq));
        json_object_set_new(o, "n_group", json_integer(c->n_group));
        json_object_set_new(o, "topk_group", json_integer(c->topk_group));
        static const char *tm[] = {"greedy", "group_limited_greedy", "noaux_tc"};
        json_object_set_new(o, "topk_method", json_string(tm[c->topk_method]));
        json_object_set_new(o, "scoring_func", json_string(c->scoring == LODE_SCORING_SIGMOID ? "sigmoid" : "softmax"));
        json_object_set_new(o, "norm_topk_prob", json_boolean(c->norm_topk_prob));
        json_object_set_new(o, "routed_scaling_factor", json_real(c->routed_scaling));
    } else {
        json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    lode_status s = json_dump_file(o, path, JSON_INDENT(2)) == 0 ? LODE_OK
                                                                 : lode_error_set(err, LODE_ERR_IO, "cannot write %s", path);
    json_decref(o);
    return s;
}
