/*
 * cmd_tok.c — `lode tokenize` and `lode detokenize`.
 *   lode tokenize -m MODEL [--text T | < FILE] [--json] [--bos] [--special] [--time]
 *   lode detokenize -m MODEL --tokens 1,2,3 [--special]
 *   lode tokenize -m MODEL --batch CASES.json   (a JSON array of strings in;
 *       a JSON array of id arrays out: many cases with one tokenizer load)
 * MODEL: a GGUF file (vocab-only works), an HF directory or a tokenizer.json.
 * --special parses control-token text in the input (tokenize) or shows
 * control tokens (detokenize). --time reports encode speed on stderr.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_util.h"
#include "lode_tok.h"

static lode_tok *load(const char *cmd, const char *model) {
    lode_tok *t;
    lode_error err = {0};
    if (lode_tok_load(model, &t, &err)) {
        fprintf(stderr, "lode %s: %s\n", cmd, err.text);
        return NULL;
    }
    return t;
}

static int batch_tokenize(const lode_tok *t, const char *path, bool bos, bool special) {
    json_error_t je;
    json_t *cases = json_load_file(path, 0, &je);
    if (!json_is_array(cases)) {
        fprintf(stderr, "lode tokenize: %s: expected a JSON array of strings (%s)\n", path, je.text);
        json_decref(cases);
        return 1;
    }
    json_t *out = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        int32_t *ids;
        size_t n;
        json_t *row = json_array();
        if (json_is_string(c) &&
            lode_tok_encode(t, json_string_value(c), json_string_length(c), bos, special, &ids, &n, NULL) == LODE_OK) {
            for (size_t k = 0; k < n; k++) json_array_append_new(row, json_integer(ids[k]));
            lode_free(ids);
        }
        json_array_append_new(out, row);
    }
    json_dumpf(out, stdout, JSON_COMPACT);
    printf("\n");
    json_decref(out);
    json_decref(cases);
    return 0;
}

int lode_cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *batch = NULL;
    bool json = false, bos = false, special = false, timing = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--time")) timing = true;
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = argv[++i];
        else if (!strcmp(argv[i], "--text") && i + 1 < argc) text = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--bos")) bos = true;
        else if (!strcmp(argv[i], "--special")) special = true;
        else {
            fprintf(stderr, "usage: lode tokenize -m MODEL [--text T | < FILE] [--json] [--bos] [--special]\n");
            return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "usage: lode tokenize -m MODEL [--text T | < FILE] [--json] [--bos] [--special]\n");
        return 2;
    }
    lode_tok *t = load("tokenize", model);
    if (!t) return 1;
    if (batch) {
        int rc = batch_tokenize(t, batch, bos, special);
        lode_tok_free(t);
        return rc;
    }
    size_t len;
    char *buf = NULL;
    if (text) len = strlen(text);
    else if (!(buf = lode_cli_read_stdin(&len))) {
        fprintf(stderr, "lode tokenize: cannot read standard input\n");
        lode_tok_free(t);
        return 1;
    }
    int32_t *ids;
    size_t n;
    lode_error err = {0};
    double t0 = lode_time_s();
    lode_status s = lode_tok_encode(t, text ? text : buf, len, bos, special, &ids, &n, &err);
    if (timing && !s)
        fprintf(stderr, "{\"bytes\": %zu, \"seconds\": %.6f, \"mb_per_s\": %.3f, \"tokens\": %zu}\n", len,
                lode_time_s() - t0, (double)len / 1e6 / (lode_time_s() - t0), n);
    if (!s) {
        /* One buffered write: multi-megabyte inputs give millions of ids. */
        size_t cap = n * 12 + 8, w = 0;
        char *o = lode_xmalloc(cap);
        if (json) o[w++] = '[';
        for (size_t i = 0; i < n; i++)
            w += (size_t)snprintf(o + w, cap - w, json ? "%s%d" : "%s%d", i ? (json ? ", " : " ") : "", ids[i]);
        if (json) o[w++] = ']';
        o[w++] = '\n';
        fwrite(o, 1, w, stdout);
        lode_free(o);
        lode_free(ids);
    } else {
        fprintf(stderr, "lode tokenize: %s\n", err.text);
    }
    lode_free(buf);
    lode_tok_free(t);
    return s ? 1 : 0;
}

int lode_cmd_detokenize(int argc, char **argv) {
    const char *model = NULL, *toks = NULL;
    bool special = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) toks = argv[++i];
        else if (!strcmp(argv[i], "--special")) special = true;
        else {
            fprintf(stderr, "usage: lode detokenize -m MODEL --tokens 1,2,3 [--special]\n");
            return 2;
        }
    }
    if (!model || !toks) {
        fprintf(stderr, "usage: lode detokenize -m MODEL --tokens 1,2,3 [--special]\n");
        return 2;
    }
    int32_t *ids;
    size_t n;
    if (!lode_cli_parse_ids(toks, &ids, &n)) {
        fprintf(stderr, "lode detokenize: --tokens must be a list of non-negative integers\n");
        return 2;
    }
    lode_tok *t = load("detokenize", model);
    if (!t) {
        lode_free(ids);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= lode_tok_n_vocab(t)) {
            fprintf(stderr, "lode detokenize: token %d is outside the vocabulary (size %lld)\n", ids[i],
                    (long long)lode_tok_n_vocab(t));
            lode_free(ids);
            lode_tok_free(t);
            return 1;
        }
    size_t len;
    char *s = lode_tok_decode(t, ids, n, special, &len);
    fwrite(s, 1, len, stdout);
    lode_free(s);
    lode_free(ids);
    lode_tok_free(t);
    return 0;
}
