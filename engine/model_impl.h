/*
 * model_impl.h — private model structures shared by the loader (model.c),
 * the math helpers (ops.c), the KV cache and the architecture files
 * (arch_deepseek2.c, arch_llama.c). Not a public header.
 *
 * Weights are borrowed views into the memory-mapped files (lode_mat); only
 * small vectors (norm weights, routing biases) are converted to owned f32.
 * Shapes are written PyTorch-style [rows, cols] = [out, in].
 */
#ifndef LODE_MODEL_IMPL_H
#define LODE_MODEL_IMPL_H

#include <math.h>
#include <stdio.h>

#include "lode_engine.h"
#include "lode_gguf.h"
#include "lode_pool.h"
#include "lode_quant.h"
#include "lode_safetensors.h"

/* A row-major matrix view: `rows` rows of `cols` elements of `type`. */
typedef struct lode_mat {
    lode_type type;
    int64_t rows, cols;
    const void *data;
    size_t row_bytes;
    const char *name; /* for messages */
    bool r16;         /* interleaved in groups of 16 rows (lode_r16_pack_groups): lode__mat_rows only */
} lode_mat;

static inline lode_mat lode_mat_rows(lode_mat m, int64_t r0, int64_t n) {
    LODE_ASSERT(!m.r16 || (r0 % 16 == 0 && n % 16 == 0));
    lode_mat v = m;
    v.data = (const char *)m.data + (size_t)r0 * m.row_bytes;
    v.rows = n;
    return v;
}

typedef struct lode_layer {
    float *attn_norm;          /* [H] */
    float *ffn_norm;           /* [H] */
    /* MLA (deepseek2) */
    lode_mat wq;               /* [nh*d_qk, H] (no q_lora) */
    lode_mat wq_a;             /* [d_cq, H] */
    float *q_a_norm;           /* [d_cq] */
    lode_mat wq_b;             /* [nh*d_qk, d_cq] */
    lode_mat wkv_a;            /* [d_c + d_rope, H] */
    float *kv_a_norm;          /* [d_c] */
    lode_mat wkv_b;            /* [nh*(d_nope+d_v), d_c]  (HF / legacy GGUF) */
    lode_mat wk_b;             /* [nh*d_c, d_nope]: row h*d_c+c = W_UK_h[:, c] (split GGUF) */
    lode_mat wv_b;             /* [nh*d_v, d_c]: rows of W_UV_h (split GGUF) */
    bool split_kvb;
    /* llama attention */
    lode_mat wk, wv;           /* [n_kv*hd, H] */
    lode_mat wo;               /* [H, nh*d_v] */
    /* dense FFN */
    lode_mat ffn_gate, ffn_up; /* [n_ff, H] */
    lode_mat ffn_down;         /* [H, n_ff] */
    /* MoE */
    bool is_moe;
    lode_mat gate_inp;         /* [E, H] router */
    float *exp_bias;           /* [E] e_score_correction_bias (noaux_tc) or NULL */
    lode_mat *exp_gate, *exp_up, *exp_down; /* E views each: [I,H], [I,H], [H,I] */
    lode_mat sh_gate, sh_up;   /* [n_shared*I, H] */
    lode_mat sh_down;          /* [H, n_shared*I] */
} lode_layer;

/* Per-call scratch, grown on demand and reused (no allocation in the token
 * loop once warmed up to the batch size). */
typedef struct lode_ws_block {
    float *buf;
    size_t cap, used; /* floats */
} lode_ws_block;
typedef struct lode_ws {
    lode_ws_block *blocks;
    int n_blocks, cur;
} lode_ws;
typedef struct lode_ws_mark {
    int cur;
    size_t used;
} lode_ws_mark;

struct lode_model {
    char *path;
    const char *format; /* "gguf" | "hf" */
    lode_config cfg;
    lode_gguf *gguf;
    lode_st *st;
    lode_mat tok_embd;  /* [V, H] */
    lode_mat output;    /* [V, H] */
    float *output_norm; /* [H] */
    lode_layer *layers;
    bool rope_neox;     /* llama HF weights: rotate_half pairing */
    float *rope_theta_i; /* [rope_dim/2] per-pair frequencies (YaRN applied) */
    float attn_scale;    /* softmax scale incl. YaRN m^2 */
    float rope_mag;      /* YaRN cos/sin factor (1 for released configs) */
    lode_mla_mode mla_mode;
    int quant_type; /* -1 or the type float matrices are quantized to at load */
    bool moe_v3_weights; /* norm then always scale (V3 / llama.cpp); else V2 remote-code rule */
    lode_pool *pool;
    lode_ws ws;
    volatile int *cancel;
    uint64_t weight_bytes;
    bool resident;      /* GGUF tensor data read into RAM (place_weights) */
    int64_t n_r16;      /* matrices in the r16 layout (lode__repack_weights) */
    uint64_t r16_bytes; /* and their bytes */
    void **owned; /* owned f32 vectors */
    size_t n_owned, cap_owned;
    struct lode_cuda_model *cuda; /* device copy (kernels/lode_cuda.h) or NULL: CPU */
};

/* ---- loader helpers (model.c) ---- */
float *lode__model_own_f32(lode_model *m, size_t n);

/* ---- KV cache internals (kv_cache.c) ---- */
struct lode_kv_seq {
    bool used;
    int32_t *cells;
    int64_t len, cap;
};
struct lode_kv {
    const lode_model *model;
    int64_t n_layer, width, n_cells;
    float *data;          /* [n_layer][n_cells][width] */
    int32_t *refcnt;      /* [n_cells] */
    int32_t *free_list;   /* stack of free cell ids */
    int64_t n_free;
    struct lode_kv_seq *seqs;
    int32_t n_seqs, cap_seqs;
    void *cuda;           /* device rows (lode_cuda_kv_free), made by the first device eval */
};
static inline float *lode__kv_row(const lode_kv *kv, int64_t layer, int64_t cell) {
    return kv->data + ((size_t)layer * (size_t)kv->n_cells + (size_t)cell) * (size_t)kv->width;
}

/* ---- evaluation plan shared with the arch files ---- */
typedef struct lode_eval_plan {
    int64_t n;            /* tokens in the batch */
    const int32_t *tokens;
    int32_t *seq;         /* [n] */
    int64_t *pos;         /* [n] absolute position of each token */
    int32_t *cell;        /* [n] KV cell of each token */
    /* distinct sequences in the batch, with their token ranges */
    int64_t n_groups;
    int32_t *group_seq;   /* [n_groups] */
    int64_t *group_first; /* [n_groups] index of first token (tokens of a group are listed in group_tok) */
    int64_t *group_count; /* [n_groups] */
    int64_t *group_tok;   /* [n] token indices grouped by sequence */
} lode_eval_plan;

/* Arch entry points: run all layers on x [n][H] in place. */
lode_status lode__deepseek2_layers(lode_model *m, lode_kv *kv, const lode_eval_plan *p, float *x,
                                   lode_error *err);
lode_status lode__llama_layers(lode_model *m, lode_kv *kv, const lode_eval_plan *p, float *x,
                               lode_error *err);
/* Tensor binding per arch (called by the loader). */
lode_status lode__deepseek2_bind(lode_model *m, lode_error *err);
lode_status lode__llama_bind(lode_model *m, lode_error *err);
/* Binding helpers (model.c): look up by canonical GGUF-style name. */
lode_status lode__bind_mat(lode_model *m, lode_mat *out, const char *gguf_name, const char *hf_name,
                           int64_t rows, int64_t cols, bool required, lode_error *err);
lode_status lode__bind_vec(lode_model *m, float **out, const char *gguf_name, const char *hf_name,
                           int64_t n, bool required, lode_error *err);
/* Expert tensors: GGUF stacked [E][rows][cols] or HF per-expert names
 * (printf pattern with %d for expert, e.g. "model.layers.3.mlp.experts.%d.up_proj.weight"). */
lode_status lode__bind_experts(lode_model *m, lode_mat **out, const char *gguf_name, const char *hf_fmt,
                               int64_t n_exp, int64_t rows, int64_t cols, lode_error *err);

/* ---- math (ops.c) ---- */
/* Per-call bump workspace made of retained blocks: pointers stay valid until
 * reset/release; after the first calls of a given size nothing is allocated. */
float *lode__ws_alloc(lode_model *m, size_t n_floats);
void lode__ws_reset(lode_model *m);
lode_ws_mark lode__ws_mark(lode_model *m);
void lode__ws_release(lode_model *m, lode_ws_mark mk);
/* Make sure one block can hold n_floats (turns OOM into an error up front). */
lode_status lode__ws_reserve(lode_model *m, size_t n_floats, lode_error *err);
void lode__ws_free(lode_model *m);
/* Thread-local growable scratch (attention scores etc.); slot 0..3. */
float *lode__tl_scratch(int slot, size_t n_floats);
/* Y[t][0..W.rows) = W · X[t] for t < n (X rows stride ldx, Y stride ldy). */
void lode__matmul(lode_model *m, const lode_mat *W, const float *X, int64_t ldx, int64_t n, float *Y,
                  int64_t ldy);
/* Rows [r0, r1) of one matmul: Y[t*ldy + r] = W row r · token t, from the
 * int8 activations Xq (lode_act_quantize rows) when not NULL, else from
 * f32 X (stride ldx). Any layout (plain or r16, then r0/r1 multiples of
 * 16); the pool tasks of every matmul call it. */
void lode__mat_rows(const lode_mat *W, const void *Xq, const float *X, int64_t ldx, int64_t n, float *Y, int64_t ldy,
                    int64_t r0, int64_t r1);
/* Interleave the int8 path's weights in place for the r16 kernels (model.c
 * calls it after loading, on the CPU backend, when the weights are in
 * writable memory). */
void lode__repack_weights(lode_model *m);
/* Y[t][0..W.cols) = Wᵀ · X[t] (X[t] has W.rows entries). */
void lode__matmul_t(lode_model *m, const lode_mat *W, const float *X, int64_t ldx, int64_t n, float *Y,
                    int64_t ldy);
void lode__rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);
/* Rotate one vector of 2*n_pairs values at position pos. neox: pairs (i, i+n_pairs). */
void lode__rope(float *x, int64_t n_pairs, const float *theta, double pos, bool neox, float mag);
/* The same for nvec vectors (stride floats apart) at one position, every
 * head of a token: the cos/sin table is computed once (bit-identical to
 * lode__rope per vector). */
void lode__rope_many(float *x, int64_t stride, int64_t nvec, int64_t n_pairs, const float *theta, double pos, bool neox,
                     float mag);
void lode__softmax(float *x, int64_t n);
/* Attention over cached rows (ops.c): dot products with a query and the
 * probability-weighted sum, both at the SIMD level. */
void lode__kv_dots(const lode_kv *kv, int64_t layer, const int32_t *cells, int64_t nk, int64_t off, const float *Q,
                   int64_t ldq, int64_t nq, int64_t k, float *S, int64_t lds, bool accumulate);
void lode__kv_weighted_sum(const lode_kv *kv, int64_t layer, const int32_t *cells, int64_t nk, int64_t off,
                           const float *P, int64_t ldp, int64_t nh, int64_t k, float *out, int64_t ldo);
/* Parallel-for over the model's pool. */
void lode__parallel(lode_model *m, int64_t n, lode_pool_fn fn, void *ctx);
/* SwiGLU FFN on n rows of X [n][H] → Y [n][H] (Y overwritten). */
void lode__swiglu(lode_model *m, const lode_mat *gate, const lode_mat *up, const lode_mat *down,
                  const float *X, int64_t n, float *Y);

#endif
