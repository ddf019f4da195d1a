/*
 * tok_encode.c — encoding: added-token partition, regex pre-tokenization
 * (PCRE2, Unicode properties, JIT), byte-level mapping and BPE merges.
 *
 * Pre-tokenizer semantics (llama.cpp unicode_regex_split / HF Split with
 * behavior Isolated): each regex is applied in turn to every fragment the
 * previous ones produced; matches and the gaps between them both become
 * fragments. Regexes run with PCRE2_MATCH_INVALID_UTF, so invalid UTF-8
 * bytes never join a match and pass through as their own fragments: every
 * byte string encodes, and decoding gives it back.
 *
 * BPE: a piece's bytes become byte-level symbols; the adjacent pair with
 * the lowest merge rank is merged until none is left (a min-heap of
 * candidate pairs, stale entries skipped), so long pieces stay O(n log n).
 */
#include <stdio.h>
#include <string.h>

#include "tok_impl.h"

/* ---- pre-tokenizer definitions ---------------------------------------------- */
static const unsigned k_ds_letters[] = {
    0x41, '-', 0x5A, 0x61, '-', 0x7A, 0xB5, 0xC0, '-', 0xD6, 0xD8, '-', 0xF6, 0xF8, '-', 0x1BA, 0x1BC, '-', 0x1BF,
    0x1C4, '-', 0x293, 0x295, '-', 0x2AF, 0x370, '-', 0x373, 0x376, 0x377, 0x37B, '-', 0x37D, 0x37F, 0x386,
    0x388, '-', 0x38A, 0x38C, 0x38E, '-', 0x3A1, 0x3A3, '-', 0x3F5, 0x3F7, '-', 0x481, 0x48A, '-', 0x52F,
    0x531, '-', 0x556, 0x10A0, '-', 0x10C5, 0x13A0, '-', 0x13F5, 0x13F8, '-', 0x13FD, 0x1C90, '-', 0x1CBA,
    0x1CBD, '-', 0x1CBF, 0x1D00, '-', 0x1D2B, 0x1D6B, '-', 0x1D77, 0x1D79, '-', 0x1D9A, 0x1E00, '-', 0x1F15,
    0x1F18, '-', 0x1F1D, 0x1F20, '-', 0x1F45, 0x1F48, '-', 0x1F4D, 0x1F50, '-', 0x1F57, 0x1F59, 0x1F5B,
    0x1F5D, 0x1F5F, '-', 0x1F7D, 0x1F80, '-', 0x1FB4, 0x1FB6, '-', 0x1FBC, 0x1FBE, 0x1FC2, '-', 0x1FC4,
    0x1FC6, '-', 0x1FCC, 0x1FD0, '-', 0x1FD3, 0x1FD6, '-', 0x1FDB, 0x1FE0, '-', 0x1FEC, 0x1FF2, '-', 0x1FF4,
    0x1FF6, '-', 0x1FFC, 0x2102, 0x2107, 0x210A, '-', 0x2113, 0x2115, 0x2119, '-', 0x211D, 0x2124, 0x2126,
    0x2128, 0x212A, '-', 0x212D, 0x212F, '-', 0x2134, 0x2139, 0x213C, '-', 0x213F, 0x2145, '-', 0x2149,
    0x214E, 0x2183, 0x2184, 0x2C00, '-', 0x2C7B, 0x2C7E, '-', 0x2CE4, 0x2CEB, '-', 0x2CEE, 0x2CF2, 0x2CF3,
    0xA640, '-', 0xA66D, 0xA680, '-', 0xA69B, 0xA722, '-', 0xA76F, 0xA771, '-', 0xA787, 0xA78B, '-', 0xA78E,
    0xAB70, '-', 0xABBF, 0xFB00, '-', 0xFB06, 0xFB13, '-', 0xFB17, 0xFF21, '-', 0xFF3A, 0xFF41, '-', 0xFF5A,
    0x10400, '-', 0x1044F, 0x104B0, '-', 0x104D3, 0x104D8, '-', 0x104FB, 0x10C80, '-', 0x10CB2, 0x10CC0, '-',
    0x10CF2, 0x118A0, '-', 0x118DF, 0x1E900, '-', 0x1E943};

/* The class is built from code points here, never from a copy that went
 * through Unicode normalization (spec §6.5: NFC turns K-ℭ (212A-212D) into
 * K-ℭ (004B-212D), which would swallow ASCII punctuation). */
const char *lode_tok_deepseek_llm_letters(void) {
    static char buf[1024];
    static bool init;
    if (!init) {
        char *o = buf;
        for (size_t i = 0; i < sizeof k_ds_letters / sizeof k_ds_letters[0]; i++)
            o += lode__utf8_encode(o, (int)k_ds_letters[i]);
        *o = 0;
        init = true;
    }
    return buf;
}

lode_status lode__tok_add_split(lode_tok *t, const char *pattern, int behavior, lode_error *err) {
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY, &ec, &eo,
                                   NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return lode_error_set(err, LODE_ERR_FORMAT, "pre-tokenizer regex /%.80s/ does not compile at offset %zu: %s",
                              pattern, (size_t)eo, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT is unavailable */
    t->splits = lode_xrealloc(t->splits, (size_t)(t->n_splits + 1) * sizeof(lode_split));
    t->splits[t->n_splits++] = (lode_split){re, behavior};
    return LODE_OK;
}

lode_status lode__tok_named_pre(lode_tok *t, const char *name, lode_error *err) {
    static const char *cjk = "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+";
    const char *gpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
    lode_status s = LODE_OK;
    snprintf(t->pre, sizeof t->pre, "%s", name);
    if (!strcmp(name, "deepseek-llm")) {
        char r2[1200];
        snprintf(r2, sizeof r2, "\\s?[%s]+", lode_tok_deepseek_llm_letters());
        const char *re[] = {"[\\r\\n]", r2, "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
                            "\\s+$", cjk, "\\p{N}+"};
        for (int i = 0; i < 6 && !s; i++) s = lode__tok_add_split(t, re[i], 0, err);
    } else if (!strcmp(name, "deepseek-coder")) {
        const char *re[] = {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", cjk, "\\p{N}"};
        for (int i = 0; i < 5 && !s; i++) s = lode__tok_add_split(t, re[i], 0, err);
    } else if (!strcmp(name, "deepseek-v3")) {
        const char *re[] = {"\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
                            "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
                            " ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
        for (int i = 0; i < 3 && !s; i++) s = lode__tok_add_split(t, re[i], 0, err);
    } else if (!strcmp(name, "default") || !strcmp(name, "gpt2") || !strcmp(name, "gpt-2")) {
        s = lode__tok_add_split(t, gpt2, 0, err);
    } else {
        return lode_error_set(err, LODE_ERR_UNSUPPORTED,
                              "pre-tokenizer '%s' is not supported (lode knows deepseek-llm, deepseek-coder, "
                              "deepseek-v3 and gpt2)",
                              name);
    }
    return s;
}

/* ---- fragments ----------------------------------------------------------------- */
typedef struct {
    size_t off, len;
    int32_t special; /* token id of an added token, or -1 for text */
} frag;

typedef struct {
    frag *v;
    size_t n, cap;
} fragv;

static void push(fragv *f, size_t off, size_t len, int32_t sp) {
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 64;
        f->v = lode_xrealloc(f->v, f->cap * sizeof(frag));
    }
    f->v[f->n++] = (frag){off, len, sp};
}

/* Longest match of an added token at every position, left to right. */
static void partition(const lode_tok *t, const char *s, size_t len, bool parse_special, fragv *out) {
    size_t start = 0, i = 0;
    while (i < len) {
        int32_t node = 0, best = -1;
        size_t best_len = 0;
        for (size_t k = i; k < len; k++) {
            node = t->trie[node].next[(unsigned char)s[k]];
            if (!node) break;
            int32_t id = t->trie[node].id;
            if (id >= 0 && (parse_special || t->type[id] == LODE_TOKEN_USER_DEFINED)) {
                best = id;
                best_len = k - i + 1;
            }
        }
        if (best >= 0) {
            if (i > start) push(out, start, i - start, -1);
            push(out, i, best_len, best);
            i += best_len;
            start = i;
        } else {
            i++;
        }
    }
    if (len > start) push(out, start, len - start, -1);
}

static void split_all(const lode_tok *t, const char *s, fragv *a, fragv *b, pcre2_match_data *md) {
    for (int r = 0; r < t->n_splits; r++) {
        b->n = 0;
        const lode_split *sp = &t->splits[r];
        for (size_t i = 0; i < a->n; i++) {
            frag f = a->v[i];
            if (f.special >= 0) {
                push(b, f.off, f.len, f.special);
                continue;
            }
            /* Matches m_i and gaps g_i alternate: g0 m1 g1 ... mk gk.
             * isolated: every one a piece; removed: gaps only;
             * merged with previous: (g0 m1)(g1 m2)...gk; with next:
             * g0 (m1 g1)(m2 g2)... */
            size_t pos = 0, last = 0;
            while (pos <= f.len) {
                int rc = pcre2_match(sp->re, (PCRE2_SPTR)(s + f.off), f.len, pos, 0, md, NULL);
                if (rc < 0) break;
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                size_t ms = ov[0], me = ov[1];
                if (me == ms) { /* empty match: step one character */
                    pos = ms + 1;
                    while (pos < f.len && ((unsigned char)s[f.off + pos] & 0xC0) == 0x80) pos++;
                    continue;
                }
                switch (sp->behavior) {
                case 0: /* isolated */
                    if (ms > last) push(b, f.off + last, ms - last, -1);
                    push(b, f.off + ms, me - ms, -1);
                    last = me;
                    break;
                case 1: /* removed */
                    if (ms > last) push(b, f.off + last, ms - last, -1);
                    last = me;
                    break;
                case 2: /* merged with previous */
                    push(b, f.off + last, me - last, -1);
                    last = me;
                    break;
                default: /* merged with next: the piece starts at the match */
                    if (ms > last) push(b, f.off + last, ms - last, -1);
                    last = ms;
                    break;
                }
                pos = me;
            }
            if (f.len > last) push(b, f.off + last, f.len - last, -1);
        }
        fragv tmp = *a;
        *a = *b;
        *b = tmp;
    }
}

/* ---- BPE ------------------------------------------------------------------------- */
typedef struct {
    int32_t id;
    int32_t prev, next; /* -1 = none */
    bool dead;
} sym;

typedef struct {
    int32_t rank, left, right_id, left_id;
} cand;

static bool cand_less(const cand *a, const cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    h[i] = c;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&h[i], &h[p])) break;
        cand x = h[i];
        h[i] = h[p];
        h[p] = x;
        i = p;
    }
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0];
    h[0] = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && cand_less(&h[l], &h[m])) m = l;
        if (r < *n && cand_less(&h[r], &h[m])) m = r;
        if (m == i) break;
        cand x = h[i];
        h[i] = h[m];
        h[m] = x;
        i = m;
    }
    return top;
}

typedef struct {
    sym *s;
    cand *h;
    size_t cap;
    int32_t *out;
    size_t n_out, cap_out;
} bpe_ws;

static void out_push(bpe_ws *w, int32_t id) {
    if (w->n_out == w->cap_out) {
        w->cap_out = w->cap_out ? w->cap_out * 2 : 256;
        w->out = lode_xrealloc(w->out, w->cap_out * sizeof(int32_t));
    }
    w->out[w->n_out++] = id;
}

static void try_pair(const lode_tok *t, bpe_ws *w, size_t *hn, int32_t left) {
    int32_t right = w->s[left].next;
    if (right < 0) return;
    int32_t rank, merged;
    if (lode__pairmap_get(&t->merges, w->s[left].id, w->s[right].id, &rank, &merged))
        heap_push(w->h, hn, (cand){rank, left, w->s[right].id, w->s[left].id});
}

static void bpe_piece(const lode_tok *t, const unsigned char *p, size_t n, bpe_ws *w) {
    /* Whole piece already a token (common words): no merging needed. */
    char tmp[256];
    size_t tl = 0;
    if (n <= 60) {
        for (size_t i = 0; i < n; i++) tl += (size_t)lode__utf8_encode(tmp + tl, lode__byte_to_cp(p[i]));
        int32_t id = lode__strmap_get(&t->vocab, tmp, tl);
        if (id >= 0 && t->type[id] == LODE_TOKEN_NORMAL) {
            out_push(w, id);
            return;
        }
    }
    if (n > w->cap) {
        w->cap = n * 2;
        w->s = lode_xrealloc(w->s, w->cap * sizeof(sym));
        w->h = lode_xrealloc(w->h, w->cap * 2 * sizeof(cand));
    }
    for (size_t i = 0; i < n; i++)
        w->s[i] = (sym){t->byte_id[p[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, false};
    size_t hn = 0;
    for (size_t i = 0; i + 1 < n; i++) try_pair(t, w, &hn, (int32_t)i);
    while (hn) {
        cand c = heap_pop(w->h, &hn);
        sym *L = &w->s[c.left];
        if (L->dead || L->id != c.left_id || L->next < 0) continue;
        sym *R = &w->s[L->next];
        if (R->id != c.right_id) continue;
        int32_t rank, merged;
        lode__pairmap_get(&t->merges, L->id, R->id, &rank, &merged);
        L->id = merged;
        R->dead = true;
        L->next = R->next;
        if (R->next >= 0) w->s[R->next].prev = c.left;
        if (L->prev >= 0) try_pair(t, w, &hn, L->prev);
        try_pair(t, w, &hn, c.left);
    }
    for (int32_t i = 0; i >= 0; i = w->s[i].next) {
        if (w->s[i].id >= 0) out_push(w, w->s[i].id);
        else { /* a byte without a vocabulary token: nothing sensible to emit */
        }
    }
}

lode_status lode_tok_encode(const lode_tok *t, const char *text, size_t len, bool add_bos, bool parse_special,
                            int32_t **ids, size_t *n, lode_error *err) {
    (void)err;
    fragv a = {0}, b = {0};
    bpe_ws w = {0};
    if (add_bos && t->bos >= 0) out_push(&w, t->bos);
    partition(t, text, len, parse_special, &a);
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    split_all(t, text, &a, &b, md);
    pcre2_match_data_free(md);
    for (size_t i = 0; i < a.n; i++) {
        if (a.v[i].special >= 0) out_push(&w, a.v[i].special);
        else if (a.v[i].len) bpe_piece(t, (const unsigned char *)text + a.v[i].off, a.v[i].len, &w);
    }
    lode_free(a.v);
    lode_free(b.v);
    lode_free(w.s);
    lode_free(w.h);
    if (!w.out) w.out = lode_xmalloc(sizeof(int32_t));
    *ids = w.out;
    *n = w.n_out;
    return LODE_OK;
}
