/*
 * lode_engine.h — the model engine: load a DeepSeek-V2-family (deepseek2) or
 * llama-architecture model from a GGUF file or a Hugging Face directory, keep
 * a latent KV cache, and evaluate batches of tokens.
 *
 * Threading: a lode_model owns one thread pool (n_threads). lode_model_eval
 * is NOT reentrant for one model: callers (the daemon's scheduler) serialise
 * evaluations; a batch may mix many sequences so that decode steps share one
 * pass over the weights.
 *
 * Failure contract: if lode_model_eval fails, the KV cache is exactly as it
 * was before the call.
 */
#ifndef LODE_ENGINE_H
#define LODE_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "lode_base.h"
#include "lode_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lode_arch { LODE_ARCH_DEEPSEEK2 = 0, LODE_ARCH_LLAMA = 1 } lode_arch;
typedef enum lode_rope_scaling {
    LODE_ROPE_SCALING_NONE = 0,
    LODE_ROPE_SCALING_LINEAR = 1,
    LODE_ROPE_SCALING_YARN = 2
} lode_rope_scaling;
typedef enum lode_topk_method {
    LODE_TOPK_GREEDY = 0,
    LODE_TOPK_GROUP_LIMITED = 1, /* group_limited_greedy (V2 236B) */
    LODE_TOPK_NOAUX_TC = 2       /* V3: sigmoid + e_score_correction_bias */
} lode_topk_method;
typedef enum lode_scoring { LODE_SCORING_SOFTMAX = 0, LODE_SCORING_SIGMOID = 1 } lode_scoring;
typedef enum lode_mla_mode {
    LODE_MLA_AUTO = 0,         /* decompressed for long prefills, absorbed otherwise */
    LODE_MLA_ABSORBED = 1,     /* always the absorbed (latent) form */
    LODE_MLA_DECOMPRESSED = 2  /* always the decompressed (naive) form */
} lode_mla_mode;

/* Hyper-parameters, as read from config.json or GGUF metadata. */
typedef struct lode_config {
    lode_arch arch;
    int64_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
    float rms_eps;
    float rope_theta;
    lode_rope_scaling rope_scaling;
    float rope_factor;            /* linear or yarn factor */
    int64_t rope_orig_ctx;        /* yarn original_max_position_embeddings */
    float yarn_beta_fast, yarn_beta_slow, yarn_mscale, yarn_mscale_all_dim;
    /* MLA (deepseek2) */
    int64_t q_lora_rank;          /* 0: single q_proj */
    int64_t kv_lora_rank, qk_nope_dim, qk_rope_dim, v_head_dim;
    /* MoE (deepseek2) */
    int64_t n_expert, n_expert_used, n_expert_shared, n_ff_exp, first_k_dense, moe_layer_freq;
    int64_t n_group, topk_group;
    lode_topk_method topk_method;
    lode_scoring scoring;
    bool norm_topk_prob;
    float routed_scaling;
    bool tie_embeddings;
    int32_t bos_id, eos_id; /* -1 if unknown */
} lode_config;

typedef struct lode_model lode_model;

/* Where lode_model_eval runs (docs/cuda.md). AUTO: CUDA when a usable
 * device exists and the upload succeeds, else the CPU with a one-line
 * message on stderr saying why. CUDA: fail the load when it cannot. */
typedef enum lode_device { LODE_DEVICE_CPU = 0, LODE_DEVICE_CUDA = 1, LODE_DEVICE_AUTO = 2 } lode_device;

typedef struct lode_model_params {
    int n_threads;          /* 0: available cores */
    lode_mla_mode mla_mode; /* default AUTO */
    int quant_type;         /* -1: keep the file's types; else a lode_type (q8_0, q4_k, ...):
                             * f32/f16/bf16 weight matrices are quantized at load */
    lode_device device;     /* default CPU */
} lode_model_params;

lode_model_params lode_model_default_params(void);

/* Load a model: `path` is a GGUF file or an HF directory. */
lode_status lode_model_load(const char *path, const lode_model_params *params, lode_model **out,
                            lode_error *err);
void lode_model_free(lode_model *m); /* NULL ok */

const lode_config *lode_model_config(const lode_model *m);
const char *lode_model_path(const lode_model *m);
/* "gguf" or "hf". */
const char *lode_model_format(const lode_model *m);
int lode_model_n_threads(const lode_model *m);
/* KV-cache values per token per layer (MLA: kv_lora_rank + qk_rope_dim). */
int64_t lode_model_kv_width(const lode_model *m);
/* Total bytes of weights referenced (mapped). */
uint64_t lode_model_weight_bytes(const lode_model *m);
/* Print architecture, config and the tensor table to `f` (FILE *). */
void lode_model_describe(const lode_model *m, void *file);
/* "cpu", or the CUDA device and weight format in use. */
const char *lode_model_device(const lode_model *m);
/* Force the MLA evaluation form (tests). */
void lode_model_set_mla_mode(lode_model *m, lode_mla_mode mode);

/* ---- KV cache -------------------------------------------------------
 * A pool of token cells (one latent row per layer per cell) plus sequences:
 * a sequence is an ordered list of cells, position i = i-th cell. Cells are
 * reference counted, so sequences can share a prefix (fork) without copies;
 * cells are immutable once written. */
typedef struct lode_kv lode_kv;

lode_status lode_kv_new(const lode_model *m, int64_t n_cells, lode_kv **out, lode_error *err);
void lode_kv_free(lode_kv *kv);
int64_t lode_kv_n_cells(const lode_kv *kv);
int64_t lode_kv_n_free(const lode_kv *kv);
uint64_t lode_kv_bytes(const lode_kv *kv);
/* New empty sequence; returns id >= 0, or -1 (err) if out of sequence slots. */
int32_t lode_kv_seq_new(lode_kv *kv);
/* New sequence sharing the first n_pos tokens of `src`. */
int32_t lode_kv_seq_fork(lode_kv *kv, int32_t src, int64_t n_pos);
void lode_kv_seq_free(lode_kv *kv, int32_t seq);
int64_t lode_kv_seq_len(const lode_kv *kv, int32_t seq);
/* Keep the first n_pos tokens (rollback); n_pos >= len is a no-op. */
lode_status lode_kv_seq_truncate(lode_kv *kv, int32_t seq, int64_t n_pos);
/* Append n cells of pseudo-random values (uniform in [-1, 1), from seed) to
 * seq, as if n tokens had been evaluated: for measuring decode over a long
 * cache without a long prefill (lode bench --fill synthetic); the speed of
 * attention does not depend on the values. CPU caches only. */
lode_status lode_kv_seq_fill_synthetic(lode_kv *kv, int32_t seq, int64_t n, uint64_t seed, lode_error *err);

/* ---- evaluation ------------------------------------------------------
 * A batch of n tokens; token i is appended to sequence seq[i] at the next
 * position. Tokens of one sequence must appear in order. logits_out receives
 * n_vocab floats for each token with want_logits[i] (all tokens when
 * want_logits is NULL), packed in batch order. */
typedef struct lode_batch {
    int64_t n;
    const int32_t *tokens;
    const int32_t *seq;        /* NULL: every token in sequence seq0 */
    int32_t seq0;
    const bool *want_logits;   /* NULL: all */
} lode_batch;

lode_status lode_model_eval(lode_model *m, lode_kv *kv, const lode_batch *b, float *logits_out,
                            lode_error *err);

/* Cooperative cancellation: a non-zero *flag makes eval stop between layers
 * with LODE_ERR_CANCELLED (cache unchanged). */
void lode_model_set_cancel_flag(lode_model *m, volatile int *flag);

#ifdef __cplusplus
}
#endif
#endif
