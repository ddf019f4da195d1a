/*
 * cmd_bench.c — `lode bench -m MODEL [-p 512] [-n 128] [-d DEPTH] [-r REPS] [-t N] [--json]`:
 * llama-bench-style rows: prompt processing (pp) and generation (tg) in
 * tokens/s with the spread over repetitions. Tokens are a fixed pseudo-random
 * sequence (the content does not change the cost). Like llama-bench, one
 * untimed warm-up (a pp batch and a tg token) runs first, so the first
 * repetition does not pay for page faults on the mmapped weights; the JSON
 * row also reports the peak resident set and the KV cache's size (the
 * issue-4 memory bar: peak RSS <= file + KV cache + 10 %).
 */
#include <sys/resource.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_util.h"
#include "lode_engine.h"

typedef struct {
    double mean, sd;
} stat2;

static stat2 stats(const double *v, int n) {
    stat2 s = {0, 0};
    for (int i = 0; i < n; i++) s.mean += v[i];
    s.mean /= n;
    for (int i = 0; i < n; i++) s.sd += (v[i] - s.mean) * (v[i] - s.mean);
    s.sd = n > 1 ? sqrt(s.sd / (n - 1)) : 0;
    return s;
}

int lode_cmd_bench(int argc, char **argv) {
    const char *model = NULL;
    int64_t pp = 512, tg = 128, depth = 0, reps = 3;
    bool json = false, warmup = true, synthetic = false;
    lode_model_params mp = lode_model_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
        if (!strcmp(a, "-m") && v) model = v, i++;
        else if (!strcmp(a, "-p") && v && lode_cli_parse_i64(v, &pp) && pp >= 0) i++;
        else if (!strcmp(a, "-n") && v && lode_cli_parse_i64(v, &tg) && tg >= 0) i++;
        else if (!strcmp(a, "-d") && v && lode_cli_parse_i64(v, &depth) && depth >= 0) i++;
        else if (!strcmp(a, "-r") && v && lode_cli_parse_i64(v, &reps) && reps > 0 && reps <= 100) i++;
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--no-warmup")) warmup = false;
        else if (!strcmp(a, "--fill") && v && (!strcmp(v, "eval") || !strcmp(v, "synthetic"))) synthetic = v[0] == 's', i++;
        else if ((x = lode_cli_model_flag("bench", a, v, &mp)) != 0) {
            if (x < 0) return 2;
            i += (int)x - 1;
        }
        else {
            fprintf(stderr, "usage: lode bench -m MODEL [-p 512] [-n 128] [-d DEPTH] [--fill eval|synthetic] [-r REPS] [--no-warmup] [--json] " LODE_CLI_MODEL_FLAGS_HELP "\n");
            return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "usage: lode bench -m MODEL [-p 512] [-n 128] [-d DEPTH] [-r REPS] [-t N] [--json]\n");
        return 2;
    }
    lode_error err = {0};
    lode_model *m;
    if (lode_model_load(model, &mp, &m, &err)) {
        fprintf(stderr, "lode bench: %s\n", err.text);
        return 1;
    }
    const lode_config *c = lode_model_config(m);
    int64_t nmax = depth + (pp > tg ? pp : tg) + tg + 8;
    lode_kv *kv;
    if (lode_kv_new(m, nmax, &kv, &err)) {
        fprintf(stderr, "lode bench: %s\n", err.text);
        lode_model_free(m);
        return 1;
    }
    int32_t *toks = lode_xmalloc((size_t)nmax * sizeof(int32_t));
    uint64_t r = 88172645463325252ull;
    for (int64_t i = 0; i < nmax; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        toks[i] = (int32_t)(r % (uint64_t)c->n_vocab);
    }
    float *lg = lode_xmalloc((size_t)c->n_vocab * sizeof(float));
    bool *want = lode_xcalloc((size_t)(pp > depth ? pp : depth) + 1, sizeof(bool));
    double pps[100], tgs[100];
    int rc = 0;
    if (warmup) {
        int32_t s = lode_kv_seq_new(kv);
        const int64_t n = pp > 0 ? pp : 1;
        want[n - 1] = true;
        lode_batch b = {n, toks, NULL, s, want};
        if (lode_model_eval(m, kv, &b, lg, &err)) rc = 1;
        want[n - 1] = false;
        lode_batch g = {1, toks + n, NULL, s, NULL};
        if (!rc && tg > 0 && lode_model_eval(m, kv, &g, lg, &err)) rc = 1;
        lode_kv_seq_free(kv, s);
    }
    for (int64_t rep = 0; rep < reps && !rc; rep++) {
        int32_t s = lode_kv_seq_new(kv);
        if (depth > 0 && synthetic) {
            if (lode_kv_seq_fill_synthetic(kv, s, depth, 0x9E3779B97F4A7C15ull + (uint64_t)rep, &err)) rc = 1;
        } else if (depth > 0) {
            want[depth - 1] = true;
            lode_batch d = {depth, toks, NULL, s, want};
            if (lode_model_eval(m, kv, &d, lg, &err)) rc = 1;
            want[depth - 1] = false;
        }
        if (pp > 0 && !rc) {
            int32_t f = lode_kv_seq_fork(kv, s, depth);
            want[pp - 1] = true;
            lode_batch b = {pp, toks + depth, NULL, f, want};
            double t0 = lode_time_s();
            if (lode_model_eval(m, kv, &b, lg, &err)) rc = 1;
            pps[rep] = (double)pp / (lode_time_s() - t0);
            want[pp - 1] = false;
            lode_kv_seq_free(kv, f);
        }
        if (tg > 0 && !rc) {
            double t0 = lode_time_s();
            for (int64_t i = 0; i < tg && !rc; i++) {
                lode_batch b = {1, toks + depth + i, NULL, s, NULL};
                if (lode_model_eval(m, kv, &b, lg, &err)) rc = 1;
            }
            tgs[rep] = (double)tg / (lode_time_s() - t0);
        }
        lode_kv_seq_free(kv, s);
    }
    if (rc) {
        fprintf(stderr, "lode bench: %s\n", err.text);
    } else {
        stat2 a = stats(pps, (int)reps), b = stats(tgs, (int)reps);
        double gb = (double)lode_model_weight_bytes(m) / 1e9;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        const double rss_gb = (double)ru.ru_maxrss * 1024.0 / 1e9, kv_gb = (double)lode_kv_bytes(kv) / 1e9;
        if (json) {
            printf("{\"model\": \"%s\", \"weights_gb\": %.3f, \"threads\": %d, \"depth\": %lld, \"pp\": %lld, "
                   "\"pp_tps\": %.3f, \"pp_sd\": %.3f, \"tg\": %lld, \"tg_tps\": %.3f, \"tg_sd\": %.3f, "
                   "\"kv_gb\": %.4f, \"peak_rss_gb\": %.3f, \"fill\": \"%s\"}\n",
                   model, gb, lode_model_n_threads(m), (long long)depth, (long long)pp, pp ? a.mean : 0,
                   pp ? a.sd : 0, (long long)tg, tg ? b.mean : 0, tg ? b.sd : 0, kv_gb, rss_gb,
                   synthetic ? "synthetic" : "eval");
        } else {
            printf("| %-40s | %8s | %7s | %6s | %-10s | %16s |\n", "model", "size GB", "threads", "depth", "test", "t/s");
            if (pp) printf("| %-40.40s | %8.2f | %7d | %6lld | pp%-8lld | %9.2f ± %5.2f |\n", model, gb,
                           lode_model_n_threads(m), (long long)depth, (long long)pp, a.mean, a.sd);
            if (tg) printf("| %-40.40s | %8.2f | %7d | %6lld | tg%-8lld | %9.2f ± %5.2f |\n", model, gb,
                           lode_model_n_threads(m), (long long)depth, (long long)tg, b.mean, b.sd);
            if (depth && synthetic) printf("(the %lld cached positions were filled with synthetic values, not evaluated)\n", (long long)depth);
        }
    }
    lode_free(toks);
    lode_free(lg);
    lode_free(want);
    lode_kv_free(kv);
    lode_model_free(m);
    return rc;
}
