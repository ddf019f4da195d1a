/*
 * test_cuda.c — the CUDA backend against the CPU engine (the reference):
 * each kernel path on random data, then whole-model logits GPU vs CPU on
 * the tiny presets (both MLA forms, batching across sequences, chunked
 * prefill, quantized weights). Tolerances are documented in docs/cuda.md.
 *
 * Without a usable CUDA device every GPU test is reported SKIPPED by
 * Criterion, with the reason printed as "SKIP cuda: ..."; the device
 * selection tests (explicit cuda must fail cleanly, auto must fall back)
 * run everywhere.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lode_cuda.h"
#include "lode_engine.h"
#include "lode_gen.h"
#include "unit_models.h"
#include "lode_quant.h"
#include "model_impl.h"

/* Relative tolerances (docs/cuda.md): max |gpu - cpu| / max |cpu|. */
#define TOL_F32 2e-3    /* LODE_CUDA_F32=1: f32 weights and GEMMs on the device */
#define TOL_BF16 1e-1   /* default: bf16 weights/activations in GEMMs, fp32 accumulation */
#define TOL_QUANT 5e-2  /* quantized GGUF, f32 mode: the CPU may use int8 activations */

static char g_why[512];

static bool have_gpu(void) {
    if (lode_cuda_device_count(g_why, sizeof g_why) > 0) return true;
    fprintf(stderr, "SKIP cuda: %s\n", g_why);
    return false;
}
#define NEED_GPU()                                                                                 \
    do {                                                                                           \
        if (!have_gpu()) cr_skip_test("SKIP cuda: %s", g_why);                                     \
    } while (0)

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float frand(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((g_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* ---- kernel code run on the host (no GPU needed) ------------------------ */
/* The device dequantization (kernels/cuda_kernels.cu load8, compiled for the
 * host as well) agrees bit for bit with the engine's to_f32 on random rows.
 * Runs wherever the binary has the CUDA backend compiled in. */
Test(cuda, dequant_block_indexing_matches_engine_on_host) {
    if (!lode_cuda_compiled()) cr_skip_test("SKIP cuda: this lode build has no CUDA backend (nvcc was not found at build time)");
    const lode_type types[] = {LODE_TYPE_F32, LODE_TYPE_BF16, LODE_TYPE_Q8_0, LODE_TYPE_Q4_K, LODE_TYPE_Q6_K};
    const int64_t cols = 1024;
    float *x = malloc(sizeof(float) * cols), *ref = malloc(sizeof(float) * cols), *got = malloc(sizeof(float) * cols);
    char *row = malloc(8 * cols);
    for (size_t t = 0; t < 5; t++) {
        const lode_type_traits *tr = lode_type_get(types[t]);
        for (int rep = 0; rep < 20; rep++) {
            for (int64_t i = 0; i < cols; i++) x[i] = frand() * (rep % 3 ? 1.f : 37.f);
            tr->from_f32(x, row, cols);
            tr->to_f32(row, ref, cols);
            lode_error err = {0};
            cr_assert_eq(lode_cuda_selftest_dequant(types[t], row, cols, got, &err), LODE_OK, "%s", err.text);
            for (int64_t i = 0; i < cols; i++)
                cr_assert(got[i] == ref[i] || fabsf(got[i] - ref[i]) <= 1e-6f * fabsf(ref[i]),
                          "%s rep %d element %lld: kernel %.9g engine %.9g", tr->name, rep, (long long)i, got[i], ref[i]);
        }
    }
    free(x), free(ref), free(got), free(row);
}

/* The long-prefill attention's cuBLAS call sequence (layouts, strides, the
 * shared k_pe GEMM, GQA batching, causal softmax, query blocks) run by a host
 * emulation of cuBLAS's column-major semantics against direct attention. */
Test(cuda, attention_gemm_layouts_on_host) {
    if (!lode_cuda_compiled()) cr_skip_test("SKIP cuda: this lode build has no CUDA backend (nvcc was not found at build time)");
    const int64_t blocks[3] = {0, 7, 1};
    for (int mla = 0; mla < 2; mla++)
        for (int b = 0; b < 3; b++) {
            double e = -1;
            lode_error err = {0};
            cr_assert_eq(lode_cuda_selftest_attention(mla, blocks[b], &e, &err), LODE_OK, "%s", err.text);
            cr_assert(e >= 0 && e < 1e-5, "mla=%d q_block=%lld: max |error| %g", mla, (long long)blocks[b], e);
        }
}

/* The MLA matrices the device receives (built from the split attn_k_b /
 * attn_v_b GGUF tensors, or from the legacy attn_kv_b) against the CPU
 * engine's products on the same tensors: no GPU needed. */
static char g_path[256];
static const int32_t TOK_PLAN[10] = {5, 77, 300, 12, 9, 401, 33, 250, 111, 64};
static void gen_ex(const char *preset, lode_type type, bool legacy);
Test(cuda, mla_weights_match_engine_on_host) {
    if (!lode_cuda_compiled()) cr_skip_test("SKIP cuda: this lode build has no CUDA backend (nvcc was not found at build time)");
    for (int legacy = 0; legacy < 2; legacy++)
        for (int pr = 0; pr < 2; pr++) {
            gen_ex(pr ? "tiny-v2" : "tiny-v2lite", pr ? LODE_TYPE_Q8_0 : LODE_TYPE_F32, legacy);
            lode_model_params mp = lode_model_default_params();
            mp.n_threads = 1;
            lode_model *m;
            lode_error err = {0};
            cr_assert_eq(lode_model_load(g_path, &mp, &m, &err), LODE_OK, "%s", err.text);
            double e = -1;
            cr_assert_eq(lode_cuda_selftest_mla_weights(m, &e, &err), LODE_OK, "%s", err.text);
            cr_assert(e >= 0 && e < 1e-4, "legacy=%d preset %d: max |error| %g", legacy, pr, e);
            lode_model_free(m);
            unlink(g_path);
        }
}

/* Planning of a device pass for mixed batches (host code): three sequences
 * interleaved, one long enough for the decompressed form, forked prefixes,
 * every other logit wanted. The plan is built as eval.c builds it. */
bool lode__kv_seq_reserve(lode_kv *kv, int32_t s, int64_t need);
int32_t lode__kv_append(lode_kv *kv, int32_t s);
Test(cuda, pass_planning_on_host) {
    if (!lode_cuda_compiled()) cr_skip_test("SKIP cuda: this lode build has no CUDA backend (nvcc was not found at build time)");
    gen_ex("tiny-v2lite", LODE_TYPE_F32, false);
    lode_model_params mp = lode_model_default_params();
    mp.n_threads = 1;
    lode_model *m;
    lode_error err = {0};
    cr_assert_eq(lode_model_load(g_path, &mp, &m, &err), LODE_OK, "%s", err.text);
    lode_kv *kv;
    cr_assert_eq(lode_kv_new(m, 512, &kv, &err), LODE_OK);
    int32_t s0 = lode_kv_seq_new(kv);
    float *lg = malloc(sizeof(float) * 512 * 10);
    lode_batch pre = {10, TOK_PLAN, NULL, s0, NULL};
    cr_assert_eq(lode_model_eval(m, kv, &pre, lg, &err), LODE_OK, "%s", err.text);
    int32_t s1 = lode_kv_seq_fork(kv, s0, 6), s2 = lode_kv_seq_new(kv);
    /* batch: 3 tokens of s0, 2 of s1, 70 of s2 (decompressed under AUTO), interleaved */
    enum { N = 75 };
    int32_t seq[N];
    int64_t pos[N];
    int32_t cell[N];
    bool want[N];
    int k0 = 0, k1 = 0;
    for (int i = 0; i < N; i++) {
        seq[i] = i % 9 == 0 && k0 < 3 ? (k0++, s0) : i % 11 == 1 && k1 < 2 ? (k1++, s1) : s2;
        want[i] = i % 2 == 0;
    }
    for (int i = 0; i < N; i++) {
        cr_assert(lode__kv_seq_reserve(kv, seq[i], lode_kv_seq_len(kv, seq[i]) + 1));
        pos[i] = lode_kv_seq_len(kv, seq[i]);
        cell[i] = lode__kv_append(kv, seq[i]);
    }
    lode_eval_plan p = {0};
    p.n = N;
    p.seq = seq;
    p.pos = pos;
    p.cell = cell;
    for (int mode = 0; mode < 3; mode++) {
        lode_model_set_mla_mode(m, (lode_mla_mode)mode);
        lode_error e2 = {0};
        cr_assert_eq(lode_cuda_selftest_plan(m, kv, &p, want, &e2), LODE_OK, "mla mode %d: %s", mode, e2.text);
        cr_assert_eq(lode_cuda_selftest_plan(m, kv, &p, NULL, &e2), LODE_OK, "mla mode %d, all logits: %s", mode, e2.text);
    }
    lode_kv_free(kv);
    free(lg);
    lode_model_free(m);
    unlink(g_path);
}

/* ---- kernels ---------------------------------------------------------- */
static void check_matmul(lode_type t, int64_t rows, int64_t cols, int64_t n, bool f32) {
    const lode_type_traits *tr = lode_type_get(t);
    size_t rb = lode_row_size(t, cols);
    float *wf = malloc(sizeof(float) * (size_t)(rows * cols));
    char *W = malloc(rb * (size_t)rows);
    float *X = malloc(sizeof(float) * (size_t)(n * cols));
    float *Y = malloc(sizeof(float) * (size_t)(n * rows));
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = frand();
    for (int64_t r = 0; r < rows; r++) tr->from_f32(wf + r * cols, W + (size_t)r * rb, cols);
    for (int64_t i = 0; i < n * cols; i++) X[i] = frand();
    lode_error err = {0};
    cr_assert_eq(lode_cuda_test_matmul(t, W, rows, cols, X, n, Y, f32, &err), LODE_OK, "%s", err.text);
    /* Float types become bf16 on the device unless f32; the GEMM path also
     * rounds X to bf16 then. Quantized types are dequantized exactly on the
     * matvec path and, on the GEMM path, to bf16 (f32 in f32 mode). */
    const bool kept = t == LODE_TYPE_Q8_0 || t == LODE_TYPE_Q4_K || t == LODE_TYPE_Q6_K;
    const bool lossy = !f32 && (!kept || n > 8);
    const double tol = lossy ? 1.6e-2 : 2e-5;
    float *row = malloc(sizeof(float) * (size_t)cols);
    for (int64_t r = 0; r < rows; r++) {
        tr->to_f32(W + (size_t)r * rb, row, cols);
        for (int64_t k = 0; k < n; k++) {
            double ref = 0, mag = 0;
            for (int64_t c = 0; c < cols; c++) {
                ref += (double)row[c] * X[k * cols + c];
                mag += fabs((double)row[c] * X[k * cols + c]);
            }
            double d = fabs(Y[k * rows + r] - ref);
            cr_assert(d <= tol * mag + 1e-6, "%s %lldx%lld n=%lld f32=%d row %lld tok %lld: gpu %g ref %g (|err| %g > %g)",
                      tr->name, (long long)rows, (long long)cols, (long long)n, f32, (long long)r, (long long)k,
                      Y[k * rows + r], ref, d, tol * mag);
        }
    }
    free(row);
    free(wf);
    free(W);
    free(X);
    free(Y);
}

Test(cuda, matmul_every_type_both_paths) {
    NEED_GPU();
    const lode_type types[] = {LODE_TYPE_F32, LODE_TYPE_F16, LODE_TYPE_BF16, LODE_TYPE_Q8_0,
                               LODE_TYPE_Q4_K, LODE_TYPE_Q6_K, LODE_TYPE_Q4_0, LODE_TYPE_Q5_K};
    const int64_t ns[] = {1, 3, 8, 9, 37};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++)
            for (int f = 0; f < 2; f++) check_matmul(types[t], 67, 512, ns[k], f);
    /* float rows that are not a multiple of 8 (padded on the device) */
    check_matmul(LODE_TYPE_F32, 13, 100, 2, true);
    check_matmul(LODE_TYPE_F32, 13, 100, 20, true);
    check_matmul(LODE_TYPE_BF16, 13, 100, 2, false);
}

Test(cuda, rmsnorm_matches_cpu) {
    NEED_GPU();
    const int64_t n = 5, H = 1000;
    float *x = malloc(sizeof(float) * n * H), *w = malloc(sizeof(float) * H), *y = malloc(sizeof(float) * n * H),
          *r = malloc(sizeof(float) * H);
    for (int64_t i = 0; i < n * H; i++) x[i] = frand() * 3;
    for (int64_t i = 0; i < H; i++) w[i] = frand();
    lode_error err = {0};
    cr_assert_eq(lode_cuda_test_rmsnorm(x, w, n, H, 1e-6f, y, &err), LODE_OK, "%s", err.text);
    for (int64_t t = 0; t < n; t++) {
        lode__rmsnorm(r, x + t * H, w, H, 1e-6f);
        for (int64_t i = 0; i < H; i++)
            cr_assert_float_eq(y[t * H + i], r[i], 1e-5 * (fabsf(r[i]) + 1e-3f), "row %lld col %lld", (long long)t,
                               (long long)i);
    }
    free(x), free(w), free(y), free(r);
}

Test(cuda, rope_yarn_positions_match_cpu) {
    NEED_GPU();
    const int64_t np = 32, n = 6;
    const int64_t pos[6] = {0, 1, 17, 4095, 65536, 163839};
    float theta[32];
    for (int i = 0; i < np; i++) theta[i] = (float)(1.0 / pow(10000.0, 2.0 * i / 64.0) / (i > 20 ? 40.0 : 1.0));
    for (int neox = 0; neox < 2; neox++) {
        float x[6 * 64], ref[6 * 64];
        for (int i = 0; i < 6 * 64; i++) x[i] = ref[i] = frand();
        lode_error err = {0};
        cr_assert_eq(lode_cuda_test_rope(x, n, np, theta, pos, neox, 1.1f, &err), LODE_OK, "%s", err.text);
        for (int64_t t = 0; t < n; t++) lode__rope(ref + t * 64, np, theta, (double)pos[t], neox, 1.1f);
        for (int i = 0; i < 6 * 64; i++) cr_assert_float_eq(x[i], ref[i], 1e-5, "neox=%d elem %d", neox, i);
    }
}

/* ---- whole model: GPU vs CPU ------------------------------------------- */
static void gen(const char *preset, lode_type type) { gen_ex(preset, type, false); }

static void gen_ex(const char *preset, lode_type type, bool legacy) {
    lode_test_gen(g_path, sizeof g_path, "cuda", preset, type, legacy, "deepseek-llm");
}

static lode_model *load(lode_device dev, bool f32) {
    if (f32) setenv("LODE_CUDA_F32", "1", 1);
    else unsetenv("LODE_CUDA_F32");
    lode_model_params mp = lode_model_default_params();
    mp.n_threads = 2;
    mp.device = dev;
    lode_model *m;
    lode_error err = {0};
    cr_assert_eq(lode_model_load(g_path, &mp, &m, &err), LODE_OK, "%s", err.text);
    unsetenv("LODE_CUDA_F32");
    return m;
}

static double rel_err(const float *a, const float *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(isfinite(a[i]), "non-finite GPU logit at %zu", i);
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return d / (s > 0 ? s : 1);
}

static const int32_t TOK[100] = {5,   77,  300, 12,  9,   401, 33,  250, 111, 64,  2,   499, 7,   8,   90,  91,  92,
                                 93,  94,  95,  96,  97,  98,  99,  100, 101, 102, 103, 104, 105, 106, 107, 108, 109,
                                 110, 112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127,
                                 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143, 144,
                                 145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 155, 156, 157, 158, 159, 160, 161,
                                 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 173, 174, 175, 176};

/* Prompt of n_prompt tokens (all logits), then 3 single-token decode steps,
 * then a mixed batch (one new token on the first sequence + a 4-token second
 * sequence forked from its first 5 positions): GPU logits vs CPU logits. */
static void compare_model(lode_model *cpu, lode_model *gpu, int64_t n_prompt, double tol, const char *what) {
    const int64_t V = lode_model_config(cpu)->n_vocab;
    lode_kv *kc, *kg;
    lode_error err = {0};
    cr_assert_eq(lode_kv_new(cpu, 256, &kc, &err), LODE_OK, "%s", err.text);
    cr_assert_eq(lode_kv_new(gpu, 256, &kg, &err), LODE_OK, "%s", err.text);
    int32_t sc = lode_kv_seq_new(kc), sg = lode_kv_seq_new(kg);
    float *lc = malloc(sizeof(float) * (size_t)(V * n_prompt)), *lg = malloc(sizeof(float) * (size_t)(V * n_prompt));
    lode_batch b = {n_prompt, TOK, NULL, sc, NULL};
    cr_assert_eq(lode_model_eval(cpu, kc, &b, lc, &err), LODE_OK, "%s", err.text);
    b.seq0 = sg;
    cr_assert_eq(lode_model_eval(gpu, kg, &b, lg, &err), LODE_OK, "%s: %s", what, err.text);
    double e = rel_err(lg, lc, (size_t)(V * n_prompt));
    cr_assert(e <= tol, "%s: prompt of %lld: relative logit error %g > %g", what, (long long)n_prompt, e, tol);
    for (int step = 0; step < 3; step++) {
        lode_batch d = {1, TOK + 40 + step, NULL, sc, NULL};
        cr_assert_eq(lode_model_eval(cpu, kc, &d, lc, &err), LODE_OK, "%s", err.text);
        d.seq0 = sg;
        cr_assert_eq(lode_model_eval(gpu, kg, &d, lg, &err), LODE_OK, "%s: %s", what, err.text);
        e = rel_err(lg, lc, (size_t)V);
        cr_assert(e <= tol, "%s: decode step %d: relative logit error %g > %g", what, step, e, tol);
    }
    int32_t fc = lode_kv_seq_fork(kc, sc, 5), fg = lode_kv_seq_fork(kg, sg, 5);
    const int32_t toks[5] = {3, 4, 5, 6, 7};
    int32_t seqc[5] = {sc, fc, fc, fc, fc}, seqg[5] = {sg, fg, fg, fg, fg};
    lode_batch mb = {5, toks, seqc, 0, NULL};
    cr_assert_eq(lode_model_eval(cpu, kc, &mb, lc, &err), LODE_OK, "%s", err.text);
    mb.seq = seqg;
    cr_assert_eq(lode_model_eval(gpu, kg, &mb, lg, &err), LODE_OK, "%s: %s", what, err.text);
    e = rel_err(lg, lc, (size_t)(V * 5));
    cr_assert(e <= tol, "%s: mixed batch: relative logit error %g > %g", what, e, tol);
    lode_kv_free(kc);
    lode_kv_free(kg);
    free(lc);
    free(lg);
}

static void whole_model(const char *preset, lode_type type, bool f32, double tol) {
    gen(preset, type);
    lode_model *cpu = load(LODE_DEVICE_CPU, false), *gpu = load(LODE_DEVICE_CUDA, f32);
    cr_assert(!strncmp(lode_model_device(gpu), "cuda", 4), "device: %s", lode_model_device(gpu));
    char what[160];
    const bool ds = lode_model_config(cpu)->arch == LODE_ARCH_DEEPSEEK2;
    const lode_mla_mode modes[3] = {LODE_MLA_AUTO, LODE_MLA_ABSORBED, LODE_MLA_DECOMPRESSED};
    for (int mi = 0; mi < (ds ? 3 : 1); mi++) {
        lode_model_set_mla_mode(cpu, modes[mi]);
        lode_model_set_mla_mode(gpu, modes[mi]);
        snprintf(what, sizeof what, "%s %s f32=%d mla=%d", preset, lode_type_name(type), f32, mi);
        compare_model(cpu, gpu, 12, tol, what);
    }
    /* >= 64 tokens: AUTO decompresses; chunked device passes of 32 tokens. */
    lode_model_set_mla_mode(cpu, LODE_MLA_AUTO);
    lode_model_set_mla_mode(gpu, LODE_MLA_AUTO);
    snprintf(what, sizeof what, "%s %s f32=%d long prompt", preset, lode_type_name(type), f32);
    compare_model(cpu, gpu, 90, tol, what);
    setenv("LODE_CUDA_CHUNK", "32", 1);
    snprintf(what, sizeof what, "%s %s f32=%d chunked", preset, lode_type_name(type), f32);
    compare_model(cpu, gpu, 90, tol, what);
    unsetenv("LODE_CUDA_CHUNK");
    /* prefill attention through cuBLAS (S = QKᵀ, softmax, PV) instead of k_flash */
    setenv("LODE_CUDA_ATTN", "gemm", 1);
    snprintf(what, sizeof what, "%s %s f32=%d gemm attention", preset, lode_type_name(type), f32);
    compare_model(cpu, gpu, 90, tol, what);
    /* decompressed passes that start past position 0 (queries != keys) */
    lode_model_set_mla_mode(cpu, LODE_MLA_DECOMPRESSED);
    lode_model_set_mla_mode(gpu, LODE_MLA_DECOMPRESSED);
    setenv("LODE_CUDA_CHUNK", "40", 1);
    snprintf(what, sizeof what, "%s %s f32=%d gemm attention, 40-token passes", preset, lode_type_name(type), f32);
    compare_model(cpu, gpu, 90, tol, what);
    setenv("LODE_CUDA_ATTN", "flash", 1);
    snprintf(what, sizeof what, "%s %s f32=%d flash attention, 40-token passes", preset, lode_type_name(type), f32);
    compare_model(cpu, gpu, 90, tol, what);
    unsetenv("LODE_CUDA_CHUNK");
    unsetenv("LODE_CUDA_ATTN");
    lode_model_free(cpu);
    lode_model_free(gpu);
    unlink(g_path);
}

Test(cuda, logits_f32_weights_strict, .timeout = 600) {
    NEED_GPU();
    const char *presets[] = {"tiny-v2lite", "tiny-v2", "tiny-v3", "tiny-llama", "tiny-llama-gqa"};
    for (size_t i = 0; i < 5; i++) whole_model(presets[i], LODE_TYPE_F32, true, TOL_F32);
}

Test(cuda, logits_bf16_device_weights, .timeout = 600) {
    NEED_GPU();
    const char *presets[] = {"tiny-v2lite", "tiny-v3", "tiny-llama-gqa"};
    for (size_t i = 0; i < 3; i++) whole_model(presets[i], LODE_TYPE_BF16, false, TOL_BF16);
}

Test(cuda, logits_quantized_weights, .timeout = 600) {
    NEED_GPU();
    /* Quantized blocks are the same bytes on both sides; the device
     * dequantizes exactly on the matvec path and to f32 (f32 mode) for GEMMs,
     * while the CPU engine may quantize activations to int8 for these types
     * (engine/quant_int8.c, llama.cpp's CPU algorithm): hence TOL_QUANT. */
    const lode_type types[] = {LODE_TYPE_Q8_0, LODE_TYPE_Q4_K, LODE_TYPE_Q6_K};
    for (size_t i = 0; i < 3; i++) whole_model("tiny-v2lite", types[i], true, TOL_QUANT);
    whole_model("tiny-llama", LODE_TYPE_Q4_K, false, TOL_BF16);
}

/* Decode through CUDA graphs (captured on the second pass of a shape,
 * replayed after) against direct passes (LODE_CUDA_GRAPHS=0), and both
 * against the CPU: batch 1 and a batch of 3 sequences, 10 steps each. */
Test(cuda, decode_graphs_match_direct_passes, .timeout = 300) {
    NEED_GPU();
    gen("tiny-v3", LODE_TYPE_F32);
    lode_model *cpu = load(LODE_DEVICE_CPU, false), *gd = load(LODE_DEVICE_CUDA, true), *gg = load(LODE_DEVICE_CUDA, true);
    const int64_t V = lode_model_config(cpu)->n_vocab;
    lode_model *ms[3] = {cpu, gd, gg};
    lode_kv *kv[3];
    int32_t sq[3][3];
    lode_error err = {0};
    float *lg[3];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(lode_kv_new(ms[i], 128, &kv[i], &err), LODE_OK, "%s", err.text);
        lg[i] = malloc(sizeof(float) * (size_t)(V * 12));
        for (int k = 0; k < 3; k++) sq[i][k] = lode_kv_seq_new(kv[i]);
        int32_t seqs[12];
        for (int t = 0; t < 12; t++) seqs[t] = sq[i][t / 4];
        lode_batch b = {12, TOK, seqs, 0, NULL};
        if (i == 1) setenv("LODE_CUDA_GRAPHS", "0", 1);
        cr_assert_eq(lode_model_eval(ms[i], kv[i], &b, lg[i], &err), LODE_OK, "%s", err.text);
        unsetenv("LODE_CUDA_GRAPHS");
    }
    for (int step = 0; step < 20; step++) {
        const int64_t nb = step < 10 ? 1 : 3;
        for (int i = 0; i < 3; i++) {
            int32_t tk[3] = {TOK[step], TOK[step + 1], TOK[step + 2]}, seqs[3] = {sq[i][0], sq[i][1], sq[i][2]};
            lode_batch b = {nb, tk, seqs, 0, NULL};
            if (i == 1) setenv("LODE_CUDA_GRAPHS", "0", 1);
            cr_assert_eq(lode_model_eval(ms[i], kv[i], &b, lg[i], &err), LODE_OK, "model %d step %d: %s", i, step, err.text);
            unsetenv("LODE_CUDA_GRAPHS");
        }
        double e1 = rel_err(lg[2], lg[1], (size_t)(V * nb)), e2 = rel_err(lg[2], lg[0], (size_t)(V * nb));
        cr_assert(e1 <= 1e-4, "step %d: graph vs direct relative error %g", step, e1);
        cr_assert(e2 <= TOL_F32, "step %d: graph vs CPU relative error %g", step, e2);
    }
    for (int i = 0; i < 3; i++) {
        lode_kv_free(kv[i]);
        free(lg[i]);
        lode_model_free(ms[i]);
    }
    unlink(g_path);
}

/* ---- device selection (runs everywhere) --------------------------------- */
Test(cuda, device_selection_explicit_and_auto) {
    gen("tiny-llama", LODE_TYPE_F32);
    char why[512];
    const bool gpu = lode_cuda_device_count(why, sizeof why) > 0;
    lode_model_params mp = lode_model_default_params();
    cr_assert_eq(mp.device, LODE_DEVICE_CPU, "the library default stays the CPU");
    mp.n_threads = 1;
    mp.device = LODE_DEVICE_CUDA;
    lode_model *m = NULL;
    lode_error err = {0};
    lode_status s = lode_model_load(g_path, &mp, &m, &err);
    if (gpu) {
        cr_assert_eq(s, LODE_OK, "%s", err.text);
        cr_assert(!strncmp(lode_model_device(m), "cuda", 4));
        lode_model_free(m);
    } else {
        cr_assert_neq(s, LODE_OK, "explicit --device cuda must fail without a usable GPU");
        cr_assert_null(m);
        cr_assert(strstr(err.text, "--device cuda") != NULL, "message: %s", err.text);
        cr_assert(strstr(err.text, why) != NULL, "message '%s' lacks the reason '%s'", err.text, why);
    }
    mp.device = LODE_DEVICE_AUTO;
    lode_error e2 = {0};
    cr_assert_eq(lode_model_load(g_path, &mp, &m, &e2), LODE_OK, "%s", e2.text);
    cr_assert_str_eq(lode_model_device(m), gpu ? lode_model_device(m) : "cpu");
    if (!gpu) {
        /* the CPU fallback evaluates normally */
        lode_kv *kv;
        cr_assert_eq(lode_kv_new(m, 16, &kv, &e2), LODE_OK);
        float lg[512];
        lode_batch b = {1, TOK, NULL, lode_kv_seq_new(kv), NULL};
        cr_assert_eq(lode_model_eval(m, kv, &b, lg, &e2), LODE_OK, "%s", e2.text);
        lode_kv_free(kv);
    }
    lode_model_free(m);
    unlink(g_path);
}
