/*
 * gpu_bench.c — the Lite-shape GPU benchmark rows of tools/gpu-check.sh in
 * one model load: decode t/s at batch 1 and 8, prefill t/s at 512 and 16K
 * tokens, the time of one long prompt (128K tokens), and the measured HBM
 * read bandwidth. Prints one JSON line. Built by `tools/gpu-check.sh
 * prepare` against liblode.a (not part of `make`: it needs a GPU to mean
 * anything).
 *   gpu_bench MODEL [--device cuda|cpu] [--long N] [--no-16k] [-t THREADS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lode_cuda.h"
#include "lode_engine.h"

static int32_t *g_tok;
static int64_t g_ntok;

static void fill_tokens(int64_t n, int64_t V) {
    g_tok = malloc(sizeof(int32_t) * (size_t)n);
    uint64_t r = 88172645463325252ull;
    for (int64_t i = 0; i < n; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        g_tok[i] = (int32_t)(r % (uint64_t)V);
    }
    g_ntok = n;
}

static int die(const char *what, const lode_error *e) {
    fprintf(stderr, "gpu_bench: %s: %s\n", what, e->text);
    return 1;
}

/* Evaluate n tokens of one sequence, logits of the last only; seconds. */
static double prefill(lode_model *m, lode_kv *kv, int32_t seq, int64_t off, int64_t n, float *lg, lode_error *e) {
    bool *want = calloc((size_t)n, sizeof(bool));
    want[n - 1] = true;
    lode_batch b = {n, g_tok + off, NULL, seq, want};
    double t0 = lode_time_s();
    lode_status s = lode_model_eval(m, kv, &b, lg, e);
    double t = lode_time_s() - t0;
    free(want);
    return s ? -1 : t;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    int64_t long_n = 0;
    bool do16k = true;
    lode_model_params mp = lode_model_default_params();
    mp.device = LODE_DEVICE_CUDA;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            i++;
            mp.device = !strcmp(argv[i], "cpu") ? LODE_DEVICE_CPU : LODE_DEVICE_CUDA;
        } else if (!strcmp(argv[i], "--long") && i + 1 < argc) long_n = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--no-16k")) do16k = false;
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) mp.n_threads = atoi(argv[++i]);
        else path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "usage: gpu_bench MODEL [--device cuda|cpu] [--long N] [--no-16k] [-t THREADS]\n");
        return 2;
    }
    lode_error e = {0};
    double bw = 0;
    if (mp.device == LODE_DEVICE_CUDA && lode_cuda_measure_bandwidth(&bw, &e)) return die("bandwidth", &e);
    double t0 = lode_time_s();
    lode_model *m;
    if (lode_model_load(path, &mp, &m, &e)) return die("load", &e);
    const double t_load = lode_time_s() - t0;
    const lode_config *c = lode_model_config(m);
    const int64_t P = 128, TG = 128, B = 8, TG8 = 64, N16 = do16k ? 16384 : 0;
    int64_t cells = B * (P + TG8 + 8) + 1024;
    if (cells < N16 + 64) cells = N16 + 64;
    if (cells < long_n + 64) cells = long_n + 64;
    if (cells < P + TG + 64) cells = P + TG + 64;
    fill_tokens(cells + B * (P + TG8 + 8), c->n_vocab);
    lode_kv *kv;
    if (lode_kv_new(m, cells, &kv, &e)) return die("kv", &e);
    float *lg = malloc(sizeof(float) * (size_t)c->n_vocab * (size_t)B);
    /* decode, batch 1 */
    int32_t s = lode_kv_seq_new(kv);
    if (prefill(m, kv, s, 0, P, lg, &e) < 0) return die("prompt", &e);
    for (int64_t i = 0; i < 4; i++) { /* warm-up */
        lode_batch b = {1, g_tok + P + i, NULL, s, NULL};
        if (lode_model_eval(m, kv, &b, lg, &e)) return die("decode", &e);
    }
    t0 = lode_time_s();
    for (int64_t i = 0; i < TG; i++) {
        lode_batch b = {1, g_tok + P + 4 + i, NULL, s, NULL};
        if (lode_model_eval(m, kv, &b, lg, &e)) return die("decode", &e);
    }
    const double tg1 = (double)TG / (lode_time_s() - t0);
    lode_kv_seq_free(kv, s);
    /* decode, batch 8 (8 sequences of a 128-token prompt each) */
    int32_t seqs[8], bs[8 * 128];
    for (int64_t k = 0; k < B; k++) seqs[k] = lode_kv_seq_new(kv);
    for (int64_t k = 0; k < B; k++)
        for (int64_t i = 0; i < P; i++) bs[k * P + i] = seqs[k];
    {
        bool *want = calloc((size_t)(B * P), sizeof(bool));
        lode_batch b = {B * P, g_tok, bs, 0, want};
        if (lode_model_eval(m, kv, &b, lg, &e)) return die("batch prompt", &e);
        free(want);
    }
    double tg8 = 0;
    for (int64_t step = 0; step < TG8 + 2; step++) {
        if (step == 2) t0 = lode_time_s();
        int32_t tk[8];
        for (int64_t k = 0; k < B; k++) tk[k] = g_tok[(step * B + k) % g_ntok];
        lode_batch b = {B, tk, seqs, 0, NULL};
        if (lode_model_eval(m, kv, &b, lg, &e)) return die("batch decode", &e);
    }
    tg8 = (double)(B * TG8) / (lode_time_s() - t0);
    for (int64_t k = 0; k < B; k++) lode_kv_seq_free(kv, seqs[k]);
    /* prefill 512: best of 3 */
    double pp512 = 0;
    for (int r = 0; r < 3; r++) {
        s = lode_kv_seq_new(kv);
        double t = prefill(m, kv, s, 0, 512, lg, &e);
        if (t < 0) return die("pp512", &e);
        if (512.0 / t > pp512) pp512 = 512.0 / t;
        lode_kv_seq_free(kv, s);
    }
    double pp16k = 0;
    if (N16) {
        s = lode_kv_seq_new(kv);
        double t = prefill(m, kv, s, 0, N16, lg, &e);
        if (t < 0) return die("pp16k", &e);
        pp16k = (double)N16 / t;
        lode_kv_seq_free(kv, s);
    }
    double long_s = 0;
    if (long_n > 0) {
        s = lode_kv_seq_new(kv);
        long_s = prefill(m, kv, s, 0, long_n, lg, &e);
        if (long_s < 0) return die("long prompt", &e);
        lode_kv_seq_free(kv, s);
    }
    printf("{\"model\": \"%s\", \"device\": \"%s\", \"weights_gb\": %.3f, \"load_s\": %.2f, \"hbm_read_gbps\": %.1f, "
           "\"tg1\": %.2f, \"tg8\": %.2f, \"pp512\": %.1f, \"pp16k\": %.1f, \"long_tokens\": %lld, \"long_s\": %.2f}\n",
           path, lode_model_device(m), (double)lode_model_weight_bytes(m) / 1e9, t_load, bw, tg1, tg8, pp512, pp16k,
           (long long)long_n, long_s);
    free(lg);
    free(g_tok);
    lode_kv_free(kv);
    lode_model_free(m);
    return 0;
}
