/*
 * lode_gen.h — deterministic random models for tests and benchmarks.
 *
 * A model is defined by a lode_config plus a vocabulary source; weights are a
 * pure function of (seed, tensor name, row), so the Hugging Face and GGUF
 * outputs of the same preset and seed hold the same model, and the output
 * does not depend on the thread count. GGUF files follow llama.cpp's
 * converter conventions (stacked experts, split attn_k_b/attn_v_b, permuted
 * llama q/k rows) so llama.cpp loads them unchanged.
 */
#ifndef LODE_GEN_H
#define LODE_GEN_H

#include <stdint.h>

#include "lode_engine.h"

typedef enum lode_gen_format { LODE_GEN_GGUF = 0, LODE_GEN_HF = 1 } lode_gen_format;

typedef struct lode_gen_params {
    const char *out;          /* GGUF file path or HF directory */
    lode_gen_format format;
    lode_type type;           /* weight matrices: f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k (GGUF) */
    uint64_t seed;
    bool legacy_kvb;          /* GGUF: write attn_kv_b instead of attn_k_b/attn_v_b */
    int kb_type;              /* GGUF: type for attn_k_b/attn_v_b; -1 = f32 when `type` is quantized */
    uint64_t shard_bytes;     /* HF: max bytes per safetensors shard (0 = 4 GiB) */
    int n_threads;            /* 0 = all cores */
    const char *vocab_gguf;   /* take the tokenizer from this vocab GGUF; NULL = synthetic */
    const char *vocab_pre;    /* synthetic vocab: llama.cpp pre-tokenizer name */
    int64_t n_vocab_override; /* 0: from config */
    bool coder_v2_fim;        /* put Coder-V2's FIM tokens at ids 100002..100004 (the deepseek-llm
                               * vocabulary holds other added tokens there) */
    bool quiet;
} lode_gen_params;

/* Fill `cfg` from a preset name; returns LODE_ERR_NOT_FOUND for unknown
 * names. *vocab receives "synthetic", "deepseek-coder" or "deepseek-llm". */
lode_status lode_gen_preset(const char *name, lode_config *cfg, const char **vocab, lode_error *err);
/* Names of the presets, NULL-terminated. */
const char *const *lode_gen_preset_names(void);
/* Write the model. */
lode_status lode_gen_write(const lode_config *cfg, const lode_gen_params *p, lode_error *err);
/* Locate a vocab GGUF from ../shared/data/vocab (or $LODE_VOCAB_DIR). The
 * returned path is malloc'ed (lode_free) or NULL if not found. */
char *lode_gen_find_vocab(const char *name);

#endif
