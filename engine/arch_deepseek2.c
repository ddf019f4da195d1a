/*
 * arch_deepseek2.c — the DeepSeek-V2 family (V2, V2-Lite, Coder-V2, V3):
 * MLA attention with a compressed latent KV cache and DeepSeekMoE.
 * Semantics follow DeepSeek's own modeling code (spec-model.md §2–§4).
 *
 * Attention has two exact forms (spec §2.5):
 *  - decompressed: k_nope/v are expanded from the cached latent c for every
 *    key (cheap per query-key pair; used for long prefills);
 *  - absorbed: q̃_h = W_UKᵀ q_nope is dotted with the latent directly and the
 *    output is mapped back with W_UV (used for decode and short batches).
 * Both read the same cache row per token and layer: [c_kv normalized ‖ k_pe
 * roped] (kv_lora_rank + qk_rope_dim floats).
 *
 * W_UK / W_UV come either from kv_b_proj ([nh·(nope+v), d_c], HF and legacy
 * GGUF) or from the split GGUF tensors attn_k_b ([nh][d_c][nope]) and
 * attn_v_b ([nh][v][d_c]); the forms needing a transposed product use
 * lode__matmul_t, so neither layout is ever copied.
 */
#include <float.h>
#include <string.h>

#include "model_impl.h"

/* ---- binding ----------------------------------------------------------- */
lode_status lode__deepseek2_bind(lode_model *m, lode_error *err) {
    lode_config *c = &m->cfg;
    const int64_t H = c->n_embd, nh = c->n_head, dqk = c->qk_nope_dim + c->qk_rope_dim;
    const int64_t dc = c->kv_lora_rank, dr = c->qk_rope_dim, dn = c->qk_nope_dim, dv = c->v_head_dim;
    if (m->gguf) {
        /* q-LoRA presence is decided by the tensors, not the layer count
         * (pitfall 19). */
        const lode_tensor *qa = lode_gguf_find_tensor(m->gguf, "blk.0.attn_q_a.weight");
        if (qa && qa->n_dims == 2) c->q_lora_rank = qa->ne[1];
        m->moe_v3_weights = true; /* llama.cpp semantics: norm (if set) then scale */
    } else {
        m->moe_v3_weights = c->topk_method == LODE_TOPK_NOAUX_TC;
    }
    char g[128], h[160], g2[128], h2[160];
    lode_status s;
#define BM(field, gs, hs, rows, cols, req)                                                         \
    do {                                                                                           \
        snprintf(g, sizeof g, "blk.%d." gs, (int)l);                                               \
        snprintf(h, sizeof h, "model.layers.%d." hs, (int)l);                                      \
        if ((s = lode__bind_mat(m, &L->field, g, h, rows, cols, req, err))) return s;              \
    } while (0)
#define BV(field, gs, hs, n, req)                                                                  \
    do {                                                                                           \
        snprintf(g, sizeof g, "blk.%d." gs, (int)l);                                               \
        snprintf(h, sizeof h, "model.layers.%d." hs, (int)l);                                      \
        if ((s = lode__bind_vec(m, &L->field, g, h, n, req, err))) return s;                       \
    } while (0)
    for (int64_t l = 0; l < c->n_layer; l++) {
        lode_layer *L = &m->layers[l];
        BV(attn_norm, "attn_norm.weight", "input_layernorm.weight", H, true);
        BV(ffn_norm, "ffn_norm.weight", "post_attention_layernorm.weight", H, true);
        if (c->q_lora_rank > 0) {
            BM(wq_a, "attn_q_a.weight", "self_attn.q_a_proj.weight", c->q_lora_rank, H, true);
            BV(q_a_norm, "attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight", c->q_lora_rank, true);
            BM(wq_b, "attn_q_b.weight", "self_attn.q_b_proj.weight", nh * dqk, c->q_lora_rank, true);
        } else {
            BM(wq, "attn_q.weight", "self_attn.q_proj.weight", nh * dqk, H, true);
        }
        BM(wkv_a, "attn_kv_a_mqa.weight", "self_attn.kv_a_proj_with_mqa.weight", dc + dr, H, true);
        BV(kv_a_norm, "attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight", dc, true);
        snprintf(g2, sizeof g2, "blk.%d.attn_k_b.weight", (int)l);
        if (m->gguf && lode_gguf_find_tensor(m->gguf, g2)) {
            L->split_kvb = true;
            BM(wk_b, "attn_k_b.weight", "-", nh * dc, dn, true);
            BM(wv_b, "attn_v_b.weight", "-", nh * dv, dc, true);
        } else {
            BM(wkv_b, "attn_kv_b.weight", "self_attn.kv_b_proj.weight", nh * (dn + dv), dc, true);
        }
        BM(wo, "attn_output.weight", "self_attn.o_proj.weight", H, nh * dv, true);
        L->is_moe = c->n_expert > 0 && l >= c->first_k_dense && l % c->moe_layer_freq == 0;
        if (!L->is_moe) {
            BM(ffn_gate, "ffn_gate.weight", "mlp.gate_proj.weight", c->n_ff, H, true);
            BM(ffn_up, "ffn_up.weight", "mlp.up_proj.weight", c->n_ff, H, true);
            BM(ffn_down, "ffn_down.weight", "mlp.down_proj.weight", H, c->n_ff, true);
            continue;
        }
        const int64_t E = c->n_expert, I = c->n_ff_exp;
        BM(gate_inp, "ffn_gate_inp.weight", "mlp.gate.weight", E, H, true);
        bool need_bias = c->topk_method == LODE_TOPK_NOAUX_TC;
        BV(exp_bias, "exp_probs_b.bias", "mlp.gate.e_score_correction_bias", E, need_bias);
        if (L->exp_bias && c->topk_method != LODE_TOPK_NOAUX_TC) {
            /* GGUF with a correction bias: V3-style selection. */
            c->topk_method = LODE_TOPK_NOAUX_TC;
        }
        snprintf(g2, sizeof g2, "blk.%d.ffn_gate_exps.weight", (int)l);
        snprintf(h2, sizeof h2, "model.layers.%d.mlp.experts.%%d.gate_proj.weight", (int)l);
        if ((s = lode__bind_experts(m, &L->exp_gate, g2, h2, E, I, H, err))) return s;
        snprintf(g2, sizeof g2, "blk.%d.ffn_up_exps.weight", (int)l);
        snprintf(h2, sizeof h2, "model.layers.%d.mlp.experts.%%d.up_proj.weight", (int)l);
        if ((s = lode__bind_experts(m, &L->exp_up, g2, h2, E, I, H, err))) return s;
        snprintf(g2, sizeof g2, "blk.%d.ffn_down_exps.weight", (int)l);
        snprintf(h2, sizeof h2, "model.layers.%d.mlp.experts.%%d.down_proj.weight", (int)l);
        if ((s = lode__bind_experts(m, &L->exp_down, g2, h2, E, H, I, err))) return s;
        if (c->n_expert_shared > 0) {
            const int64_t S = c->n_expert_shared * I;
            BM(sh_gate, "ffn_gate_shexp.weight", "mlp.shared_experts.gate_proj.weight", S, H, true);
            BM(sh_up, "ffn_up_shexp.weight", "mlp.shared_experts.up_proj.weight", S, H, true);
            BM(sh_down, "ffn_down_shexp.weight", "mlp.shared_experts.down_proj.weight", H, S, true);
        }
    }
#undef BM
#undef BV
    return LODE_OK;
}

/* ---- attention ----------------------------------------------------------- */
typedef struct {
    lode_model *m;
    lode_kv *kv;
    const lode_layer *L;
    const lode_eval_plan *p;
    int64_t layer;
    const float *q;     /* [n][nh*dqk] (q_pe roped) */
    float *out;         /* [n][nh*dv] */
    /* current group */
    const int64_t *toks; /* token indices of the group */
    const int32_t *cells; /* the sequence's cells */
    /* decompressed form */
    const float *K;      /* [n_keys][ldk] k_nope of head h at h*kstride */
    const float *V;      /* [n_keys][ldv] */
    int64_t ldk, ldv, kstride, vstride;
    const float *Kpe;    /* [n_keys][qk_rope_dim] roped keys */
    int64_t nq, nk;
} attn_ctx;

/* Absorbed form (decode and small batches), flash-decoding style in three
 * pool runs, so each cached latent row is read from memory once per query
 * for all heads:
 *   1. per (query, head): q̃_h = W_UK_hᵀ q_nope,h;
 *   2. per (query, chunk of keys): every head's scores over the chunk, in
 *      blocks of ABS_SB keys (strided GEMMs, lode__kv_dots) with an online
 *      softmax (running max and sum per head) and the weighted latent sums
 *      of the same block while it is still in cache (lode__kv_weighted_sum);
 *   3. per (query, head): the chunks merged (rescaled to the common max) and
 *      o_h = W_UV_h (latent sum / total weight).
 * Chunks split one query's keys over the threads (decode has one query);
 * with as many queries as threads a query is one chunk. */
#define ABS_SB 64   /* keys per block: 64 latent rows (147 KB) stay in L2 */
#define ABS_MIN_CHUNK 16

typedef struct {
    const attn_ctx *a;
    float *qt;   /* [nq][nh][dc] */
    float *part; /* [nq][nch][nh][dc + 2]: latent sums, then max and sum of weights per head */
    int64_t nch, chunk;
} abs_ctx;

static void abs_qt_task(void *ctx, int64_t task) {
    const abs_ctx *b = ctx;
    const attn_ctx *a = b->a;
    const lode_config *c = &a->m->cfg;
    const int64_t nh = c->n_head, dn = c->qk_nope_dim, dv = c->v_head_dim, dc = c->kv_lora_rank;
    const int64_t dqk = dn + c->qk_rope_dim, i = task / nh, h = task % nh;
    const float *q = a->q + a->toks[i] * nh * dqk + h * dqk;
    float *qt = b->qt + (i * nh + h) * (dc + c->qk_rope_dim);
    /* [q̃ | q_pe]: one dot with the cached row [latent | k_pe] gives both
     * score terms */
    memcpy(qt + dc, q + dn, (size_t)c->qk_rope_dim * sizeof(float));
    const lode_layer *L = a->L;
    if (L->split_kvb) {
        lode_mat v = lode_mat_rows(L->wk_b, h * dc, dc);
        lode_matvec_rows(v.type, v.data, v.cols, q, qt, 0, dc);
    } else {
        lode_mat v = lode_mat_rows(L->wkv_b, h * (dn + dv), dn);
        lode__matmul_t(a->m, &v, q, dn, 1, qt, dc);
    }
}

static void abs_chunk_task(void *ctx, int64_t task) {
    const abs_ctx *b = ctx;
    const attn_ctx *a = b->a;
    const lode_config *c = &a->m->cfg;
    const int64_t nh = c->n_head, dc = c->kv_lora_rank, dr = c->qk_rope_dim;
    const int64_t i = task / b->nch, ch = task % b->nch, qi = a->toks[i];
    const int64_t nk = a->p->pos[qi] + 1, k0 = ch * b->chunk, k1 = k0 + b->chunk < nk ? k0 + b->chunk : nk;
    float *part = b->part + (i * b->nch + ch) * nh * (dc + 2);
    float *mx = part + nh * dc, *sum = mx + nh;
    memset(part, 0, (size_t)(nh * dc) * sizeof(float));
    for (int64_t h = 0; h < nh; h++) mx[h] = -INFINITY, sum[h] = 0;
    const float *qt = b->qt + i * nh * (dc + dr);
    float *S = lode__tl_scratch(2, (size_t)(nh * ABS_SB));
    const float scale = a->m->attn_scale;
    for (int64_t j0 = k0; j0 < k1; j0 += ABS_SB) {
        const int64_t n = k1 - j0 < ABS_SB ? k1 - j0 : ABS_SB;
        lode__kv_dots(a->kv, a->layer, a->cells + j0, n, 0, qt, dc + dr, nh, dc + dr, S, ABS_SB, false);
        for (int64_t h = 0; h < nh; h++) {
            float *sh = S + h * ABS_SB;
            const float m = lode_scale_max_f32(sh, n, scale, mx[h]);
            if (m > mx[h]) { /* a new maximum: rescale what the head has so far */
                const float r = expf(mx[h] - m);
                if (sum[h] > 0) {
                    for (int64_t d = 0; d < dc; d++) part[h * dc + d] *= r;
                    sum[h] *= r;
                }
                mx[h] = m;
            }
            sum[h] += (float)lode_exp_sub_f32(sh, n, m);
        }
        lode__kv_weighted_sum(a->kv, a->layer, a->cells + j0, n, 0, S, ABS_SB, nh, dc, part, dc);
    }
}

static void abs_merge_task(void *ctx, int64_t task) {
    const abs_ctx *b = ctx;
    const attn_ctx *a = b->a;
    const lode_config *c = &a->m->cfg;
    const int64_t nh = c->n_head, dn = c->qk_nope_dim, dv = c->v_head_dim, dc = c->kv_lora_rank;
    const int64_t i = task / nh, h = task % nh, qi = a->toks[i];
    const int64_t stride = nh * (dc + 2), nk = a->p->pos[qi] + 1, nch = (nk + b->chunk - 1) / b->chunk;
    const float *p0 = b->part + i * b->nch * stride;
    float M = -INFINITY;
    for (int64_t ch = 0; ch < nch; ch++) M = p0[ch * stride + nh * dc + h] > M ? p0[ch * stride + nh * dc + h] : M;
    float *lat = lode__tl_scratch(1, (size_t)dc);
    memset(lat, 0, (size_t)dc * sizeof(float));
    double total = 0;
    for (int64_t ch = 0; ch < nch; ch++) {
        const float *pc = p0 + ch * stride;
        const float w = expf(pc[nh * dc + h] - M);
        total += (double)w * pc[nh * dc + nh + h];
        lode_axpy_f32(dc, w, pc + h * dc, lat);
    }
    const float inv = (float)(1.0 / total);
    for (int64_t d = 0; d < dc; d++) lat[d] *= inv;
    const lode_layer *L = a->L;
    float *o = a->out + qi * nh * dv + h * dv;
    lode_mat wuv = L->split_kvb ? lode_mat_rows(L->wv_b, h * dv, dv) : lode_mat_rows(L->wkv_b, h * (dn + dv) + dn, dv);
    lode_matvec_rows(wuv.type, wuv.data, wuv.cols, lat, o, 0, dv);
}

static void attn_absorbed(lode_model *m, const attn_ctx *a) {
    const lode_config *c = &m->cfg;
    const int64_t nh = c->n_head, dc = c->kv_lora_rank, nq = a->nq;
    int64_t nkmax = 0;
    for (int64_t i = 0; i < nq; i++) nkmax = a->p->pos[a->toks[i]] + 1 > nkmax ? a->p->pos[a->toks[i]] + 1 : nkmax;
    const int64_t nt = lode_pool_size(m->pool);
    /* enough chunks for two per thread (decode), one per query otherwise */
    int64_t chunk = nkmax;
    if (nq < nt) {
        chunk = (nkmax + 2 * nt - 1) / (2 * nt);
        chunk = chunk < ABS_MIN_CHUNK ? ABS_MIN_CHUNK : (chunk + 15) & ~(int64_t)15;
    }
    abs_ctx b = {a, NULL, NULL, (nkmax + chunk - 1) / chunk, chunk};
    lode_ws_mark mk = lode__ws_mark(m);
    b.qt = lode__ws_alloc(m, (size_t)(nq * nh * (dc + c->qk_rope_dim)));
    b.part = lode__ws_alloc(m, (size_t)(nq * b.nch * nh * (dc + 2)));
    lode__parallel(m, nq * nh, abs_qt_task, &b);
    lode__parallel(m, nq * b.nch, abs_chunk_task, &b);
    lode__parallel(m, nq * nh, abs_merge_task, &b);
    lode__ws_release(m, mk);
}

/* Decompressed form as GEMMs, one (head, block of DQB queries) per task,
 * K/V expanded beforehand: S = Q_nope K_nopeᵀ + Q_pe K_peᵀ over the keys the
 * block's last query sees, a causal softmax per query (keys past its own
 * position get weight 0), then O = P V (lode_gemm_nn_f32 on the values as they are). */
#define DQB 32
static void attn_decompressed_task(void *ctx, int64_t task) {
    const attn_ctx *a = ctx;
    const lode_config *c = &a->m->cfg;
    const int64_t nh = c->n_head, dn = c->qk_nope_dim, dr = c->qk_rope_dim, dv = c->v_head_dim;
    const int64_t dqk = dn + dr;
    const int64_t h = task % nh, b0 = (task / nh) * DQB;
    const int64_t nb = a->nq - b0 < DQB ? a->nq - b0 : DQB;
    int64_t nkmax = 0;
    for (int64_t i = 0; i < nb; i++) {
        const int64_t nk = a->p->pos[a->toks[b0 + i]] + 1;
        nkmax = nk > nkmax ? nk : nkmax;
    }
    float *buf = lode__tl_scratch(2, (size_t)(nb * (dn + dr + nkmax + dv)));
    float *Qn = buf, *Qp = Qn + nb * dn, *S = Qp + nb * dr, *O = S + nb * nkmax;
    for (int64_t i = 0; i < nb; i++) {
        const float *q = a->q + a->toks[b0 + i] * nh * dqk + h * dqk;
        memcpy(Qn + i * dn, q, (size_t)dn * sizeof(float));
        memcpy(Qp + i * dr, q + dn, (size_t)dr * sizeof(float));
    }
    lode_gemm_f32(a->K + h * a->kstride, a->ldk, nkmax, Qn, dn, nb, S, nkmax, dn, false);
    lode_gemm_f32(a->Kpe, dr, nkmax, Qp, dr, nb, S, nkmax, dr, true);
    for (int64_t i = 0; i < nb; i++) {
        float *s = S + i * nkmax;
        const int64_t nk = a->p->pos[a->toks[b0 + i]] + 1;
        const float mx = lode_scale_max_f32(s, nk, a->m->attn_scale, -INFINITY);
        const float inv = (float)(1.0 / lode_exp_sub_f32(s, nk, mx));
        for (int64_t j = 0; j < nk; j++) s[j] *= inv;
        for (int64_t j = nk; j < nkmax; j++) s[j] = 0.0f;
    }
    lode_gemm_nn_f32(S, nkmax, nb, a->V + h * a->vstride, a->ldv, dv, O, dv, nkmax, false);
    for (int64_t i = 0; i < nb; i++)
        memcpy(a->out + a->toks[b0 + i] * nh * dv + h * dv, O + i * dv, (size_t)dv * sizeof(float));
}

typedef struct {
    lode_model *m;
    const lode_layer *L;
    const float *C;
    int64_t nk;
    float *K;
} kexp_ctx;

/* K_h = C W_h for head h: W_h = attn_k_b rows h·dc .. h·dc + dc - 1 ([dc][dn],
 * as stored: row h·dc + r holds W_UK_h[:, r]), read in place when f32 and
 * dequantized once per call otherwise; K_h lands at column h·dn of K
 * ([nk][nh·dn]). One task per head. */
static void kexp_head(void *ctx, int64_t h) {
    const kexp_ctx *k = ctx;
    const lode_config *c = &k->m->cfg;
    const int64_t dc = c->kv_lora_rank, dn = c->qk_nope_dim, nh = c->n_head;
    const lode_mat *W = &k->L->wk_b;
    const float *B;
    int64_t ldb;
    if (W->type == LODE_TYPE_F32) {
        B = (const float *)((const char *)W->data + (size_t)(h * dc) * W->row_bytes);
        ldb = (int64_t)(W->row_bytes / sizeof(float));
    } else {
        const lode_type_traits *tr = lode_type_get(W->type);
        float *buf = lode__tl_scratch(3, (size_t)(dc * dn));
        for (int64_t r = 0; r < dc; r++) tr->to_f32((const char *)W->data + (size_t)(h * dc + r) * W->row_bytes, buf + r * dn, dn);
        B = buf, ldb = dn;
    }
    lode_gemm_nn_f32(k->C, dc, k->nk, B, ldb, dn, k->K + h * dn, nh * dn, dc, false);
}

static void attention(lode_model *m, lode_kv *kv, const lode_layer *L, int64_t layer, const lode_eval_plan *p,
                      const float *q, float *out) {
    const lode_config *c = &m->cfg;
    const int64_t nh = c->n_head, dn = c->qk_nope_dim, dv = c->v_head_dim, dc = c->kv_lora_rank;
    for (int64_t g = 0; g < p->n_groups; g++) {
        const int64_t nq = p->group_count[g];
        const int64_t *toks = p->group_tok + p->group_first[g];
        const int32_t *cells = kv->seqs[p->group_seq[g]].cells;
        attn_ctx a = {m, kv, L, p, layer, q, out, toks, cells, NULL, NULL, 0, 0, 0, 0, NULL, nq, 0};
        bool decompress = m->mla_mode == LODE_MLA_DECOMPRESSED || (m->mla_mode == LODE_MLA_AUTO && nq >= 64);
        if (!decompress) {
            attn_absorbed(m, &a);
            continue;
        }
        /* Keys: the whole sequence up to its last position in this batch. */
        const int64_t nk = p->pos[toks[nq - 1]] + 1;
        lode_ws_mark mk = lode__ws_mark(m);
        float *C = lode__ws_alloc(m, (size_t)(nk * dc));
        for (int64_t j = 0; j < nk; j++) memcpy(C + j * dc, lode__kv_row(kv, layer, cells[j]), (size_t)dc * sizeof(float));
        if (L->split_kvb) {
            float *K = lode__ws_alloc(m, (size_t)(nk * nh * dn));
            float *V = lode__ws_alloc(m, (size_t)(nk * nh * dv));
            lode__matmul(m, &L->wv_b, C, dc, nk, V, nh * dv);
            /* k = W_UK c: per head, the latent rows times attn_k_b's
             * [dc][dn] slice in its stored layout (no transpose). */
            kexp_ctx kc = {m, L, C, nk, K};
            lode__parallel(m, nh, kexp_head, &kc);
            a.K = K, a.V = V, a.ldk = nh * dn, a.ldv = nh * dv, a.kstride = dn, a.vstride = dv;
        } else {
            float *KV = lode__ws_alloc(m, (size_t)(nk * nh * (dn + dv)));
            lode__matmul(m, &L->wkv_b, C, dc, nk, KV, nh * (dn + dv));
            a.K = KV, a.V = KV + dn, a.ldk = a.ldv = nh * (dn + dv), a.kstride = a.vstride = dn + dv;
        }
        const int64_t dr = c->qk_rope_dim;
        float *Kpe = lode__ws_alloc(m, (size_t)(nk * dr));
        for (int64_t j = 0; j < nk; j++)
            memcpy(Kpe + j * dr, lode__kv_row(kv, layer, cells[j]) + dc, (size_t)dr * sizeof(float));
        a.Kpe = Kpe, a.nk = nk;
        lode__parallel(m, ((nq + DQB - 1) / DQB) * nh, attn_decompressed_task, &a);
        lode__ws_release(m, mk);
    }
}

/* ---- per-token small steps ------------------------------------------------ */
typedef struct {
    lode_model *m;
    lode_kv *kv;
    const lode_layer *L;
    const lode_eval_plan *p;
    int64_t layer;
    const float *src;
    float *dst;
    float *q;
    const float *ckv;
} tok_ctx;

static void norm_rows(void *ctx, int64_t i) {
    tok_ctx *t = ctx;
    const int64_t H = t->m->cfg.n_embd;
    const float *w = t->layer < 0 ? t->L->ffn_norm : t->L->attn_norm;
    lode__rmsnorm(t->dst + i * H, t->src + i * H, w, H, t->m->cfg.rms_eps);
}

static void q_a_norm_rows(void *ctx, int64_t i) {
    tok_ctx *t = ctx;
    const int64_t r = t->m->cfg.q_lora_rank;
    lode__rmsnorm(t->dst + i * r, t->src + i * r, t->L->q_a_norm, r, t->m->cfg.rms_eps);
}

/* kv_a output → cache row [RMSNorm(c_kv) ‖ RoPE(k_pe)], and RoPE on q_pe. */
static void kv_rows(void *ctx, int64_t i) {
    tok_ctx *t = ctx;
    const lode_config *c = &t->m->cfg;
    const int64_t dc = c->kv_lora_rank, dr = c->qk_rope_dim, nh = c->n_head, dqk = c->qk_nope_dim + dr;
    const float *src = t->ckv + i * (dc + dr);
    float *row = lode__kv_row(t->kv, t->layer, t->p->cell[i]);
    lode__rmsnorm(row, src, t->L->kv_a_norm, dc, c->rms_eps);
    memcpy(row + dc, src + dc, (size_t)dr * sizeof(float));
    const double pos = (double)t->p->pos[i];
    lode__rope(row + dc, dr / 2, t->m->rope_theta_i, pos, false, t->m->rope_mag);
    lode__rope_many(t->q + i * nh * dqk + c->qk_nope_dim, dqk, nh, dr / 2, t->m->rope_theta_i, pos, false, t->m->rope_mag);
}

/* ---- MoE --------------------------------------------------------------------- */
/* Indices of the k largest values (ties: lower index first). */
static void topk(const float *v, int64_t n, int64_t k, int32_t *idx) {
    for (int64_t a = 0; a < k; a++) {
        int64_t best = -1;
        for (int64_t e = 0; e < n; e++) {
            bool taken = false;
            for (int64_t b = 0; b < a; b++)
                if (idx[b] == e) taken = true;
            if (taken) continue;
            if (best < 0 || v[e] > v[best]) best = e;
        }
        idx[a] = (int32_t)best;
    }
}

/* Routing for one token: scores from router logits, expert ids and weights
 * (spec §4.2–§4.4). */
static void route(const lode_model *m, const lode_layer *L, float *logits, int32_t *ids, float *w) {
    const lode_config *c = &m->cfg;
    const int64_t E = c->n_expert, k = c->n_expert_used, G = c->n_group, per = E / G;
    float *sc = logits; /* in place */
    if (c->scoring == LODE_SCORING_SOFTMAX) lode__softmax(sc, E);
    else
        for (int64_t e = 0; e < E; e++) sc[e] = 1.0f / (1.0f + expf(-sc[e]));
    float sel[1024], gs[1024];
    float *selv = E <= 1024 ? sel : lode__tl_scratch(0, (size_t)E);
    for (int64_t e = 0; e < E; e++) selv[e] = sc[e] + (c->topk_method == LODE_TOPK_NOAUX_TC && L->exp_bias ? L->exp_bias[e] : 0.0f);
    if (c->topk_method != LODE_TOPK_GREEDY && G > 1) {
        for (int64_t g = 0; g < G; g++) {
            const float *v = selv + g * per;
            if (c->topk_method == LODE_TOPK_GROUP_LIMITED) {
                float mx = v[0];
                for (int64_t e = 1; e < per; e++) mx = v[e] > mx ? v[e] : mx;
                gs[g] = mx;
            } else { /* sum of the top-2 biased scores */
                int32_t t2[2];
                int64_t kk = per >= 2 ? 2 : 1;
                topk(v, per, kk, t2);
                gs[g] = v[t2[0]] + (kk == 2 ? v[t2[1]] : 0.0f);
            }
        }
        int32_t keep[1024];
        topk(gs, G, c->topk_group, keep);
        for (int64_t g = 0; g < G; g++) {
            bool kept = false;
            for (int64_t t = 0; t < c->topk_group; t++)
                if (keep[t] == g) kept = true;
            if (!kept)
                for (int64_t e = 0; e < per; e++) selv[g * per + e] = 0.0f; /* masked_fill(..., 0.0) as the reference */
        }
    }
    topk(selv, E, k, ids);
    double sum = 0;
    for (int64_t t = 0; t < k; t++) {
        w[t] = sc[ids[t]]; /* unbiased scores */
        sum += w[t];
    }
    if (m->moe_v3_weights) {
        if (c->norm_topk_prob)
            for (int64_t t = 0; t < k; t++) w[t] = (float)(w[t] / (sum + 1e-20));
        for (int64_t t = 0; t < k; t++) w[t] *= c->routed_scaling;
    } else if (k > 1 && c->norm_topk_prob) {
        for (int64_t t = 0; t < k; t++) w[t] = (float)(w[t] / (sum + 1e-20));
    } else {
        for (int64_t t = 0; t < k; t++) w[t] *= c->routed_scaling;
    }
}

/* ---- MoE decode (one token): every selected expert and the shared experts
 * in two pool runs (gate+up of all, then down of all) instead of two per
 * expert. Per-row arithmetic is the expert-grouped path's (same kernels,
 * same inputs), and outputs are summed in the same order (routed experts by
 * ascending id, then the shared experts). */
#define MOE1_MAX 33   /* routed experts per token + the shared block */
#define MOE1_CHUNK 64 /* rows per task */
typedef struct {
    const lode_mat *g[MOE1_MAX], *u[MOE1_MAX], *d[MOE1_MAX];
    float *G[MOE1_MAX], *U[MOE1_MAX], *D[MOE1_MAX];
    const void *hq[MOE1_MAX]; /* quantized SwiGLU output per item (int8 path) */
    const float *x;           /* the token (f32) */
    const void *xq[MOE1_MAX]; /* the token quantized for item's gate/up (int8 path) */
    int64_t first[MOE1_MAX + 1]; /* task prefix per item */
    int n_items;
    bool down;
} moe1_ctx;

static void moe1_task(void *ctx, int64_t i) {
    const moe1_ctx *c = ctx;
    int k = 0;
    while (i >= c->first[k + 1]) k++;
    int64_t j = i - c->first[k];
    const lode_mat *W;
    float *Y;
    const void *xq;
    const float *x;
    if (c->down) {
        W = c->d[k], Y = c->D[k], xq = c->hq[k], x = c->U[k];
    } else {
        const int64_t nch = (c->g[k]->rows + MOE1_CHUNK - 1) / MOE1_CHUNK;
        W = j < nch ? c->g[k] : c->u[k], Y = j < nch ? c->G[k] : c->U[k], xq = c->xq[k], x = c->x;
        if (j >= nch) j -= nch;
    }
    const int64_t r0 = j * MOE1_CHUNK, r1 = r0 + MOE1_CHUNK < W->rows ? r0 + MOE1_CHUNK : W->rows;
    lode__mat_rows(W, xq, x, W->cols, 1, Y, W->rows, r0, r1);
}

/* Activation family of W's int8 path: 0 none (off, float type), 1 32-blocks,
 * 2 K-quant blocks. */
static int moe1_family(const lode_mat *W) {
    if (!lode_quant_int8_enabled() || lode_act_row_size(W->type, W->cols) == 0) return 0;
    return lode_type_get(W->type)->block_size == 32 ? 1 : 2;
}

static void moe_one_token(lode_model *m, const lode_layer *L, const float *b, const int32_t *ids, const float *w,
                          float *y) {
    const lode_config *c = &m->cfg;
    const int64_t k = c->n_expert_used, H = c->n_embd;
    moe1_ctx t;
    memset(&t, 0, sizeof t);
    float wt[MOE1_MAX];
    /* Routed experts by ascending id (the grouped path's order). */
    int32_t order[MOE1_MAX];
    for (int64_t a = 0; a < k; a++) order[a] = (int32_t)a;
    for (int64_t a = 1; a < k; a++)
        for (int64_t q = a; q > 0 && ids[order[q]] < ids[order[q - 1]]; q--) {
            const int32_t tmp = order[q];
            order[q] = order[q - 1], order[q - 1] = tmp;
        }
    for (int64_t a = 0; a < k; a++) {
        const int32_t e = ids[order[a]];
        t.g[a] = &L->exp_gate[e], t.u[a] = &L->exp_up[e], t.d[a] = &L->exp_down[e], wt[a] = w[order[a]];
    }
    t.n_items = (int)k;
    if (c->n_expert_shared > 0) {
        t.g[k] = &L->sh_gate, t.u[k] = &L->sh_up, t.d[k] = &L->sh_down, wt[k] = 1.0f;
        t.n_items++;
    }
    lode_ws_mark mk = lode__ws_mark(m);
    for (int a = 0; a < t.n_items; a++) {
        t.G[a] = lode__ws_alloc(m, (size_t)t.g[a]->rows);
        t.U[a] = lode__ws_alloc(m, (size_t)t.u[a]->rows);
        t.D[a] = lode__ws_alloc(m, (size_t)H);
    }
    t.x = b;
    /* The token quantized once per activation family the items need. */
    const void *xq_fam[3] = {NULL, NULL, NULL};
    for (int a = 0; a < t.n_items; a++) {
        const int f = moe1_family(t.g[a]);
        if (f == 0 || f != moe1_family(t.u[a]) || t.g[a]->cols != t.u[a]->cols) continue;
        if (!xq_fam[f]) {
            void *xq = lode__ws_alloc(m, (lode_act_row_size(t.g[a]->type, H) + 3) / 4);
            lode_act_quantize(t.g[a]->type, b, xq, H);
            xq_fam[f] = xq;
        }
        t.xq[a] = xq_fam[f];
    }
    t.first[0] = 0;
    for (int a = 0; a < t.n_items; a++)
        t.first[a + 1] = t.first[a] + 2 * ((t.g[a]->rows + MOE1_CHUNK - 1) / MOE1_CHUNK);
    lode__parallel(m, t.first[t.n_items], moe1_task, &t);
    /* SwiGLU in place in U, then the down products. */
    for (int a = 0; a < t.n_items; a++) {
        const int64_t I = t.g[a]->rows;
        lode_swiglu_f32(t.G[a], t.U[a], t.U[a], I);
        if (moe1_family(t.d[a])) {
            void *hq = lode__ws_alloc(m, (lode_act_row_size(t.d[a]->type, I) + 3) / 4);
            lode_act_quantize(t.d[a]->type, t.U[a], hq, I);
            t.hq[a] = hq;
        }
    }
    t.down = true;
    for (int a = 0; a < t.n_items; a++) t.first[a + 1] = t.first[a] + (t.d[a]->rows + MOE1_CHUNK - 1) / MOE1_CHUNK;
    lode__parallel(m, t.first[t.n_items], moe1_task, &t);
    memset(y, 0, (size_t)H * sizeof(float));
    for (int a = 0; a < (int)k; a++)
        for (int64_t d = 0; d < H; d++) y[d] += wt[a] * t.D[a][d];
    if (c->n_expert_shared > 0)
        for (int64_t d = 0; d < H; d++) y[d] += t.D[k][d];
    lode__ws_release(m, mk);
}

static void moe(lode_model *m, const lode_layer *L, const float *b, int64_t n, float *y) {
    const lode_config *c = &m->cfg;
    const int64_t E = c->n_expert, k = c->n_expert_used, H = c->n_embd;
    lode_ws_mark mk = lode__ws_mark(m);
    float *logits = lode__ws_alloc(m, (size_t)(n * E));
    lode__matmul(m, &L->gate_inp, b, H, n, logits, E);
    int32_t *ids = (int32_t *)lode__ws_alloc(m, (size_t)(n * k));
    float *w = lode__ws_alloc(m, (size_t)(n * k));
    for (int64_t i = 0; i < n; i++) route(m, L, logits + i * E, ids + i * k, w + i * k);
    if (n == 1 && k + 1 <= MOE1_MAX) {
        moe_one_token(m, L, b, ids, w, y);
        lode__ws_release(m, mk);
        return;
    }
    /* Expert-grouped evaluation: gather the tokens routed to each expert. */
    int64_t *cnt = (int64_t *)lode__ws_alloc(m, (size_t)(2 * E));
    memset(cnt, 0, (size_t)E * sizeof(int64_t));
    for (int64_t i = 0; i < n * k; i++) cnt[ids[i]]++;
    int64_t *lst = (int64_t *)lode__ws_alloc(m, (size_t)(2 * n * k));
    float *Xe = lode__ws_alloc(m, (size_t)(n * H));
    float *Ye = lode__ws_alloc(m, (size_t)(n * H));
    memset(y, 0, (size_t)(n * H) * sizeof(float));
    for (int64_t e = 0; e < E; e++) {
        if (!cnt[e]) continue;
        int64_t ne = 0;
        for (int64_t i = 0; i < n * k; i++)
            if (ids[i] == e) lst[ne++] = i;
        for (int64_t r = 0; r < ne; r++) memcpy(Xe + r * H, b + (lst[r] / k) * H, (size_t)H * sizeof(float));
        lode__swiglu(m, &L->exp_gate[e], &L->exp_up[e], &L->exp_down[e], Xe, ne, Ye);
        for (int64_t r = 0; r < ne; r++) {
            const float wt = w[lst[r]];
            float *yr = y + (lst[r] / k) * H;
            const float *ye = Ye + r * H;
            for (int64_t d = 0; d < H; d++) yr[d] += wt * ye[d];
        }
    }
    if (c->n_expert_shared > 0) {
        lode__swiglu(m, &L->sh_gate, &L->sh_up, &L->sh_down, b, n, Ye);
        for (int64_t i = 0; i < n * H; i++) y[i] += Ye[i];
    }
    lode__ws_release(m, mk);
}

/* ---- layers -------------------------------------------------------------------- */
lode_status lode__deepseek2_layers(lode_model *m, lode_kv *kv, const lode_eval_plan *p, float *x, lode_error *err) {
    const lode_config *c = &m->cfg;
    const int64_t n = p->n, H = c->n_embd, nh = c->n_head;
    const int64_t dqk = c->qk_nope_dim + c->qk_rope_dim, dc = c->kv_lora_rank, dr = c->qk_rope_dim;
    float *a = lode__ws_alloc(m, (size_t)(n * H));
    float *q = lode__ws_alloc(m, (size_t)(n * nh * dqk));
    float *ckv = lode__ws_alloc(m, (size_t)(n * (dc + dr)));
    float *att = lode__ws_alloc(m, (size_t)(n * nh * c->v_head_dim));
    float *o = lode__ws_alloc(m, (size_t)(n * H));
    float *qa = c->q_lora_rank > 0 ? lode__ws_alloc(m, (size_t)(n * c->q_lora_rank) * 2) : NULL;
    for (int64_t l = 0; l < c->n_layer; l++) {
        if (m->cancel && *m->cancel) return lode_error_set(err, LODE_ERR_CANCELLED, "evaluation cancelled");
        const lode_layer *L = &m->layers[l];
        tok_ctx t = {m, kv, L, p, l, x, a, q, ckv};
        lode__parallel(m, n, norm_rows, &t);
        if (c->q_lora_rank > 0) {
            float *qan = qa + n * c->q_lora_rank;
            lode__matmul(m, &L->wq_a, a, H, n, qa, c->q_lora_rank);
            tok_ctx tq = {m, kv, L, p, l, qa, qan, q, ckv};
            lode__parallel(m, n, q_a_norm_rows, &tq);
            lode__matmul(m, &L->wq_b, qan, c->q_lora_rank, n, q, nh * dqk);
        } else {
            lode__matmul(m, &L->wq, a, H, n, q, nh * dqk);
        }
        lode__matmul(m, &L->wkv_a, a, H, n, ckv, dc + dr);
        lode__parallel(m, n, kv_rows, &t);
        attention(m, kv, L, l, p, q, att);
        lode__matmul(m, &L->wo, att, nh * c->v_head_dim, n, o, H);
        for (int64_t i = 0; i < n * H; i++) x[i] += o[i];
        tok_ctx tf = {m, kv, L, p, -1, x, a, q, ckv};
        lode__parallel(m, n, norm_rows, &tf);
        if (L->is_moe) moe(m, L, a, n, o);
        else lode__swiglu(m, &L->ffn_gate, &L->ffn_up, &L->ffn_down, a, n, o);
        for (int64_t i = 0; i < n * H; i++) x[i] += o[i];
    }
    return LODE_OK;
}
