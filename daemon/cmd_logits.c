/*
 * cmd_logits.c — `lode logits -m MODEL --tokens 1,2,3 [--top K] [--full]`:
 * one JSON object per line and position: {"pos": i, "top": [[id, logit],
 * ...]} plus "logits": [all floats] with --full. The exactness tests compare
 * this output with an independent reference and with llama.cpp.
 *   --step       evaluate token by token (decode path) instead of one batch
 *   --mla MODE   auto | absorbed | decompressed
 *   --fork N     evaluate the first N tokens, fork the sequence there and
 *                evaluate the rest on the fork (prefix-sharing check)
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_util.h"
#include "lode_engine.h"

static void usage(FILE *f) {
    fprintf(f, "usage: lode logits -m MODEL --tokens 1,2,3 [--top K] [--full] [--step] [--fork N]\n"
               "                   " LODE_CLI_MODEL_FLAGS_HELP "\n");
}

static void print_row(int64_t pos, const float *lg, int64_t V, int top, bool full) {
    printf("{\"pos\": %lld, \"top\": [", (long long)pos);
    /* Top-K by repeated selection (K small). */
    int32_t ids[256];
    if (top > 256) top = 256;
    if (top > V) top = (int)V;
    for (int k = 0; k < top; k++) {
        int64_t b = -1;
        for (int64_t i = 0; i < V; i++) {
            bool used = false;
            for (int j = 0; j < k; j++)
                if (ids[j] == i) used = true;
            if (!used && (b < 0 || lg[i] > lg[b])) b = i;
        }
        ids[k] = (int32_t)b;
        printf("%s[%d, %.9g]", k ? ", " : "", ids[k], lg[b]);
    }
    printf("]");
    if (full) {
        printf(", \"logits\": [");
        for (int64_t i = 0; i < V; i++) printf("%s%.9g", i ? ", " : "", lg[i]);
        printf("]");
    }
    printf("}\n");
}

int lode_cmd_logits(int argc, char **argv) {
    const char *model = NULL, *toks = NULL;
    int64_t top = 5, fork_at = -1;
    bool full = false, step = false;
    lode_model_params mp = lode_model_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") && v) model = v, i++;
        else if (!strcmp(a, "--tokens") && v) toks = v, i++;
        else if (!strcmp(a, "--top") && v && lode_cli_parse_i64(v, &top) && top >= 0) i++;
        else if (!strcmp(a, "--fork") && v && lode_cli_parse_i64(v, &fork_at) && fork_at >= 0) i++;
        else if (!strcmp(a, "--full")) full = true;
        else if (!strcmp(a, "--step")) step = true;
        else if ((x = lode_cli_model_flag("logits", a, v, &mp)) != 0) {
            if (x < 0) return 2;
            i += (int)x - 1;
        } else {
            fprintf(stderr, "lode logits: bad argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model || !toks) {
        usage(stderr);
        return 2;
    }
    int32_t *ids;
    size_t n;
    if (!lode_cli_parse_ids(toks, &ids, &n) || n == 0) {
        fprintf(stderr, "lode logits: --tokens must be a non-empty list of non-negative integers\n");
        return 2;
    }
    lode_error err = {0};
    lode_model *m;
    if (lode_model_load(model, &mp, &m, &err)) {
        fprintf(stderr, "lode logits: %s\n", err.text);
        lode_free(ids);
        return 1;
    }
    const int64_t V = lode_model_config(m)->n_vocab;
    lode_kv *kv = NULL;
    float *lg = lode_try_malloc((size_t)V * n * sizeof(float));
    int rc = 1;
    if (!lg) {
        fprintf(stderr, "lode logits: out of memory for %zu x %lld logits\n", n, (long long)V);
        goto done;
    }
    if (lode_kv_new(m, (int64_t)n + 1, &kv, &err)) {
        fprintf(stderr, "lode logits: %s\n", err.text);
        goto done;
    }
    int32_t seq = lode_kv_seq_new(kv);
    size_t first = 0;
    if (fork_at > 0 && (size_t)fork_at < n) {
        lode_batch b = {(int64_t)fork_at, ids, NULL, seq, NULL};
        if (lode_model_eval(m, kv, &b, lg, &err)) goto fail;
        int32_t f = lode_kv_seq_fork(kv, seq, fork_at);
        lode_kv_seq_free(kv, seq);
        seq = f;
        first = (size_t)fork_at;
    }
    if (step) {
        for (size_t i = first; i < n; i++) {
            lode_batch b = {1, ids + i, NULL, seq, NULL};
            if (lode_model_eval(m, kv, &b, lg + i * (size_t)V, &err)) goto fail;
        }
    } else if (first < n) {
        lode_batch b = {(int64_t)(n - first), ids + first, NULL, seq, NULL};
        if (lode_model_eval(m, kv, &b, lg + first * (size_t)V, &err)) goto fail;
    }
    for (size_t i = 0; i < n; i++) print_row((int64_t)i, lg + i * (size_t)V, V, (int)top, full);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "lode logits: %s\n", err.text);
done:
    lode_kv_free(kv);
    lode_free(lg);
    lode_free(ids);
    lode_model_free(m);
    return rc;
}
