/*
 * bench_quant.c — single-thread throughput of lode_matvec_rows (GB/s of
 * weight bytes streamed) and lode_matmul_rows (GFLOP/s) on a 4096 x 4096
 * matrix of each type, at every instruction-set level the CPU has, and the
 * int8-activation path (lode_matmul_q8_rows, activations quantized
 * beforehand) at the best level: matvec GB/s, matmul 8 and 64 tokens GFLOP/s;
 * and the same for the load-time 16-row layout (lode_r16_*) where it runs.
 *
 * Build: make build/bench_quant (make bench builds and runs it).
 * Usage: build/bench_quant [rows] [cols]      (defaults 4096 4096)
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lode_base.h"
#include "lode_quant.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint32_t rng = 12345;
static float frand(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / 16777216.0f - 0.5f;
}

enum { NTOK = 8, NTOK_BIG = 64, SEED_ROWS = 64 };

typedef void (*q8_fn)(lode_type, const void *, int64_t, const void *, int64_t, float *, int64_t, int64_t, int64_t);

/* Best-of timings of an int8-path kernel: 1 token (GB/s of weights), 8 and
 * 64 tokens (GFLOP/s), printed as three columns. */
static void time_q8(q8_fn fn, lode_type t, const void *W, size_t rs, int64_t rows, int64_t cols, const void *xq,
                    float *y) {
    double bv = 1e9, b8 = 1e9, b64 = 1e9;
    for (int it = 0; it < 10; it++) {
        double t0 = now_s();
        fn(t, W, cols, xq, 1, y, rows, 0, rows);
        double t1 = now_s();
        fn(t, W, cols, xq, NTOK, y, rows, 0, rows);
        double t2 = now_s();
        if (it < 3) fn(t, W, cols, xq, NTOK_BIG, y, rows, 0, rows);
        double t3 = now_s();
        if (t1 - t0 < bv) bv = t1 - t0;
        if (t2 - t1 < b8) b8 = t2 - t1;
        if (it < 3 && t3 - t2 < b64) b64 = t3 - t2;
    }
    printf("  %10.2f  %8.1f  %9.1f", (double)rs * (double)rows / bv / 1e9,
           2.0 * (double)rows * (double)cols * NTOK / b8 / 1e9, 2.0 * (double)rows * (double)cols * NTOK_BIG / b64 / 1e9);
}

int main(int argc, char **argv) {
    const int64_t rows = argc > 1 ? atoll(argv[1]) : 4096, cols = argc > 2 ? atoll(argv[2]) : 4096;
    const lode_type types[] = {LODE_TYPE_F32,  LODE_TYPE_F16,  LODE_TYPE_BF16, LODE_TYPE_Q8_0,
                               LODE_TYPE_Q4_0, LODE_TYPE_Q4_1, LODE_TYPE_Q5_0, LODE_TYPE_Q5_1,
                               LODE_TYPE_Q4_K, LODE_TYPE_Q5_K, LODE_TYPE_Q6_K};
    float *src = malloc((size_t)(SEED_ROWS * cols) * sizeof(float));
    float *x = malloc((size_t)(NTOK_BIG * cols) * sizeof(float));
    float *y = malloc((size_t)(NTOK_BIG * rows) * sizeof(float));
    void *xq = malloc((size_t)(NTOK_BIG * cols) * 2);
    for (int64_t i = 0; i < SEED_ROWS * cols; i++) src[i] = frand();
    for (int64_t i = 0; i < NTOK_BIG * cols; i++) x[i] = frand();
    const lode_cpu_level max = lode_quant_cpu_level();
    printf("matvec %ld x %ld, single thread (GB/s of weights; matmul: %d tokens, GFLOP/s)\n", (long)rows,
           (long)cols, NTOK);
    printf("%-6s", "type");
    for (int lv = LODE_CPU_SCALAR; lv <= (int)max; lv++)
        printf("  %8s GB/s  %6s GF/s", lode_cpu_level_name((lode_cpu_level)lv), "mm");
    printf("   int8 GB/s  mm8 GF/s  mm64 GF/s    r16 GB/s  mm8 GF/s  mm64 GF/s\n");
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const lode_type t = types[ti];
        const size_t rs = lode_row_size(t, cols);
        if (!rs) continue;
        char *W = malloc(rs * (size_t)rows);
        /* Quantize a few distinct rows and tile them over the matrix. */
        for (int64_t r = 0; r < SEED_ROWS; r++) lode_type_get(t)->from_f32(src + r * cols, W + r * rs, cols);
        for (int64_t r = SEED_ROWS; r < rows; r++) memcpy(W + r * rs, W + (r % SEED_ROWS) * rs, rs);
        printf("%-6s", lode_type_name(t));
        for (int lv = LODE_CPU_SCALAR; lv <= (int)max; lv++) {
            lode_quant_set_cpu_level((lode_cpu_level)lv);
            double best = 1e9, best_mm = 1e9;
            const int reps = lv == LODE_CPU_SCALAR ? 3 : 10;
            for (int it = 0; it < reps; it++) {
                double t0 = now_s();
                lode_matvec_rows(t, W, cols, x, y, 0, rows);
                double dt = now_s() - t0;
                if (dt < best) best = dt;
            }
            for (int it = 0; it < (reps + 1) / 2; it++) {
                double t0 = now_s();
                lode_matmul_rows(t, W, cols, x, cols, NTOK, y, rows, 0, rows);
                double dt = now_s() - t0;
                if (dt < best_mm) best_mm = dt;
            }
            printf("  %13.2f  %11.1f", (double)rs * (double)rows / best / 1e9,
                   2.0 * (double)rows * (double)cols * NTOK / best_mm / 1e9);
        }
        const size_t ars = lode_act_row_size(t, cols);
        if (ars) {
            lode_quant_set_cpu_level(max);
            for (int k = 0; k < NTOK_BIG; k++) lode_act_quantize(t, x + k * cols, (char *)xq + k * ars, cols);
            time_q8(lode_matmul_q8_rows, t, W, rs, rows, cols, xq, y);
            if (lode_r16_supported(t, rows, cols) && lode_r16_fast(t)) {
                /* the same weights in the load-time 16-row layout */
                lode_r16_pack_groups(t, W, cols, 0, rows / 16);
                time_q8(lode_r16_matmul_q8, t, W, rs, rows, cols, xq, y);
            }
        }
        printf("\n");
        fflush(stdout);
        free(W);
    }
    free(src);
    free(x);
    free(y);
    free(xq);
    return 0;
}
