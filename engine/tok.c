/*
 * tok.c — tokenizer tables (hash maps, byte-level mapping, added-token
 * trie), decoding, the streaming decoder and the prompt formats.
 * Loading lives in tok_load.c, encoding in tok_encode.c.
 */
#include <stdio.h>
#include <string.h>

#include "tok_impl.h"

/* ---- hash maps ----------------------------------------------------------- */
static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static void strmap_grow(lode_strmap *m) {
    uint32_t cap = m->cap ? m->cap * 2 : 1024;
    uint32_t *slots = lode_xcalloc(cap, sizeof(uint32_t));
    for (uint32_t i = 0; i < m->cap; i++) {
        uint32_t k = m->slots[i];
        if (!k) continue;
        uint64_t h = hash_bytes(m->keys[k - 1], m->klen[k - 1]);
        uint32_t j = (uint32_t)h & (cap - 1);
        while (slots[j]) j = (j + 1) & (cap - 1);
        slots[j] = k;
    }
    lode_free(m->slots);
    m->slots = slots;
    m->cap = cap;
}

int32_t lode__strmap_get(const lode_strmap *m, const char *s, size_t len) {
    if (!m->cap) return -1;
    uint32_t j = (uint32_t)hash_bytes(s, len) & (m->cap - 1);
    for (;;) {
        uint32_t k = m->slots[j];
        if (!k) return -1;
        if (m->klen[k - 1] == len && !memcmp(m->keys[k - 1], s, len)) return m->vals[k - 1];
        j = (j + 1) & (m->cap - 1);
    }
}

/* Keys are borrowed (the tokenizer's own token strings). First put wins. */
void lode__strmap_put(lode_strmap *m, const char *s, size_t len, int32_t v) {
    if ((m->n + 1) * 2 > m->cap) strmap_grow(m);
    uint32_t j = (uint32_t)hash_bytes(s, len) & (m->cap - 1);
    while (m->slots[j]) {
        uint32_t k = m->slots[j];
        if (m->klen[k - 1] == len && !memcmp(m->keys[k - 1], s, len)) return;
        j = (j + 1) & (m->cap - 1);
    }
    if (m->n == m->kcap) {
        m->kcap = m->kcap ? m->kcap * 2 : 1024;
        m->keys = lode_xrealloc(m->keys, m->kcap * sizeof(char *));
        m->klen = lode_xrealloc(m->klen, m->kcap * sizeof(uint32_t));
        m->vals = lode_xrealloc(m->vals, m->kcap * sizeof(int32_t));
    }
    m->keys[m->n] = s;
    m->klen[m->n] = (uint32_t)len;
    m->vals[m->n] = v;
    m->slots[j] = ++m->n;
}

void lode__strmap_free(lode_strmap *m) {
    lode_free(m->slots);
    lode_free(m->keys);
    lode_free(m->klen);
    lode_free(m->vals);
    memset(m, 0, sizeof *m);
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

void lode__pairmap_put(lode_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    if ((m->n + 1) * 2 > m->cap) {
        uint64_t cap = m->cap ? m->cap * 2 : 4096;
        lode_pairmap nm = {lode_xcalloc(cap, 8), lode_xmalloc(cap * 4), lode_xmalloc(cap * 4), cap, 0};
        for (uint64_t i = 0; i < m->cap; i++) {
            if (!m->keys[i]) continue;
            uint64_t j = mix64(m->keys[i]) & (cap - 1);
            while (nm.keys[j]) j = (j + 1) & (cap - 1);
            nm.keys[j] = m->keys[i], nm.rank[j] = m->rank[i], nm.merged[j] = m->merged[i];
        }
        nm.n = m->n;
        lode_free(m->keys);
        lode_free(m->rank);
        lode_free(m->merged);
        *m = nm;
    }
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint64_t j = mix64(key) & (m->cap - 1);
    while (m->keys[j]) {
        if (m->keys[j] == key) return; /* the lowest rank (first listed) wins */
        j = (j + 1) & (m->cap - 1);
    }
    m->keys[j] = key, m->rank[j] = rank, m->merged[j] = merged;
    m->n++;
}

bool lode__pairmap_get(const lode_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged) {
    if (!m->cap) return false;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint64_t j = mix64(key) & (m->cap - 1);
    while (m->keys[j]) {
        if (m->keys[j] == key) {
            *rank = m->rank[j];
            *merged = m->merged[j];
            return true;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return false;
}

/* ---- UTF-8 and the GPT-2 byte map ---------------------------------------- */
static bool is_direct(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255); }

int lode__byte_to_cp(int b) {
    if (is_direct(b)) return b;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!is_direct(x)) n++;
    return 256 + n;
}

int lode__cp_to_byte(int cp) {
    static int inv[324];
    static bool init;
    if (!init) { /* idempotent: racing threads write identical values */
        for (int i = 0; i < 324; i++) inv[i] = -1;
        for (int b = 0; b < 256; b++) inv[lode__byte_to_cp(b)] = b;
        init = true;
    }
    return cp >= 0 && cp < 324 ? inv[cp] : -1;
}

int lode__utf8_encode(char *o, int cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int lode__utf8_decode(const unsigned char *s, size_t n, int *cp) {
    unsigned c = s[0];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || (size_t)len > n) {
        *cp = -1;
        return 1;
    }
    if (len == 1) {
        *cp = (int)c;
        return 1;
    }
    int v = (int)(c & (0x7F >> len));
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = -1;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3F);
    }
    static const int min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = -1;
        return 1;
    }
    *cp = v;
    return len;
}

/* ---- construction helpers -------------------------------------------------- */
lode_tok *lode__tok_alloc(int64_t n) {
    lode_tok *t = lode_xcalloc(1, sizeof *t);
    t->n_vocab = n;
    t->text = lode_xcalloc((size_t)n, sizeof(char *));
    t->len = lode_xcalloc((size_t)n, sizeof(uint32_t));
    t->type = lode_xcalloc((size_t)n, sizeof(int32_t));
    t->bos = t->eos = t->eot = -1;
    return t;
}

static int32_t trie_node(lode_tok *t) {
    if (t->n_trie == t->cap_trie) {
        t->cap_trie = t->cap_trie ? t->cap_trie * 2 : 256;
        t->trie = lode_xrealloc(t->trie, (size_t)t->cap_trie * sizeof(lode_trie_node));
    }
    memset(&t->trie[t->n_trie], 0, sizeof(lode_trie_node));
    t->trie[t->n_trie].id = -1;
    return t->n_trie++;
}

lode_status lode__tok_finish(lode_tok *t, lode_error *err) {
    for (int64_t i = 0; i < t->n_vocab; i++)
        if (t->text[i]) lode__strmap_put(&t->vocab, t->text[i], t->len[i], (int32_t)i);
    for (int b = 0; b < 256; b++) {
        char u[4];
        int n = lode__utf8_encode(u, lode__byte_to_cp(b));
        t->byte_id[b] = lode__strmap_get(&t->vocab, u, (size_t)n);
    }
    /* Added tokens: control and user-defined, matched before pre-tokenizing. */
    trie_node(t);
    for (int64_t i = 0; i < t->n_vocab; i++) {
        if ((t->type[i] != LODE_TOKEN_CONTROL && t->type[i] != LODE_TOKEN_USER_DEFINED) || !t->len[i]) continue;
        int32_t node = 0;
        for (uint32_t k = 0; k < t->len[i]; k++) {
            unsigned char c = (unsigned char)t->text[i][k];
            if (!t->trie[node].next[c]) {
                int32_t nn = trie_node(t);
                t->trie[node].next[c] = nn;
            }
            node = t->trie[node].next[c];
        }
        if (t->trie[node].id < 0) t->trie[node].id = (int32_t)i;
    }
    t->eot = lode_tok_find(t, "<|EOT|>");
    if (lode_tok_find(t, "<｜fim▁begin｜>") >= 0 && lode_tok_find(t, "<|EOT|>") >= 0) t->chat_style = 2;
    else if (t->bos >= 0 && !strcmp(t->text[t->bos] ? t->text[t->bos] : "", "<｜begin▁of▁sentence｜>")) t->chat_style = 1;
    if (t->n_splits == 0) return lode_error_set(err, LODE_ERR_FORMAT, "tokenizer has no pre-tokenizer");
    return LODE_OK;
}

void lode_tok_free(lode_tok *t) {
    if (!t) return;
    for (int64_t i = 0; i < t->n_vocab; i++) lode_free(t->text[i]);
    lode_free(t->text);
    lode_free(t->len);
    lode_free(t->type);
    lode__strmap_free(&t->vocab);
    lode_free(t->merges.keys);
    lode_free(t->merges.rank);
    lode_free(t->merges.merged);
    for (int i = 0; i < t->n_splits; i++) pcre2_code_free(t->splits[i].re);
    lode_free(t->splits);
    lode_free(t->trie);
    lode_free(t);
}

/* ---- accessors ---------------------------------------------------------------- */
int64_t lode_tok_n_vocab(const lode_tok *t) { return t->n_vocab; }
int32_t lode_tok_bos(const lode_tok *t) { return t->bos; }
int32_t lode_tok_eos(const lode_tok *t) { return t->eos; }
bool lode_tok_add_bos(const lode_tok *t) { return t->add_bos; }
const char *lode_tok_pre_name(const lode_tok *t) { return t->pre; }
int lode_tok_type(const lode_tok *t, int32_t id) { return id >= 0 && id < t->n_vocab ? t->type[id] : 0; }
int32_t lode_tok_find(const lode_tok *t, const char *text) { return lode__strmap_get(&t->vocab, text, strlen(text)); }
bool lode_tok_is_eog(const lode_tok *t, int32_t id) { return id >= 0 && (id == t->eos || id == t->eot); }

/* ---- decoding -------------------------------------------------------------------- */
size_t lode_tok_piece(const lode_tok *t, int32_t id, bool special, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab || !t->text[id]) return 0;
    const char *s = t->text[id];
    size_t n = t->len[id], o = 0;
    int ty = t->type[id];
    if (ty == LODE_TOKEN_CONTROL || ty == LODE_TOKEN_UNKNOWN) {
        if (!special) return 0;
    }
    if (ty != LODE_TOKEN_NORMAL && ty != LODE_TOKEN_BYTE) { /* raw text */
        if (buf) memcpy(buf, s, n < cap ? n : cap);
        return n;
    }
    for (size_t i = 0; i < n;) {
        int cp;
        int l = lode__utf8_decode((const unsigned char *)s + i, n - i, &cp);
        int b = lode__cp_to_byte(cp);
        if (b >= 0) {
            if (buf && o < cap) buf[o] = (char)b;
            o++;
        } else { /* not a byte char: copy the UTF-8 as is */
            for (int k = 0; k < l; k++) {
                if (buf && o < cap) buf[o] = s[i + k];
                o++;
            }
        }
        i += (size_t)l;
    }
    return o;
}

char *lode_tok_decode(const lode_tok *t, const int32_t *ids, size_t n, bool special, size_t *len) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += lode_tok_piece(t, ids[i], special, NULL, 0);
    char *out = lode_xmalloc(total + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) o += lode_tok_piece(t, ids[i], special, out + o, total - o);
    out[o] = 0;
    if (len) *len = o;
    return out;
}

void lode_tok_stream_init(lode_tok_stream *s, bool special) {
    memset(s, 0, sizeof *s);
    s->special = special;
}

/* Length of the longest suffix of b[0..n) that is an incomplete (so far
 * valid) UTF-8 sequence. */
static size_t incomplete_tail(const unsigned char *b, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = b[n - k];
        if ((c & 0xC0) == 0x80) continue; /* continuation: look further back */
        int need = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
        return (size_t)need > k ? k : 0;
    }
    return 0;
}

size_t lode_tok_stream_push(const lode_tok *t, lode_tok_stream *s, int32_t id, char *out, size_t cap) {
    size_t pl = lode_tok_piece(t, id, s->special, NULL, 0);
    char stackbuf[512];
    char *tmp = pl + s->n_pending <= sizeof stackbuf ? stackbuf : lode_xmalloc(pl + s->n_pending);
    memcpy(tmp, s->pending, s->n_pending);
    lode_tok_piece(t, id, s->special, tmp + s->n_pending, pl);
    size_t n = s->n_pending + pl;
    size_t hold = incomplete_tail((const unsigned char *)tmp, n);
    size_t emit = n - hold;
    size_t w = emit < cap ? emit : cap;
    memcpy(out, tmp, w);
    memcpy(s->pending, tmp + emit, hold);
    s->n_pending = hold;
    if (tmp != stackbuf) lode_free(tmp);
    return w;
}

size_t lode_tok_stream_flush(lode_tok_stream *s, char *out, size_t cap) {
    size_t w = s->n_pending < cap ? s->n_pending : cap;
    memcpy(out, s->pending, w);
    s->n_pending = 0;
    return w;
}

/* ---- prompt formats --------------------------------------------------------------- */
lode_status lode_tok_fim_ids(const lode_tok *t, int32_t *begin, int32_t *hole, int32_t *end, lode_error *err) {
    *begin = lode_tok_find(t, "<｜fim▁begin｜>");
    *hole = lode_tok_find(t, "<｜fim▁hole｜>");
    *end = lode_tok_find(t, "<｜fim▁end｜>");
    if (*begin < 0 || *hole < 0 || *end < 0)
        return lode_error_set(err, LODE_ERR_UNSUPPORTED,
                              "this model's vocabulary has no fill-in-the-middle tokens (<｜fim▁begin｜>, "
                              "<｜fim▁hole｜>, <｜fim▁end｜>): it cannot complete code at a cursor; use a "
                              "DeepSeek-Coder(-V2-Lite) base or Lite-Instruct model");
    return LODE_OK;
}

static void append(int32_t **ids, size_t *n, size_t *cap, const int32_t *v, size_t k) {
    if (*n + k > *cap) {
        while (*n + k > *cap) *cap = *cap ? *cap * 2 : 64;
        *ids = lode_xrealloc(*ids, *cap * sizeof(int32_t));
    }
    memcpy(*ids + *n, v, k * sizeof(int32_t));
    *n += k;
}

static lode_status append_text(const lode_tok *t, int32_t **ids, size_t *n, size_t *cap, const char *s, size_t len,
                               lode_error *err) {
    int32_t *v;
    size_t k;
    lode_status st = lode_tok_encode(t, s, len, false, false, &v, &k, err);
    if (st) return st;
    append(ids, n, cap, v, k);
    lode_free(v);
    return LODE_OK;
}

lode_status lode_tok_fim_prompt(const lode_tok *t, const char *prefix, size_t plen, const char *suffix, size_t slen,
                                int32_t **ids, size_t *n, lode_error *err) {
    int32_t b, h, e;
    lode_status st = lode_tok_fim_ids(t, &b, &h, &e, err);
    if (st) return st;
    int32_t *v = NULL;
    size_t k = 0, cap = 0;
    if (t->bos >= 0 && t->add_bos) append(&v, &k, &cap, &t->bos, 1);
    append(&v, &k, &cap, &b, 1);
    if ((st = append_text(t, &v, &k, &cap, prefix, plen, err))) goto fail;
    append(&v, &k, &cap, &h, 1);
    if ((st = append_text(t, &v, &k, &cap, suffix, slen, err))) goto fail;
    append(&v, &k, &cap, &e, 1);
    *ids = v;
    *n = k;
    return LODE_OK;
fail:
    lode_free(v);
    return st;
}

/* Chat formats as segments: (text, control token after it or -1). Style 1
 * (DeepSeek-V2 / Coder-V2-Lite-Instruct, spec §6.4):
 *   [system "\n\n"] "User: " u "\n\n" "Assistant: " a <EOS> ... "Assistant:"
 * (no trailing space). Style 2 (DeepSeek-Coder v1 instruct): the default
 * system line unless one is given, "### Instruction:\n" u "\n",
 * "### Response:\n" a "\n" <|EOT|> "\n" ..., ending "### Response:\n".
 * Every segment boundary is a newline or a control token, where the
 * pre-tokenizer always splits, so encoding segment by segment (content never
 * parsed for control tokens) equals encoding the rendered text. */
static const char k_coder_system[] =
    "You are an AI programming assistant, utilizing the DeepSeek Coder model, developed by DeepSeek Company, and you "
    "only answer questions related to computer science. For politically sensitive questions, security and privacy "
    "issues, and other non-computer science questions, you will refuse to answer.\n";

typedef struct {
    char *text;
    int32_t after;
} chat_seg;

static char *cat3(const char *a, const char *b, const char *c) {
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *o = lode_xmalloc(la + lb + lc + 1);
    memcpy(o, a, la);
    memcpy(o + la, b, lb);
    memcpy(o + la + lb, c, lc + 1);
    return o;
}

static size_t chat_segments(const lode_tok *t, const lode_chat_msg *msgs, size_t n, chat_seg *seg) {
    size_t k = 0;
    bool coder = t->chat_style == 2, sys = false;
    for (size_t i = 0; i < n; i++) sys |= !strcmp(msgs[i].role, "system");
    if (coder && !sys) seg[k++] = (chat_seg){lode_xstrdup(k_coder_system), -1};
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role, *c = msgs[i].content;
        if (!strcmp(r, "system")) seg[k++] = (chat_seg){cat3(c, coder ? "\n" : "\n\n", ""), -1};
        else if (!strcmp(r, "user")) seg[k++] = (chat_seg){cat3(coder ? "### Instruction:\n" : "User: ", c, coder ? "\n" : "\n\n"), -1};
        else if (coder) {
            seg[k++] = (chat_seg){cat3("### Response:\n", c, "\n"), t->eot};
            seg[k++] = (chat_seg){lode_xstrdup("\n"), -1};
        } else {
            seg[k++] = (chat_seg){cat3("Assistant: ", c, ""), t->eos};
        }
    }
    seg[k++] = (chat_seg){lode_xstrdup(coder ? "### Response:\n" : "Assistant:"), -1};
    return k;
}

static bool valid_roles(const lode_chat_msg *msgs, size_t n, lode_error *err) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(msgs[i].role, "system") && strcmp(msgs[i].role, "user") && strcmp(msgs[i].role, "assistant")) {
            lode_error_set(err, LODE_ERR_INVALID_ARG, "chat role '%s' is not system, user or assistant", msgs[i].role);
            return false;
        }
    return true;
}

char *lode_tok_chat_text(const lode_tok *t, const lode_chat_msg *msgs, size_t n_msgs) {
    if (!valid_roles(msgs, n_msgs, NULL)) return NULL;
    chat_seg *seg = lode_xmalloc((2 * n_msgs + 2) * sizeof *seg);
    size_t ns = chat_segments(t, msgs, n_msgs, seg), total = 1;
    for (size_t i = 0; i < ns; i++) total += strlen(seg[i].text) + (seg[i].after >= 0 ? t->len[seg[i].after] : 0);
    char *o = lode_xmalloc(total), *w = o;
    for (size_t i = 0; i < ns; i++) {
        size_t l = strlen(seg[i].text);
        memcpy(w, seg[i].text, l);
        w += l;
        if (seg[i].after >= 0) {
            memcpy(w, t->text[seg[i].after], t->len[seg[i].after]);
            w += t->len[seg[i].after];
        }
        lode_free(seg[i].text);
    }
    *w = 0;
    lode_free(seg);
    return o;
}

lode_status lode_tok_chat_prompt(const lode_tok *t, const lode_chat_msg *msgs, size_t n_msgs, int32_t **ids,
                                 size_t *n, lode_error *err) {
    if (!valid_roles(msgs, n_msgs, err)) return LODE_ERR_INVALID_ARG;
    if (t->chat_style == 0)
        return lode_error_set(err, LODE_ERR_UNSUPPORTED,
                              "this model's vocabulary has no known chat format (expected the DeepSeek-V2 or "
                              "DeepSeek-Coder special tokens)");
    chat_seg *seg = lode_xmalloc((2 * n_msgs + 2) * sizeof *seg);
    size_t ns = chat_segments(t, msgs, n_msgs, seg);
    int32_t *v = NULL;
    size_t k = 0, cap = 0;
    lode_status st = LODE_OK;
    if (t->bos >= 0) append(&v, &k, &cap, &t->bos, 1);
    for (size_t i = 0; i < ns; i++) {
        if (!st) st = append_text(t, &v, &k, &cap, seg[i].text, strlen(seg[i].text), err);
        if (!st && seg[i].after >= 0) append(&v, &k, &cap, &seg[i].after, 1);
        lode_free(seg[i].text);
    }
    lode_free(seg);
    if (st) {
        lode_free(v);
        return st;
    }
    *ids = v;
    *n = k;
    return LODE_OK;
}
