/* tok_impl.h — tokenizer internals shared by tok.c, tok_load.c and
 * tok_encode.c (private to engine/). */
#ifndef LODE_TOK_IMPL_H
#define LODE_TOK_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "lode_tok.h"

/* Open-addressing hash map from byte strings to int32 (vocab lookup). */
typedef struct {
    uint32_t *slots; /* index+1 into keys, 0 = empty */
    uint32_t cap;    /* power of two */
    const char **keys;
    uint32_t *klen;
    int32_t *vals;
    uint32_t n, kcap;
} lode_strmap;

/* Pair (left id, right id) -> merge rank and merged id. */
typedef struct {
    uint64_t *keys; /* (a << 32 | b) + 1, 0 = empty */
    int32_t *rank, *merged;
    uint64_t cap, n;
} lode_pairmap;

typedef struct {
    pcre2_code *re;
    int behavior; /* 0 isolated, 1 removed, 2 merged with previous, 3 merged with next */
} lode_split;

/* Added tokens as a byte trie for longest-match scanning. */
typedef struct {
    int32_t next[256]; /* child node index, 0 = none */
    int32_t id;        /* token ending here, -1 none */
} lode_trie_node;

struct lode_tok {
    int64_t n_vocab;
    char **text;       /* token text as stored (byte-level form for normal tokens) */
    uint32_t *len;
    int32_t *type;
    lode_strmap vocab;
    lode_pairmap merges;
    lode_split *splits;
    int n_splits;
    char pre[96];
    lode_trie_node *trie;
    int32_t n_trie, cap_trie;
    int32_t bos, eos, eot;
    bool add_bos;
    int32_t byte_id[256]; /* id of each single byte's byte-level token (-1 if absent) */
    int chat_style;       /* 0 none, 1 deepseek-v2 "User:/Assistant:", 2 deepseek-coder v1 instruct */
};

int32_t lode__strmap_get(const lode_strmap *m, const char *s, size_t len);
void lode__strmap_put(lode_strmap *m, const char *s, size_t len, int32_t v);
void lode__strmap_free(lode_strmap *m);
void lode__pairmap_put(lode_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged);
bool lode__pairmap_get(const lode_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged);

/* Build derived tables after tokens/types/merges are filled. */
lode_status lode__tok_finish(lode_tok *t, lode_error *err);
/* Compile one regex for the pre-tokenizer (UTF + UCP, JIT). */
lode_status lode__tok_add_split(lode_tok *t, const char *pattern, int behavior, lode_error *err);
/* Splits of llama.cpp's named pre-tokenizers. */
lode_status lode__tok_named_pre(lode_tok *t, const char *name, lode_error *err);
lode_status lode__tok_from_json(const char *json_path, const char *config_path, lode_tok **out, lode_error *err);
lode_tok *lode__tok_alloc(int64_t n);

/* GPT-2 byte <-> unicode code point. */
int lode__byte_to_cp(int b);
int lode__cp_to_byte(int cp); /* -1 if not a byte char */
int lode__utf8_encode(char *o, int cp);
/* Decode one UTF-8 sequence at s (n bytes left); returns its length (1 for
 * an invalid byte, with *cp = -1). */
int lode__utf8_decode(const unsigned char *s, size_t n, int *cp);

#endif
