/* gen_vocab.h — tokenizer data for generated models (private to engine/). */
#ifndef LODE_GEN_VOCAB_H
#define LODE_GEN_VOCAB_H
#include "lode_base.h"
#include "lode_gguf.h"

typedef struct lode_gen_vocab {
    int64_t n_tokens;
    char **tokens;      /* byte-level unicode form */
    int32_t *types;     /* llama.cpp token types: 1 normal, 3 control, 4 user-defined, 5 unused, 6 byte */
    int64_t n_merges;
    char **merges;      /* "a b" */
    int32_t bos, eos;
    char pre[32];       /* llama.cpp pre-tokenizer name */
    bool add_bos;
} lode_gen_vocab;

/* Synthetic byte-level BPE vocabulary of exactly n_vocab tokens (>= 300):
 * 256 byte tokens, merges learned from a built-in code corpus, then the
 * DeepSeek special tokens (BOS, EOS, FIM hole/begin/end, chat markers). */
lode_status lode__gen_vocab_synthetic(int64_t n_vocab, const char *pre, lode_gen_vocab *v, lode_error *err);
/* Copy the tokenizer of a (vocab-only) GGUF. */
lode_status lode__gen_vocab_from_gguf(const char *path, lode_gen_vocab *v, lode_error *err);
void lode__gen_vocab_free(lode_gen_vocab *v);
/* Write tokenizer.* keys into a GGUF writer. */
void lode__gen_vocab_to_gguf(const lode_gen_vocab *v, lode_gguf_writer *w);
/* Write tokenizer.json and tokenizer_config.json into dir. */
lode_status lode__gen_vocab_to_hf(const lode_gen_vocab *v, const char *dir, lode_error *err);
#endif
