/*
 * test_tok.c — tokenizer properties on the real DeepSeek vocabularies
 * (../shared/data/vocab): exact round trips for any bytes, added-token
 * handling, FIM layout by token text, chat formats, the streaming decoder,
 * and hostile inputs (huge runs) finishing in linear-ish time.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lode_gen.h"
#include "lode_tok.h"

static lode_tok *vocab(const char *name) {
    char *p = lode_gen_find_vocab(name);
    cr_assert(p, "ggml-vocab-%s.gguf not found (set LODE_VOCAB_DIR)", name);
    lode_tok *t;
    lode_error err = {0};
    cr_assert_eq(lode_tok_load(p, &t, &err), LODE_OK, "%s", err.text);
    lode_free(p);
    return t;
}

static void roundtrip(lode_tok *t, const char *s, size_t n) {
    int32_t *ids;
    size_t k;
    cr_assert_eq(lode_tok_encode(t, s, n, false, false, &ids, &k, NULL), LODE_OK);
    size_t len;
    char *d = lode_tok_decode(t, ids, k, false, &len);
    cr_assert_eq(len, n, "length %zu vs %zu", len, n);
    cr_assert(memcmp(d, s, n) == 0, "round trip differs");
    /* Streaming decode gives the same bytes. */
    lode_tok_stream st;
    lode_tok_stream_init(&st, false);
    char *acc = malloc(n + 16), buf[4096];
    size_t al = 0;
    for (size_t i = 0; i < k; i++) {
        size_t w = lode_tok_stream_push(t, &st, ids[i], buf, sizeof buf);
        memcpy(acc + al, buf, w);
        al += w;
    }
    al += lode_tok_stream_flush(&st, acc + al, 16);
    cr_assert_eq(al, n);
    cr_assert(memcmp(acc, s, n) == 0);
    free(acc);
    lode_free(d);
    lode_free(ids);
}

/* Bytes that never occur in valid UTF-8 (C0, C1, F5-FF) have no normal BPE
 * token in the DeepSeek vocabularies: their byte-level characters were added
 * as user-defined tokens ('ø' = byte F8 ...), whose text llama.cpp matches
 * and decodes as the Latin-1 character. So such a byte alone decodes to that
 * character's UTF-8 (as in llama.cpp), and it is the only loss: find those
 * bytes, check they are exactly of that kind, and keep them out of the
 * random round trips. */
static bool lossy[256];

static void find_lossy(lode_tok *t) {
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        int32_t *ids;
        size_t k, len;
        lode_tok_encode(t, &c, 1, false, false, &ids, &k, NULL);
        char *d = lode_tok_decode(t, ids, k, false, &len);
        lossy[b] = !(len == 1 && d[0] == c);
        if (lossy[b]) {
            cr_assert(b == 0xC0 || b == 0xC1 || b >= 0xF5, "byte %02X does not round trip", b);
            cr_assert_eq(lode_tok_type(t, ids[0]), LODE_TOKEN_USER_DEFINED);
            cr_assert(len == 2 && (unsigned char)d[0] == 0xC3, "byte %02X decodes as its Latin-1 character", b);
        }
        lode_free(d);
        lode_free(ids);
    }
}

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)rng;
}

Test(tok, roundtrip_bytes_and_utf8) {
    const char *names[] = {"deepseek-llm", "deepseek-coder"};
    for (int v = 0; v < 2; v++) {
        lode_tok *t = vocab(names[v]);
        roundtrip(t, "", 0);
        find_lossy(t);
        char all[256];
        size_t na = 0;
        for (int i = 0; i < 256; i++)
            if (!lossy[i]) all[na++] = (char)i;
        cr_assert_geq(na, 243);
        roundtrip(t, all, na);
        char buf[600];
        for (int it = 0; it < 300; it++) {
            size_t n = 0;
            while (n < 500) { /* random valid UTF-8 from several scripts */
                static const int base[] = {0x20, 0x41, 0x3B1, 0x430, 0x4E00, 0xAC00, 0x1F600, 0x2581, 0xFF5C, 0x9};
                int cp = base[rnd() % 10] + (int)(rnd() % 40);
                char u[4];
                int l = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
                if (l == 1) u[0] = (char)cp;
                else if (l == 2) u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 63));
                else if (l == 3) u[0] = (char)(0xE0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 63)), u[2] = (char)(0x80 | (cp & 63));
                else u[0] = (char)(0xF0 | (cp >> 18)), u[1] = (char)(0x80 | ((cp >> 12) & 63)), u[2] = (char)(0x80 | ((cp >> 6) & 63)), u[3] = (char)(0x80 | (cp & 63));
                memcpy(buf + n, u, (size_t)l);
                n += (size_t)l;
            }
            roundtrip(t, buf, n);
            for (size_t i = 0; i < n; i++) { /* arbitrary, mostly invalid UTF-8 */
                do buf[i] = (char)rnd();
                while (lossy[(unsigned char)buf[i]]);
            }
            roundtrip(t, buf, n);
        }
        lode_tok_free(t);
    }
}

Test(tok, fim_layout_by_text) {
    lode_tok *t = vocab("deepseek-coder");
    int32_t b, h, e;
    cr_assert_eq(lode_tok_fim_ids(t, &b, &h, &e, NULL), LODE_OK);
    cr_assert_eq(b, lode_tok_find(t, "<｜fim▁begin｜>"));
    int32_t *ids;
    size_t n;
    cr_assert_eq(lode_tok_fim_prompt(t, "def f(x):\n    ", 14, "\n    return y\n", 15, &ids, &n, NULL), LODE_OK);
    cr_assert_eq(ids[0], lode_tok_bos(t), "exactly one leading BOS");
    cr_assert_eq(ids[1], b);
    cr_assert_eq(ids[n - 1], e);
    size_t holes = 0;
    for (size_t i = 0; i < n; i++) {
        holes += ids[i] == h;
        if (i) cr_assert_neq(ids[i], lode_tok_bos(t), "no second BOS");
    }
    cr_assert_eq(holes, 1);
    lode_free(ids);
    /* ASCII look-alikes stay plain text. */
    const char *ascii = "<|fim_begin|>x<|fim_hole|>";
    cr_assert_eq(lode_tok_encode(t, ascii, strlen(ascii), false, true, &ids, &n, NULL), LODE_OK);
    for (size_t i = 0; i < n; i++) cr_assert(ids[i] != b && ids[i] != h && ids[i] != e);
    lode_free(ids);
    lode_tok_free(t);
}

Test(tok, no_fim_reports_why) {
    lode_tok *t = vocab("deepseek-llm"); /* its ids 100002+ are not FIM tokens */
    int32_t b, h, e;
    lode_error err = {0};
    cr_assert_eq(lode_tok_fim_ids(t, &b, &h, &e, &err), LODE_ERR_UNSUPPORTED);
    cr_assert(strstr(err.text, "fill-in-the-middle") != NULL, "%s", err.text);
    lode_tok_free(t);
}

Test(tok, special_tokens_parse_only_when_asked) {
    lode_tok *t = vocab("deepseek-llm");
    const char *s = "a<｜end▁of▁sentence｜>b";
    int32_t *ids;
    size_t n;
    lode_tok_encode(t, s, strlen(s), false, true, &ids, &n, NULL);
    bool found = false;
    for (size_t i = 0; i < n; i++) found |= ids[i] == lode_tok_eos(t);
    cr_assert(found, "parse_special: EOS text becomes the EOS token");
    lode_free(ids);
    lode_tok_encode(t, s, strlen(s), false, false, &ids, &n, NULL);
    for (size_t i = 0; i < n; i++) cr_assert_neq(ids[i], lode_tok_eos(t), "user text never becomes a control token");
    char *d = lode_tok_decode(t, ids, n, false, NULL);
    cr_assert_str_eq(d, s);
    lode_free(d);
    lode_free(ids);
    lode_tok_free(t);
}

Test(tok, chat_formats) {
    lode_tok *t = vocab("deepseek-llm");
    lode_chat_msg m[3] = {{"user", "hi"}, {"assistant", "hello"}, {"user", "sort a list"}};
    char *txt = lode_tok_chat_text(t, m, 3);
    cr_assert_str_eq(txt, "User: hi\n\nAssistant: hello<｜end▁of▁sentence｜>User: sort a list\n\nAssistant:");
    lode_free(txt);
    int32_t *ids;
    size_t n;
    cr_assert_eq(lode_tok_chat_prompt(t, m, 3, &ids, &n, NULL), LODE_OK);
    cr_assert_eq(ids[0], lode_tok_bos(t));
    /* Equals encoding the rendered text with special parsing after one BOS. */
    int32_t *ref;
    size_t rn;
    const char *r = "User: hi\n\nAssistant: hello<｜end▁of▁sentence｜>User: sort a list\n\nAssistant:";
    lode_tok_encode(t, r, strlen(r), true, true, &ref, &rn, NULL);
    cr_assert_eq(n, rn);
    cr_assert(memcmp(ids, ref, n * sizeof(int32_t)) == 0);
    lode_free(ids);
    lode_free(ref);
    lode_tok_free(t);
    t = vocab("deepseek-coder");
    lode_chat_msg u = {"user", "write fib"};
    txt = lode_tok_chat_text(t, &u, 1);
    cr_assert(strstr(txt, "### Instruction:\nwrite fib\n### Response:\n") != NULL, "%s", txt);
    lode_free(txt);
    lode_tok_free(t);
}

Test(tok, stream_never_splits_a_character) {
    lode_tok *t = vocab("deepseek-llm");
    const char *s = "emoji 🦙🦙 and 漢字 mixed";
    int32_t *ids;
    size_t n;
    lode_tok_encode(t, s, strlen(s), false, false, &ids, &n, NULL);
    lode_tok_stream st;
    lode_tok_stream_init(&st, false);
    char buf[64];
    for (size_t i = 0; i < n; i++) {
        size_t w = lode_tok_stream_push(t, &st, ids[i], buf, sizeof buf);
        /* every emitted chunk is complete UTF-8 */
        for (size_t j = 0; j < w;) {
            unsigned char c = (unsigned char)buf[j];
            size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            cr_assert(j + l <= w, "chunk ends inside a character");
            j += l;
        }
    }
    lode_free(ids);
    lode_tok_free(t);
}

Test(tok, hostile_inputs_finish, .timeout = 60) {
    lode_tok *t = vocab("deepseek-llm");
    size_t n = 2u << 20;
    char *s = malloc(n);
    const char *pat[] = {" ", "a", "7", "\n", "🦙", "\x80", "<｜"};
    for (int p = 0; p < 7; p++) {
        size_t pl = strlen(pat[p]);
        for (size_t i = 0; i + pl <= n; i += pl) memcpy(s + i, pat[p], pl);
        size_t len = n - n % pl;
        int32_t *ids;
        size_t k;
        cr_assert_eq(lode_tok_encode(t, s, len, false, false, &ids, &k, NULL), LODE_OK);
        size_t dl;
        char *d = lode_tok_decode(t, ids, k, false, &dl);
        cr_assert_eq(dl, len);
        cr_assert(memcmp(d, s, len) == 0);
        lode_free(d);
        lode_free(ids);
    }
    free(s);
    lode_tok_free(t);
}
