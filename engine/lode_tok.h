/*
 * lode_tok.h — byte-level BPE tokenizer (the DeepSeek families and other
 * GPT-2-style vocabularies), loaded from GGUF tokenizer.ggml.* metadata or a
 * Hugging Face tokenizer.json, plus the prompt formats built on it (FIM in
 * PSM order, the Coder-V2 chat template, the DeepSeek-Coder v1 instruct
 * format).
 *
 * Encoding follows llama.cpp / HF tokenizers: added tokens (control tokens
 * only when parse_special is set; user-defined tokens always) are cut out of
 * the raw text first, longest match first; each remaining fragment goes
 * through the pre-tokenizer's regex splits (PCRE2 with Unicode properties),
 * then the GPT-2 byte-to-unicode mapping, then BPE merges by rank.
 *
 * A lode_tok is immutable after loading and safe to share between threads.
 */
#ifndef LODE_TOK_H
#define LODE_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lode_base.h"
#include "lode_gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lode_tok lode_tok;

/* llama.cpp token types. */
enum { LODE_TOKEN_NORMAL = 1, LODE_TOKEN_UNKNOWN = 2, LODE_TOKEN_CONTROL = 3, LODE_TOKEN_USER_DEFINED = 4,
       LODE_TOKEN_UNUSED = 5, LODE_TOKEN_BYTE = 6 };

/* `path`: a GGUF file (model or vocab-only), an HF model directory
 * (tokenizer.json + tokenizer_config.json), or a tokenizer.json file. */
lode_status lode_tok_load(const char *path, lode_tok **out, lode_error *err);
lode_status lode_tok_from_gguf(const lode_gguf *g, lode_tok **out, lode_error *err);
void lode_tok_free(lode_tok *t); /* NULL ok */

int64_t lode_tok_n_vocab(const lode_tok *t);
int32_t lode_tok_bos(const lode_tok *t); /* -1 if none */
int32_t lode_tok_eos(const lode_tok *t);
bool lode_tok_add_bos(const lode_tok *t); /* the model's default */
/* End of generation: EOS, EOT ("<|EOT|>"), end-of-turn style control tokens. */
bool lode_tok_is_eog(const lode_tok *t, int32_t id);
int lode_tok_type(const lode_tok *t, int32_t id);
/* Id of a token by its exact text, or -1. */
int32_t lode_tok_find(const lode_tok *t, const char *text);
/* Pre-tokenizer description ("deepseek-llm", "tokenizer.json: 6 splits" ...). */
const char *lode_tok_pre_name(const lode_tok *t);

/* Encode text. *ids is allocated (lode_free). Never fails on any byte
 * sequence (invalid UTF-8 goes through the byte-level path). */
lode_status lode_tok_encode(const lode_tok *t, const char *text, size_t len, bool add_bos, bool parse_special,
                            int32_t **ids, size_t *n, lode_error *err);
/* Bytes of one token: returns the length; writes up to cap bytes. Control
 * tokens give their text only with `special`. */
size_t lode_tok_piece(const lode_tok *t, int32_t id, bool special, char *buf, size_t cap);
/* Decode ids into a new NUL-terminated buffer (lode_free); *len = bytes. */
char *lode_tok_decode(const lode_tok *t, const int32_t *ids, size_t n, bool special, size_t *len);

/* Streaming decoder: bytes are released only at UTF-8 character boundaries,
 * so a character split across tokens is never shown broken. */
typedef struct lode_tok_stream {
    char pending[8];
    size_t n_pending;
    bool special;
} lode_tok_stream;
void lode_tok_stream_init(lode_tok_stream *s, bool special);
/* Append the bytes that became complete after token `id` to out (cap bytes;
 * returns the count, which never exceeds the token's piece + 7). */
size_t lode_tok_stream_push(const lode_tok *t, lode_tok_stream *s, int32_t id, char *out, size_t cap);
/* Remaining bytes (an incomplete sequence at the end), emitted raw. */
size_t lode_tok_stream_flush(lode_tok_stream *s, char *out, size_t cap);

/* ---- prompt formats ---- */
/* FIM markers by text (<｜fim▁begin｜>, <｜fim▁hole｜>, <｜fim▁end｜>); returns
 * LODE_ERR_UNSUPPORTED with the reason when the vocabulary lacks them. */
lode_status lode_tok_fim_ids(const lode_tok *t, int32_t *begin, int32_t *hole, int32_t *end, lode_error *err);
/* [BOS] fim_begin prefix fim_hole suffix fim_end (PSM). */
lode_status lode_tok_fim_prompt(const lode_tok *t, const char *prefix, size_t plen, const char *suffix, size_t slen,
                                int32_t **ids, size_t *n, lode_error *err);

typedef struct lode_chat_msg {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} lode_chat_msg;
/* The model's chat format, chosen from its vocabulary: the DeepSeek-V2 /
 * Coder-V2 template ("User: ...\n\nAssistant:") or DeepSeek-Coder v1's
 * instruct format ("### Instruction:\n...\n### Response:\n"). Ends ready for
 * the assistant's reply. */
lode_status lode_tok_chat_prompt(const lode_tok *t, const lode_chat_msg *msgs, size_t n_msgs, int32_t **ids,
                                 size_t *n, lode_error *err);
/* The rendered chat text (without the BOS token), for display/tests. */
char *lode_tok_chat_text(const lode_tok *t, const lode_chat_msg *msgs, size_t n_msgs);

/* True for token texts that llama.cpp forces to CONTROL when loading a GGUF
 * vocabulary (FIM markers, end-of-turn tokens). */
bool lode_tok_llamacpp_control(const char *text, size_t len);

/* The deepseek-llm R2 letter class built from code points (spec §6.5), as
 * UTF-8 "A-Za-z..." without brackets; shared with the model generator. */
const char *lode_tok_deepseek_llm_letters(void);

#ifdef __cplusplus
}
#endif
#endif
