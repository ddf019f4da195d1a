/*
 * arch_llama.c — the dense llama architecture (DeepSeek-Coder 1.3B/6.7B/33B,
 * DeepSeek LLM): RMSNorm, MHA/GQA attention with RoPE (linear scaling),
 * SwiGLU FFN.
 *
 * RoPE pairing depends on the source: Hugging Face weights use rotate_half
 * (pairs i, i+d/2); llama.cpp's converter permutes the q/k rows so GGUF files
 * use consecutive pairs (2i, 2i+1). Both give the same model.
 * Cache row per token and layer: [K (n_kv·hd) ‖ V (n_kv·hd)], K roped.
 */
#include <string.h>

#include "model_impl.h"

lode_status lode__llama_bind(lode_model *m, lode_error *err) {
    const lode_config *c = &m->cfg;
    const int64_t H = c->n_embd, hd = c->head_dim, nh = c->n_head, nkv = c->n_head_kv;
    m->rope_neox = m->st != NULL;
    char g[128], h[160];
    lode_status s;
    for (int64_t l = 0; l < c->n_layer; l++) {
        lode_layer *L = &m->layers[l];
#define BM(field, gs, hs, rows, cols)                                                              \
        snprintf(g, sizeof g, "blk.%d." gs, (int)l);                                               \
        snprintf(h, sizeof h, "model.layers.%d." hs, (int)l);                                      \
        if ((s = lode__bind_mat(m, &L->field, g, h, rows, cols, true, err))) return s;
#define BV(field, gs, hs, n)                                                                       \
        snprintf(g, sizeof g, "blk.%d." gs, (int)l);                                               \
        snprintf(h, sizeof h, "model.layers.%d." hs, (int)l);                                      \
        if ((s = lode__bind_vec(m, &L->field, g, h, n, true, err))) return s;
        BV(attn_norm, "attn_norm.weight", "input_layernorm.weight", H)
        BV(ffn_norm, "ffn_norm.weight", "post_attention_layernorm.weight", H)
        BM(wq, "attn_q.weight", "self_attn.q_proj.weight", nh * hd, H)
        BM(wk, "attn_k.weight", "self_attn.k_proj.weight", nkv * hd, H)
        BM(wv, "attn_v.weight", "self_attn.v_proj.weight", nkv * hd, H)
        BM(wo, "attn_output.weight", "self_attn.o_proj.weight", H, nh * hd)
        BM(ffn_gate, "ffn_gate.weight", "mlp.gate_proj.weight", c->n_ff, H)
        BM(ffn_up, "ffn_up.weight", "mlp.up_proj.weight", c->n_ff, H)
        BM(ffn_down, "ffn_down.weight", "mlp.down_proj.weight", H, c->n_ff)
#undef BM
#undef BV
    }
    return LODE_OK;
}

typedef struct {
    lode_model *m;
    lode_kv *kv;
    const lode_layer *L;
    const lode_eval_plan *p;
    int64_t layer;
    const float *src;
    float *dst;
    float *q, *k, *v, *out;
    const int64_t *toks;
    const int32_t *cells;
} lctx;

static void norm_attn(void *ctx, int64_t i) {
    lctx *t = ctx;
    const int64_t H = t->m->cfg.n_embd;
    lode__rmsnorm(t->dst + i * H, t->src + i * H, t->L->attn_norm, H, t->m->cfg.rms_eps);
}
static void norm_ffn(void *ctx, int64_t i) {
    lctx *t = ctx;
    const int64_t H = t->m->cfg.n_embd;
    lode__rmsnorm(t->dst + i * H, t->src + i * H, t->L->ffn_norm, H, t->m->cfg.rms_eps);
}

/* RoPE q and k of token i, then store K, V into its cache cell. */
static void rope_store(void *ctx, int64_t i) {
    lctx *t = ctx;
    const lode_config *c = &t->m->cfg;
    const int64_t hd = c->head_dim, nh = c->n_head, nkv = c->n_head_kv;
    const double pos = (double)t->p->pos[i];
    float *row = lode__kv_row(t->kv, t->layer, t->p->cell[i]);
    lode__rope_many(t->q + i * nh * hd, hd, nh, hd / 2, t->m->rope_theta_i, pos, t->m->rope_neox, 1.0f);
    memcpy(row, t->k + i * nkv * hd, (size_t)(nkv * hd) * sizeof(float));
    lode__rope_many(row, hd, nkv, hd / 2, t->m->rope_theta_i, pos, t->m->rope_neox, 1.0f);
    memcpy(row + nkv * hd, t->v + i * nkv * hd, (size_t)(nkv * hd) * sizeof(float));
}

static void attn_task(void *ctx, int64_t task) {
    const lctx *t = ctx;
    const lode_config *c = &t->m->cfg;
    const int64_t hd = c->head_dim, nh = c->n_head, nkv = c->n_head_kv;
    const int64_t qi = t->toks[task / nh], h = task % nh, kh = h / (nh / nkv);
    const float *q = t->q + (qi * nh + h) * hd;
    const int64_t nk = t->p->pos[qi] + 1;
    float *s = lode__tl_scratch(2, (size_t)nk);
    lode__kv_dots(t->kv, t->layer, t->cells, nk, kh * hd, q, hd, 1, hd, s, nk, false);
    for (int64_t j = 0; j < nk; j++) s[j] *= t->m->attn_scale;
    lode__softmax(s, nk);
    float *o = t->out + (qi * nh + h) * hd;
    memset(o, 0, (size_t)hd * sizeof(float));
    lode__kv_weighted_sum(t->kv, t->layer, t->cells, nk, nkv * hd + kh * hd, s, nk, 1, hd, o, hd);
}

lode_status lode__llama_layers(lode_model *m, lode_kv *kv, const lode_eval_plan *p, float *x, lode_error *err) {
    const lode_config *c = &m->cfg;
    const int64_t n = p->n, H = c->n_embd, hd = c->head_dim, nh = c->n_head, nkv = c->n_head_kv;
    float *a = lode__ws_alloc(m, (size_t)(n * H));
    float *q = lode__ws_alloc(m, (size_t)(n * nh * hd));
    float *k = lode__ws_alloc(m, (size_t)(n * nkv * hd));
    float *v = lode__ws_alloc(m, (size_t)(n * nkv * hd));
    float *att = lode__ws_alloc(m, (size_t)(n * nh * hd));
    float *o = lode__ws_alloc(m, (size_t)(n * H));
    for (int64_t l = 0; l < c->n_layer; l++) {
        if (m->cancel && *m->cancel) return lode_error_set(err, LODE_ERR_CANCELLED, "evaluation cancelled");
        const lode_layer *L = &m->layers[l];
        lctx t = {m, kv, L, p, l, x, a, q, k, v, att, NULL, NULL};
        lode__parallel(m, n, norm_attn, &t);
        lode__matmul(m, &L->wq, a, H, n, q, nh * hd);
        lode__matmul(m, &L->wk, a, H, n, k, nkv * hd);
        lode__matmul(m, &L->wv, a, H, n, v, nkv * hd);
        lode__parallel(m, n, rope_store, &t);
        for (int64_t g = 0; g < p->n_groups; g++) {
            t.toks = p->group_tok + p->group_first[g];
            t.cells = kv->seqs[p->group_seq[g]].cells;
            lode__parallel(m, p->group_count[g] * nh, attn_task, &t);
        }
        lode__matmul(m, &L->wo, att, nh * hd, n, o, H);
        for (int64_t i = 0; i < n * H; i++) x[i] += o[i];
        lode__parallel(m, n, norm_ffn, &t);
        lode__swiglu(m, &L->ffn_gate, &L->ffn_up, &L->ffn_down, a, n, o);
        for (int64_t i = 0; i < n * H; i++) x[i] += o[i];
    }
    return LODE_OK;
}
