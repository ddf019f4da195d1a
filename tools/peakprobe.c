/*
 * peakprobe.c — the CPU's arithmetic peak, measured: independent chains of
 * the instruction the int8 prefill kernels use (AVX-512 VNNI vpdpbusd where
 * the CPU has it, else AVX2 vpmaddubsw + vpmaddwd + vpaddd) and of f32 FMA,
 * on every thread at once. `make bench` prints it as the compute roofline
 * next to the prompt-processing figures.
 *   build/peakprobe [THREADS]   -> {"threads": T, "int8_gops": x, "f32_gflops": y, "int8_kind": "..."}
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define N_ITER 50000000L

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static double int8_vnni(void) {
    __m512i a[12], w = _mm512_set1_epi8(3), x = _mm512_set1_epi8(1);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_epi32(i);
    for (long k = 0; k < N_ITER; k++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_dpbusd_epi32(a[i], w, x);
        __asm__ volatile("" : "+v"(w));
    }
    __m512i s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_epi32(s, a[i]);
    volatile int sink = _mm512_reduce_add_epi32(s);
    (void)sink;
    return (double)N_ITER * 12 * 64 * 2;
}

__attribute__((target("avx2"))) static double int8_avx2(void) {
    __m256i a[8], w = _mm256_set1_epi8(3), x = _mm256_set1_epi8(1), one = _mm256_set1_epi16(1);
    for (int i = 0; i < 8; i++) a[i] = _mm256_set1_epi32(i);
    for (long k = 0; k < N_ITER; k++) {
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) a[i] = _mm256_add_epi32(a[i], _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), one));
        __asm__ volatile("" : "+v"(w));
    }
    __m256i s = a[0];
    for (int i = 1; i < 8; i++) s = _mm256_add_epi32(s, a[i]);
    volatile int sink = _mm256_extract_epi32(s, 0);
    (void)sink;
    return (double)N_ITER * 8 * 32 * 2;
}

__attribute__((target("avx2,fma"))) static double f32_fma(void) {
    __m256 f[12], w = _mm256_set1_ps(1.0001f), x = _mm256_set1_ps(0.9999f);
    for (int i = 0; i < 12; i++) f[i] = _mm256_set1_ps((float)i);
    for (long k = 0; k < N_ITER; k++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) f[i] = _mm256_fmadd_ps(f[i], w, x);
        __asm__ volatile("" : "+v"(w));
    }
    __m256 s = f[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, f[i]);
    volatile float sink = _mm256_cvtss_f32(s);
    (void)sink;
    return (double)N_ITER * 12 * 8 * 2;
}

__attribute__((target("avx512f"))) static double f32_fma512(void) {
    __m512 f[12], w = _mm512_set1_ps(1.0001f), x = _mm512_set1_ps(0.9999f);
    for (int i = 0; i < 12; i++) f[i] = _mm512_set1_ps((float)i);
    for (long k = 0; k < N_ITER; k++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) f[i] = _mm512_fmadd_ps(f[i], w, x);
        __asm__ volatile("" : "+v"(w));
    }
    __m512 s = f[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, f[i]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return (double)N_ITER * 12 * 16 * 2;
}

static int g_vnni, g_512;
static double g_ops[2][64], g_t[2][64];

static void *worker(void *arg) {
    const long id = (long)arg;
    double t0 = now();
    g_ops[0][id] = g_vnni ? int8_vnni() : int8_avx2();
    g_t[0][id] = now() - t0;
    t0 = now();
    g_ops[1][id] = g_512 ? f32_fma512() : f32_fma();
    g_t[1][id] = now() - t0;
    return NULL;
}

int main(int argc, char **argv) {
    int T = argc > 1 ? atoi(argv[1]) : 1;
    if (T < 1 || T > 64) T = 1;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2")) {
        printf("{\"threads\": %d, \"int8_gops\": 0, \"f32_gflops\": 0, \"int8_kind\": \"none (no AVX2)\"}\n", T);
        return 0;
    }
    g_vnni = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
    g_512 = __builtin_cpu_supports("avx512f");
    pthread_t th[64];
    for (long i = 0; i < T; i++) pthread_create(&th[i], NULL, worker, (void *)i);
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    double r[2] = {0, 0};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < T; i++) r[k] += g_ops[k][i] / g_t[k][i] / 1e9;
    printf("{\"threads\": %d, \"int8_gops\": %.0f, \"f32_gflops\": %.0f, \"int8_kind\": \"%s\"}\n", T, r[0], r[1],
           g_vnni ? "avx512 vpdpbusd" : "avx2 vpmaddubsw");
    return 0;
}
