/*
 * fuzz_tok.c — libFuzzer target for the tokenizer: any bytes must encode
 * (with and without special-token parsing), decode back exactly (bytes that
 * have a normal token), and stream-decode to the same bytes. The vocabulary
 * is the real deepseek-llm one ($LODE_VOCAB_DIR or ../shared/data/vocab).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lode_tok.h"

static lode_tok *g_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *dir = getenv("LODE_VOCAB_DIR");
    char p[4096];
    snprintf(p, sizeof p, "%s/ggml-vocab-deepseek-llm.gguf", dir ? dir : "../shared/data/vocab");
    lode_error err = {0};
    if (lode_tok_load(p, &g_tok, &err)) {
        fprintf(stderr, "fuzz_tok: cannot load the deepseek-llm vocabulary %s: %s\n", p, err.text);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    int32_t *ids;
    size_t n;
    for (int special = 0; special < 2; special++) {
        if (lode_tok_encode(g_tok, (const char *)data, size, special, special, &ids, &n, NULL) != LODE_OK) abort();
        size_t len;
        char *d = lode_tok_decode(g_tok, ids, n, special, &len);
        bool lossless = true; /* bytes C0, C1, F5-FF have only user-defined tokens (see test_tok.c) */
        for (size_t i = 0; i < size; i++)
            if (data[i] == 0xC0 || data[i] == 0xC1 || data[i] >= 0xF5) lossless = false;
        if (!special && lossless && (len != size || memcmp(d, data, size) != 0)) abort();
        lode_tok_stream st;
        lode_tok_stream_init(&st, special);
        char buf[2048];
        size_t total = 0;
        for (size_t i = 0; i < n; i++) total += lode_tok_stream_push(g_tok, &st, ids[i], buf, sizeof buf);
        total += lode_tok_stream_flush(&st, buf, sizeof buf);
        if (total != len) abort();
        lode_free(d);
        lode_free(ids);
    }
    return 0;
}
