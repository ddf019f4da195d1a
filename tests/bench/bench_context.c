/*
 * bench_context.c — context assembly latency with a warm index (`make
 * bench`, tools/bench.sh): lode_ctx_build per keystroke, as `lode lsp`
 * runs it.
 *
 *   bench_context [--bursts 60] [--keys 10] [--budget 4096] [--tokenizer VOCAB] [--json]
 *                 --file FILE [--file FILE ...] ROOT...
 *
 * The roots are indexed (the disk cache makes a second run warm), then for
 * each FILE, kept parsed as an open document (lode_sdoc): `bursts` times, a
 * cursor at a pseudo-random line end inside the file, `keys` characters
 * typed there one by one (the incremental reparse is not timed: it is the
 * document's, not the context's), and after each keystroke the timed
 * lode_ctx_build of the prompt. Prints p50/p90/p99/max in ms.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lode_context.h"

static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int dcmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static char *slurp(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long k = ftell(f);
    rewind(f);
    char *b = malloc((size_t)k + 1);
    if (fread(b, 1, (size_t)k, f) != (size_t)k) k = 0;
    fclose(f);
    b[k] = 0;
    *n = (size_t)k;
    return b;
}

int main(int argc, char **argv) {
    size_t bursts = 60, keys = 10, budget = 4096;
    const char *vocab = NULL, *files[8];
    size_t nf = 0;
    const char *roots[16];
    size_t nr = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bursts") && i + 1 < argc) bursts = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--keys") && i + 1 < argc) keys = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--budget") && i + 1 < argc) budget = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) vocab = argv[++i];
        else if (!strcmp(argv[i], "--file") && i + 1 < argc && nf < 8) files[nf++] = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = true;
        else if (argv[i][0] != '-' && nr < 16) roots[nr++] = argv[i];
        else {
            fprintf(stderr, "usage: bench_context [--bursts N] [--keys N] [--budget N] [--tokenizer VOCAB] [--json] --file FILE... ROOT...\n");
            return 2;
        }
    }
    if (!nf || !nr || !bursts || !keys) {
        fprintf(stderr, "usage: bench_context [--bursts N] [--keys N] [--budget N] [--tokenizer VOCAB] [--json] --file FILE... ROOT...\n");
        return 2;
    }
    lode_error e = {0};
    lode_tok *tok = NULL;
    if (vocab && lode_tok_load(vocab, &tok, &e)) {
        fprintf(stderr, "bench_context: %s\n", e.text);
        return 1;
    }
    lode_index_opts o = {.no_watch = true};
    double t0 = lode_time_s();
    lode_index *ix = lode_index_open(roots, nr, &o, &e);
    if (!ix || lode_index_scan(ix, &e)) {
        fprintf(stderr, "bench_context: %s\n", e.text);
        return 1;
    }
    double t_scan = lode_time_s() - t0;
    lode_index_stats st;
    lode_index_get_stats(ix, &st);
    lode_ctx *c = lode_ctx_new(ix, roots, nr, tok);
    size_t total = bursts * keys * nf, k = 0;
    double *ms = malloc(total * sizeof *ms), *typing = malloc(total * sizeof *typing), *cpu = malloc(total * sizeof *cpu);
    size_t kt = 0;
    size_t tokens_sum = 0;
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (size_t fi = 0; fi < nf; fi++) {
        size_t len = 0;
        char *text = slurp(files[fi], &len);
        char *rp = realpath(files[fi], NULL);
        const lode_lang *lang = rp ? lode_lang_for_path(rp) : NULL;
        if (!text || !lang) {
            fprintf(stderr, "bench_context: cannot read %s or no language for it\n", files[fi]);
            return 1;
        }
        lode_sdoc *d = lode_sdoc_new(lang, text, len);
        for (size_t b = 0; b < bursts; b++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t tl;
            const char *t = lode_sdoc_text(d, &tl);
            size_t at = (size_t)(rng >> 33) % (tl ? tl : 1);
            while (at < tl && t[at] != '\n') at++; /* a line end */
            for (size_t q = 0; q < keys; q++) {
                char ch = "abcdefghij"[q % 10];
                if (lode_sdoc_edit(d, at, at, &ch, 1, &e)) {
                    fprintf(stderr, "bench_context: %s\n", e.text);
                    return 1;
                }
                at++;
                t = lode_sdoc_text(d, &tl);
                lode_ctx_input in = {rp, lang, t, tl, at, lode_sdoc_tree(d), budget};
                lode_ctx_prompt p;
                double a = lode_time_s(), ca = cpu_ms();
                if (lode_ctx_build(c, &in, &p, &e)) {
                    fprintf(stderr, "bench_context: %s\n", e.text);
                    return 1;
                }
                cpu[k] = cpu_ms() - ca;
                ms[k++] = (lode_time_s() - a) * 1000.0;
                if (q) typing[kt++] = ms[k - 1]; /* not the first at a new cursor place */
                tokens_sum += p.tokens;
                lode_ctx_prompt_clear(&p);
                lode_ctx_note_edit(c, rp, at);
            }
        }
        lode_sdoc_free(d);
        free(text);
        free(rp);
    }
    qsort(ms, k, sizeof *ms, dcmp);
    qsort(typing, kt, sizeof *typing, dcmp);
    qsort(cpu, k, sizeof *cpu, dcmp);
    double c50 = cpu[k / 2], c99 = cpu[k * 99 / 100];
    double p50 = ms[k / 2], p90 = ms[k * 90 / 100], p99 = ms[k * 99 / 100], mx = ms[k - 1];
    double t50 = kt ? typing[kt / 2] : 0, t99 = kt ? typing[kt * 99 / 100] : 0;
    if (json)
        printf("{\"files_indexed\": %zu, \"scan_s\": %.2f, \"cache_hits\": %zu, \"builds\": %zu, \"budget\": %zu, "
               "\"exact\": %s, \"mean_tokens\": %zu, \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, "
               "\"typing_p50_ms\": %.3f, \"typing_p99_ms\": %.3f, \"cpu_p50_ms\": %.3f, \"cpu_p99_ms\": %.3f}\n",
               st.files, t_scan, st.cache_hits, k, budget, tok ? "true" : "false", tokens_sum / k, p50, p90, p99, mx, t50, t99, c50, c99);
    else
        printf("context assembly, %zu-file index (scan %.2f s, %zu from the disk cache), budget %zu tokens (%s), "
               "%zu keystrokes in %zu file(s), mean prompt %zu tokens: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms; "
               "keystrokes after the first at a cursor place: p50 %.2f ms, p99 %.2f ms; CPU time p50 %.2f ms, p99 %.2f ms\n",
               st.files, t_scan, st.cache_hits, budget, tok ? "counted with the tokenizer" : "estimated", k, nf,
               tokens_sum / k, p50, p90, p99, mx, t50, t99, c50, c99);
    free(ms);
    free(typing);
    free(cpu);
    lode_ctx_free(c);
    lode_index_free(ix);
    lode_tok_free(tok);
    return 0;
}
