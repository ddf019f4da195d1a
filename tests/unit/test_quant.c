/*
 * test_quant.c — element types: f16/bf16 conversion, GGML block layouts,
 * reference quantizer accuracy, and the matvec/matmul kernels at every
 * instruction-set level.
 *
 * Oracles are independent of engine/quant.c: the known-value dequant tests
 * decode hand-built blocks with the layout rules written out here from
 * GGML's spec (one element at a time, by index arithmetic), the f16 tests
 * compare with the F16C instruction when the CPU has it, and the kernels are
 * checked against lode_vec_dot_f32_ref (double accumulation). When the
 * llama.cpp build vendored by the npm test dependencies is present
 * (libggml-base.so, or $LODE_GGML_BASE), the dequantizers, f16/bf16
 * conversions and the Q8_0/Q4_0 quantizers are also compared bit for bit
 * with GGML's own functions; that test skips when the library is absent.
 *
 * Named tolerances: relative RMSE of from_f32 then to_f32 on N(0,1) data,
 * set a little above the measured values (printed with --verbose):
 *   q8_0 0.0054, q4_0 0.0863 (GGML's max/-8 rule), q4_k 0.0716, q5_k 0.0360,
 *   q6_k 0.0172, f16 0.00021, bf16 0.00167. For Gaussian data these sit close
 *   to the uniform-quantizer floor (step / sqrt(12) over each sub-block's
 *   range), so tighter bounds would need a different format, not a better
 *   search.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lode_base.h"
#include "lode_quant.h"
#include "quant_blocks.h"

#define TOL_Q8_0 0.006
#define TOL_Q4_0 0.09
#define TOL_Q4_K 0.075
#define TOL_Q5_K 0.038
#define TOL_Q6_K 0.018
#define TOL_F16 0.0005
#define TOL_BF16 0.004
/* Kernel vs reference: |y - ref| <= TOL_DOT * sum|w_i * x_i| (+ tiny). */
#define TOL_DOT 1e-5

// ---- helpers ------------------------------------------------------------

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rng_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static float rng_uniform(void) { return ((float)(rng_u32() & 0xFFFFFF) + 0.5f) / 16777216.0f; }

static float rng_gauss(void) {
    const float u = rng_uniform(), v = rng_uniform();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static void fill_bytes(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rng_u32();
}

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Pack 6-bit scales/mins exactly as GGML's get_scale_min_k4 reads them. */
static void spec_pack_scales(const uint8_t sc[8], const uint8_t m[8], uint8_t out[12]) {
    memset(out, 0, 12);
    for (int j = 0; j < 4; j++) {
        out[j] = sc[j] | (uint8_t)((sc[j + 4] >> 4) << 6);
        out[j + 4] = m[j] | (uint8_t)((m[j + 4] >> 4) << 6);
        out[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
    }
}

static const uint8_t k_sc[8] = {1, 2, 3, 4, 17, 33, 50, 63};
static const uint8_t k_m[8] = {0, 5, 10, 63, 20, 40, 1, 48};

// ---- f16 / bf16 ------------------------------------------------------------

Test(quant, f16_known_values) {
    struct { float f; uint16_t h; } cases[] = {
        {0.0f, 0x0000},        {-0.0f, 0x8000},       {1.0f, 0x3C00},       {-2.0f, 0xC000},
        {65504.0f, 0x7BFF},    {65519.99f, 0x7BFF},   {65520.0f, 0x7C00},   {1e9f, 0x7C00},
        {0x1p-14f, 0x0400},    {0x1p-24f, 0x0001},    {0x1p-25f, 0x0000},   {0x1.8p-24f, 0x0002},
        {0x1.4p-24f, 0x0001},  {0x1p-26f, 0x0000},    {1.0f + 0x1p-11f, 0x3C00}, {1.0f + 0x3p-11f, 0x3C02},
        {INFINITY, 0x7C00},    {-INFINITY, 0xFC00},   {0.333251953125f, 0x3555}, {-0x1.ffcp-15f, 0x8400}, {0x1.ff8p-15f, 0x03FF},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_eq(lode_f32_to_f16(cases[i].f), cases[i].h, "f32_to_f16(%a) = 0x%04x, want 0x%04x", cases[i].f,
                     lode_f32_to_f16(cases[i].f), cases[i].h);
    cr_expect(isnan(lode_f16_to_f32(lode_f32_to_f16(NAN))));
    cr_expect_eq(lode_f16_to_f32(0x0001), 0x1p-24f);
    cr_expect_eq(lode_f16_to_f32(0x03FF), 0x3FFp-24f);
    cr_expect_eq(lode_f16_to_f32(0x7BFF), 65504.0f);
    cr_expect_eq(lode_f16_to_f32(0xFC00), -INFINITY);
    cr_expect(signbit(lode_f16_to_f32(0x8000)));
    cr_expect(isnan(lode_f16_to_f32(0x7C01)) && isnan(lode_f16_to_f32(0xFE00)));
}

Test(quant, f16_all_values_round_trip) {
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = lode_f16_to_f32((uint16_t)h);
        if (isnan(f)) {
            cr_assert((h & 0x7C00) == 0x7C00 && (h & 0x3FF));
            cr_assert(isnan(lode_f16_to_f32(lode_f32_to_f16(f))));
            continue;
        }
        cr_assert_eq(lode_f32_to_f16(f), h, "0x%04x -> %a -> 0x%04x", h, f, lode_f32_to_f16(f));
    }
}

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }

Test(quant, f16_matches_f16c) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_F16C)) cr_skip_test("no F16C");
    for (int i = 0; i < 2000000; i++) {
        /* Random bit patterns concentrated on the f16 range (exponent
         * 100..150 covers subnormals, normals, overflow), plus any bits. */
        uint32_t u = rng_u32();
        if (i & 1) u = (u & 0x807FFFFFu) | ((100u + rng_u32() % 51) << 23);
        const float f = bitsf(u);
        if (isnan(f)) continue;
        cr_assert_eq(lode_f32_to_f16(f), hw_f32_to_f16(f), "%a (0x%08x): 0x%04x vs F16C 0x%04x", f, u,
                     lode_f32_to_f16(f), hw_f32_to_f16(f));
    }
    for (uint32_t h = 0; h < 65536; h++) {
        const float a = lode_f16_to_f32((uint16_t)h), b = hw_f16_to_f32((uint16_t)h);
        cr_assert(fbits(a) == fbits(b) || (isnan(a) && isnan(b)), "0x%04x", h);
    }
}
#endif

Test(quant, bf16_known_values) {
    cr_expect_eq(lode_f32_to_bf16(1.0f), 0x3F80);
    cr_expect_eq(lode_f32_to_bf16(-1.0f), 0xBF80);
    cr_expect_eq(lode_f32_to_bf16(1.0f + 0x1p-8f), 0x3F80);          /* tie to even (down) */
    cr_expect_eq(lode_f32_to_bf16(1.0f + 0x3p-8f), 0x3F82);          /* tie to even (up) */
    cr_expect_eq(lode_f32_to_bf16(1.0f + 0x1.2p-8f), 0x3F81);        /* above half */
    cr_expect_eq(lode_f32_to_bf16(bitsf(0x7F7FFFFFu)), 0x7F80);     /* max float rounds to inf */
    cr_expect_eq(lode_f32_to_bf16(INFINITY), 0x7F80);
    cr_expect_eq(lode_f32_to_bf16(-INFINITY), 0xFF80);
    cr_expect_eq(lode_f32_to_bf16(bitsf(0x00018000u)), 0x0002);     /* subnormal, tie to even */
    cr_expect_eq(lode_f32_to_bf16(bitsf(0x80010000u)), 0x8001);     /* negative subnormal kept */
    const uint16_t n1 = lode_f32_to_bf16(bitsf(0x7F800001u));       /* NaN with low payload only */
    cr_expect((n1 & 0x7F80) == 0x7F80 && (n1 & 0x7F), "NaN must stay NaN: 0x%04x", n1);
    cr_expect(signbit(lode_bf16_to_f32(lode_f32_to_bf16(-NAN))));
    cr_expect_eq(lode_bf16_to_f32(0x4049), 3.140625f);
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = lode_bf16_to_f32((uint16_t)h);
        if (!isnan(f)) cr_assert_eq(lode_f32_to_bf16(f), h);
    }
}

// ---- known-value dequantization ------------------------------------------------

Test(quant, q8_0_dequant_known) {
    lode_block_q8_0 b[2];
    b[0].d = 0x3800; /* 0.5 */
    b[1].d = 0xC000; /* -2 */
    for (int j = 0; j < 32; j++) b[0].qs[j] = (int8_t)(j - 16), b[1].qs[j] = (int8_t)(j == 0 ? -128 : 127 - j);
    float y[64];
    lode_type_get(LODE_TYPE_Q8_0)->to_f32(b, y, 64);
    for (int j = 0; j < 32; j++) cr_expect_eq(y[j], 0.5f * (float)(j - 16));
    cr_expect_eq(y[32], 256.0f);
    cr_expect_eq(y[33], -252.0f);
}

Test(quant, q4_0_dequant_known) {
    lode_block_q4_0 b;
    b.d = 0x4000; /* 2 */
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    lode_type_get(LODE_TYPE_Q4_0)->to_f32(&b, y, 32);
    for (int j = 0; j < 16; j++) {
        cr_expect_eq(y[j], 2.0f * (float)(j - 8), "low nibble of byte %d is element %d", j, j);
        cr_expect_eq(y[j + 16], 2.0f * (float)(7 - j), "high nibble of byte %d is element %d", j, j + 16);
    }
    cr_expect_eq(y[0], -16.0f);
    cr_expect_eq(y[16], 14.0f);
}

Test(quant, q4_k_dequant_known) {
    lode_block_q4_k b;
    b.d = 0x3C00;    /* 1.0 */
    b.dmin = 0x3800; /* 0.5 */
    spec_pack_scales(k_sc, k_m, b.scales);
    fill_bytes(b.qs, sizeof b.qs);
    float y[256];
    lode_type_get(LODE_TYPE_Q4_K)->to_f32(&b, y, 256);
    for (int e = 0; e < 256; e++) {
        const int j = e / 32, c = e / 64, l = e % 32;
        const uint8_t byte = b.qs[32 * c + l];
        const int q = (e % 64) < 32 ? (byte & 0xF) : (byte >> 4);
        const float want = (float)k_sc[j] * (float)q - 0.5f * (float)k_m[j];
        cr_assert_eq(y[e], want, "element %d: %g want %g", e, y[e], want);
    }
    /* Two literal anchors: element 37 = sub-block 1 (sc 2, m 5), high
     * nibble of qs[5]; element 200 = sub-block 6 (sc 50, m 1), low nibble
     * of qs[104]. */
    cr_expect_eq(y[37], 2.0f * (float)(b.qs[5] >> 4) - 2.5f);
    cr_expect_eq(y[200], 50.0f * (float)(b.qs[104] & 0xF) - 0.5f);
    /* Byte-level check of the packing rule for sub-block 5 (sc 33 =
     * 0b100001, m 40 = 0b101000): low nibbles in scales[9], top bits in the
     * top of scales[1] (sc) and scales[5] (m). */
    cr_expect_eq(b.scales[9], 0x81);
    cr_expect_eq(b.scales[1] >> 6, 2);
    cr_expect_eq(b.scales[5] >> 6, 2);
}

Test(quant, q5_k_dequant_known) {
    lode_block_q5_k b;
    b.d = 0x3400;    /* 0.25 */
    b.dmin = 0x4000; /* 2 */
    spec_pack_scales(k_sc, k_m, b.scales);
    fill_bytes(b.qs, sizeof b.qs);
    fill_bytes(b.qh, sizeof b.qh);
    float y[256];
    lode_type_get(LODE_TYPE_Q5_K)->to_f32(&b, y, 256);
    for (int e = 0; e < 256; e++) {
        const int j = e / 32, c = e / 64, l = e % 32, hi = (e % 64) >= 32;
        const uint8_t byte = b.qs[32 * c + l];
        const int q = (hi ? byte >> 4 : byte & 0xF) + (((b.qh[l] >> (2 * c + hi)) & 1) << 4);
        const float want = 0.25f * (float)k_sc[j] * (float)q - 2.0f * (float)k_m[j];
        cr_assert_eq(y[e], want, "element %d: %g want %g", e, y[e], want);
    }
}

Test(quant, q6_k_dequant_known) {
    lode_block_q6_k b;
    b.d = 0x3000; /* 0.125 */
    fill_bytes(b.ql, sizeof b.ql);
    fill_bytes(b.qh, sizeof b.qh);
    for (int j = 0; j < 16; j++) b.scales[j] = (int8_t)(j * 17 - 128);
    float y[256];
    lode_type_get(LODE_TYPE_Q6_K)->to_f32(&b, y, 256);
    for (int e = 0; e < 256; e++) {
        const int h = e / 128, k = (e % 128) / 32, l = e % 32;
        const uint8_t lb = b.ql[64 * h + l + (k & 1) * 32];
        const int lo = k >= 2 ? lb >> 4 : lb & 0xF;
        const int hb = (b.qh[32 * h + l] >> (2 * k)) & 3;
        const int q = (lo | (hb << 4)) - 32;
        const float want = 0.125f * (float)b.scales[e / 16] * (float)q;
        cr_assert_eq(y[e], want, "element %d: %g want %g", e, y[e], want);
    }
}

Test(quant, float_types_dequant_known) {
    const uint16_t h[4] = {0x3C00, 0xC400, 0x0001, 0x7C00};
    const uint16_t bh[4] = {0x3F80, 0xC080, 0x0001, 0xFF80};
    float y[4];
    lode_type_get(LODE_TYPE_F16)->to_f32(h, y, 4);
    cr_expect(y[0] == 1.0f && y[1] == -4.0f && y[2] == 0x1p-24f && y[3] == INFINITY);
    lode_type_get(LODE_TYPE_BF16)->to_f32(bh, y, 4);
    cr_expect(y[0] == 1.0f && y[1] == -4.0f && y[2] == bitsf(0x00010000u) && y[3] == -INFINITY);
}

// ---- traits and names -----------------------------------------------------------

Test(quant, traits_and_names) {
    const struct { lode_type t; const char *name; int64_t bs; size_t ts; } k[] = {
        {LODE_TYPE_F32, "f32", 1, 4},        {LODE_TYPE_F16, "f16", 1, 2},
        {LODE_TYPE_BF16, "bf16", 1, 2},      {LODE_TYPE_Q8_0, "q8_0", 32, 34},
        {LODE_TYPE_Q4_0, "q4_0", 32, 18},    {LODE_TYPE_Q4_K, "q4_k", 256, 144},
        {LODE_TYPE_Q5_K, "q5_k", 256, 176},  {LODE_TYPE_Q6_K, "q6_k", 256, 210},
        {LODE_TYPE_Q4_1, "q4_1", 32, 20},    {LODE_TYPE_Q5_0, "q5_0", 32, 22},
        {LODE_TYPE_Q5_1, "q5_1", 32, 24},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        const lode_type_traits *tr = lode_type_get(k[i].t);
        cr_assert_not_null(tr);
        cr_expect_str_eq(tr->name, k[i].name);
        cr_expect_str_eq(lode_type_name(k[i].t), k[i].name);
        cr_expect_eq(tr->block_size, k[i].bs);
        cr_expect_eq(tr->type_size, k[i].ts);
        cr_expect_eq(lode_type_from_name(k[i].name), (int)k[i].t);
        cr_expect_eq(lode_row_size(k[i].t, 4096), (size_t)(4096 / k[i].bs) * k[i].ts);
    }
    cr_expect_eq(lode_type_from_name("Q4_K"), LODE_TYPE_Q4_K);
    cr_expect_eq(lode_type_from_name("nope"), -1);
    cr_expect_null(lode_type_get(LODE_TYPE_Q2_K));
    cr_expect_null(lode_type_get((lode_type)77));
    cr_expect_str_eq(lode_type_name(LODE_TYPE_Q5_1), "q5_1");
    cr_expect_str_eq(lode_type_name((lode_type)77), "unknown(77)");
    cr_expect_eq(lode_row_size(LODE_TYPE_Q4_K, 100), 0);
    cr_expect_eq(lode_row_size(LODE_TYPE_Q2_K, 256), 0);
    cr_expect_eq(lode_row_size(LODE_TYPE_Q5_0, 48), 0);
}

// ---- reference quantizers ---------------------------------------------------------

static double round_trip_rmse(lode_type t, const float *x, int64_t n, float *y) {
    const lode_type_traits *tr = lode_type_get(t);
    void *q = malloc(lode_row_size(t, n));
    tr->from_f32(x, q, n);
    tr->to_f32(q, y, n);
    free(q);
    double se = 0, sx = 0;
    for (int64_t i = 0; i < n; i++) {
        cr_assert(isfinite(y[i]), "non-finite output at %ld", (long)i);
        se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
        sx += (double)x[i] * x[i];
    }
    return sqrt(se / sx);
}

Test(quant, round_trip_error_bounds) {
    const struct { lode_type t; double tol; } k[] = {
        {LODE_TYPE_Q8_0, TOL_Q8_0}, {LODE_TYPE_Q4_0, TOL_Q4_0}, {LODE_TYPE_Q4_K, TOL_Q4_K},
        {LODE_TYPE_Q5_K, TOL_Q5_K}, {LODE_TYPE_Q6_K, TOL_Q6_K}, {LODE_TYPE_F16, TOL_F16},
        {LODE_TYPE_BF16, TOL_BF16}, {LODE_TYPE_F32, 0.0},
    };
    const int64_t n = 256 * 256;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = rng_gauss();
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        const double e = round_trip_rmse(k[i].t, x, n, y);
        cr_log_info("round trip %-5s relative RMSE %.5f (bound %.4f)", lode_type_name(k[i].t), e, k[i].tol);
        cr_expect(e <= k[i].tol, "%s: relative RMSE %.5f > %.4f", lode_type_name(k[i].t), e, k[i].tol);
    }
    free(x);
    free(y);
}

Test(quant, q8_0_q4_0_match_ggml_reference_rule) {
    /* A block worked out by hand: amax 31.75 -> d = 0.25 (exact), q = roundf(x * 4). */
    float x[32] = {0};
    x[0] = 31.75f, x[1] = -15.875f, x[2] = 0.1f, x[31] = -25.0f;
    lode_block_q8_0 b8;
    lode_type_get(LODE_TYPE_Q8_0)->from_f32(x, &b8, 32);
    cr_expect_eq(b8.d, 0x3400);
    cr_expect(b8.qs[0] == 127 && b8.qs[1] == -64 && b8.qs[2] == 0 && b8.qs[31] == -100);
    /* Q4_0: signed max -2 (first of the two largest) -> d = -2 / -8 = 0.25,
     * q = trunc(x * 4 + 8.5) capped at 15. */
    float z[32] = {0};
    z[0] = -2.0f, z[1] = 2.0f, z[16] = -0.3f, z[17] = 0.125f;
    lode_block_q4_0 b4;
    lode_type_get(LODE_TYPE_Q4_0)->from_f32(z, &b4, 32);
    cr_expect_eq(b4.d, 0x3400);
    cr_expect_eq(b4.qs[0] & 0xF, 0);  /* -8 + 8.5 = 0.5 -> 0 */
    cr_expect_eq(b4.qs[1] & 0xF, 15); /* 8 + 8.5 = 16.5 -> 16, capped */
    cr_expect_eq(b4.qs[0] >> 4, 7);   /* -1.2 + 8.5 = 7.3 -> 7 */
    cr_expect_eq(b4.qs[1] >> 4, 9);   /* 0.5 + 8.5 = 9 */
    cr_expect_eq(b4.qs[2], 0x88);
}

Test(quant, special_blocks) {
    const lode_type types[] = {LODE_TYPE_Q8_0, LODE_TYPE_Q4_0, LODE_TYPE_Q4_K, LODE_TYPE_Q5_K, LODE_TYPE_Q6_K};
    float x[512], y[512];
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const lode_type_traits *tr = lode_type_get(types[ti]);
        uint8_t q[1024]; /* >= 512 elements of any type (q8_0: 544 bytes) */
        /* All zero. */
        memset(x, 0, sizeof x);
        tr->from_f32(x, q, 512);
        tr->to_f32(q, y, 512);
        for (int i = 0; i < 512; i++) cr_assert_eq(y[i], 0.0f, "%s zero block", tr->name);
        /* Constant blocks (positive and negative), one spike, tiny values. */
        for (int kind = 0; kind < 4; kind++) {
            for (int i = 0; i < 512; i++)
                x[i] = kind == 0 ? 3.0f : kind == 1 ? -0.75f : kind == 2 ? (i == 77 ? 100.0f : 0.0f) : 1e-9f * (float)(i % 7);
            tr->from_f32(x, q, 512);
            tr->to_f32(q, y, 512);
            for (int i = 0; i < 512; i++) {
                cr_assert(isfinite(y[i]), "%s kind %d element %d", tr->name, kind, i);
                cr_assert(fabsf(y[i] - x[i]) <= 0.05f * fabsf(x[i]) + 1e-6f, "%s kind %d element %d: %g vs %g",
                          tr->name, kind, i, y[i], x[i]);
            }
        }
    }
}

// ---- kernels vs reference ---------------------------------------------------------

typedef struct { lode_type t; int64_t ncols; } shape;

static const shape k_shapes[] = {
    {LODE_TYPE_F32, 37},    {LODE_TYPE_F32, 2305},  {LODE_TYPE_F16, 37},    {LODE_TYPE_F16, 2305},
    {LODE_TYPE_BF16, 19},   {LODE_TYPE_BF16, 2305}, {LODE_TYPE_Q8_0, 96},   {LODE_TYPE_Q8_0, 2080},
    {LODE_TYPE_Q4_0, 64},   {LODE_TYPE_Q4_0, 2080}, {LODE_TYPE_Q4_K, 768},  {LODE_TYPE_Q4_K, 2304},
    {LODE_TYPE_Q5_K, 256},  {LODE_TYPE_Q5_K, 2304}, {LODE_TYPE_Q6_K, 512},  {LODE_TYPE_Q6_K, 2304},
    {LODE_TYPE_Q4_1, 96},   {LODE_TYPE_Q4_1, 2080}, {LODE_TYPE_Q5_0, 96},   {LODE_TYPE_Q5_0, 2080},
    {LODE_TYPE_Q5_1, 96},   {LODE_TYPE_Q5_1, 2080},
};

typedef struct {
    lode_type t;
    int64_t ncols, nrows;
    void *W;
    float *Wf; /* dequantized, for the |w*x| scale of the tolerance */
} wmat;

static wmat make_wmat(lode_type t, int64_t ncols, int64_t nrows) {
    wmat m = {t, ncols, nrows, NULL, NULL};
    const size_t rs = lode_row_size(t, ncols);
    float *src = malloc((size_t)(ncols * nrows) * sizeof(float));
    for (int64_t i = 0; i < ncols * nrows; i++) src[i] = rng_gauss() * (1.0f + (float)(i % 5));
    m.W = malloc(rs * (size_t)nrows);
    m.Wf = malloc((size_t)(ncols * nrows) * sizeof(float));
    for (int64_t r = 0; r < nrows; r++) {
        lode_type_get(t)->from_f32(src + r * ncols, (char *)m.W + r * rs, ncols);
        lode_type_get(t)->to_f32((char *)m.W + r * rs, m.Wf + r * ncols, ncols);
    }
    free(src);
    return m;
}

static void free_wmat(wmat *m) {
    free(m->W);
    free(m->Wf);
}

static void check_row(const wmat *m, int64_t r, const float *x, float got, const char *what, int ntok) {
    const size_t rs = lode_row_size(m->t, m->ncols);
    const float ref = lode_vec_dot_f32_ref(m->t, (const char *)m->W + r * rs, x, m->ncols);
    double mag = 0;
    for (int64_t c = 0; c < m->ncols; c++) mag += fabs((double)m->Wf[r * m->ncols + c] * x[c]);
    cr_assert(fabs((double)got - ref) <= TOL_DOT * mag + 1e-30, "%s %s ncols %ld ntok %d row %ld: %.9g vs ref %.9g (|wx| %.3g) at %s",
              what, lode_type_name(m->t), (long)m->ncols, ntok, (long)r, got, ref, mag,
              lode_cpu_level_name(lode_quant_cpu_level()));
}

static void check_kernels_at_level(lode_cpu_level level) {
    if (lode_quant_set_cpu_level(level) != level) cr_skip_test("CPU lacks %s", lode_cpu_level_name(level));
    const int64_t nrows = 37, r0 = 3, r1 = 34, ntok_max = 9, ldx_pad = 3, ldy = nrows + 5;
    for (size_t si = 0; si < sizeof k_shapes / sizeof k_shapes[0]; si++) {
        wmat m = make_wmat(k_shapes[si].t, k_shapes[si].ncols, nrows);
        const int64_t ldx = m.ncols + ldx_pad;
        float *X = malloc((size_t)(ntok_max * ldx) * sizeof(float));
        float *Y = malloc((size_t)(ntok_max * ldy) * sizeof(float));
        for (int64_t i = 0; i < ntok_max * ldx; i++) X[i] = rng_gauss();
        /* matvec on odd ranges, including empty and single rows. */
        const int64_t ranges[][2] = {{r0, r1}, {0, nrows}, {5, 6}, {7, 7}};
        for (int ri = 0; ri < 4; ri++) {
            for (int64_t i = 0; i < ldy; i++) Y[i] = -777.0f;
            lode_matvec_rows(m.t, m.W, m.ncols, X, Y, ranges[ri][0], ranges[ri][1]);
            for (int64_t r = 0; r < ldy; r++) {
                if (r >= ranges[ri][0] && r < ranges[ri][1])
                    check_row(&m, r, X, Y[r], "matvec", 1);
                else
                    cr_assert_eq(Y[r], -777.0f, "matvec wrote outside its rows");
            }
        }
        for (int ntok = 1; ntok <= ntok_max; ntok++) {
            for (int64_t i = 0; i < ntok_max * ldy; i++) Y[i] = -777.0f;
            lode_matmul_rows(m.t, m.W, m.ncols, X, ldx, ntok, Y, ldy, r0, r1);
            for (int t = 0; t < ntok_max; t++)
                for (int64_t r = 0; r < ldy; r++) {
                    if (t < ntok && r >= r0 && r < r1)
                        check_row(&m, r, X + t * ldx, Y[t * ldy + r], "matmul", ntok);
                    else
                        cr_assert_eq(Y[t * ldy + r], -777.0f, "matmul wrote outside its rows");
                }
        }
        free(X);
        free(Y);
        free_wmat(&m);
    }
}

Test(quant, kernels_scalar) { check_kernels_at_level(LODE_CPU_SCALAR); }
Test(quant, kernels_avx2) { check_kernels_at_level(LODE_CPU_AVX2); }
Test(quant, kernels_avx512) { check_kernels_at_level(LODE_CPU_AVX512); }

/* Multi-token calls dequantize into f32 tiles; with one-hot tokens the
 * result is exactly the dequantized weight, which must equal to_f32 bit for
 * bit at every level (the tile decoders keep GGML's arithmetic). */
static void check_tiles_exact(lode_cpu_level level) {
    if (lode_quant_set_cpu_level(level) != level) return;
    for (size_t si = 0; si < sizeof k_shapes / sizeof k_shapes[0]; si++) {
        const int64_t nrows = 5, ncols = k_shapes[si].ncols;
        wmat m = make_wmat(k_shapes[si].t, ncols, nrows);
        const int ntok = 7;
        float *X = calloc((size_t)(ntok * ncols), sizeof(float)), *Y = malloc((size_t)(ntok * nrows) * sizeof(float));
        int64_t cols[7];
        for (int t = 0; t < ntok; t++) {
            cols[t] = t == 0 ? 0 : t == ntok - 1 ? ncols - 1 : (int64_t)(rng_u32() % (uint32_t)ncols);
            X[t * ncols + cols[t]] = 1.0f;
        }
        lode_matmul_rows(m.t, m.W, ncols, X, ncols, ntok, Y, nrows, 0, nrows);
        for (int t = 0; t < ntok; t++)
            for (int64_t r = 0; r < nrows; r++)
                cr_assert(Y[t * nrows + r] == m.Wf[r * ncols + cols[t]], /* == : -0 * 1 + 0 is +0 */
                          "%s tile at %s: row %ld col %ld: %a vs %a", lode_type_name(m.t), lode_cpu_level_name(level),
                          (long)r, (long)cols[t], Y[t * nrows + r], m.Wf[r * ncols + cols[t]]);
        free(X);
        free(Y);
        free_wmat(&m);
    }
}

Test(quant, tiles_bit_exact_all_levels) {
    check_tiles_exact(LODE_CPU_SCALAR);
    check_tiles_exact(LODE_CPU_AVX2);
    check_tiles_exact(LODE_CPU_AVX512);
}

Test(quant, kernels_large_tile) {
    /* More rows than one tile holds (tile = 64 Ki floats / 2048 columns =
     * 32 rows) and several column blocks; 6 tokens take the tile path. */
    const lode_type types[] = {LODE_TYPE_Q4_K, LODE_TYPE_Q8_0, LODE_TYPE_F32, LODE_TYPE_BF16};
    enum { NT = 6, NC = 4608, NR = 70 };
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        wmat m = make_wmat(types[ti], NC, NR);
        float *X = malloc(NT * NC * sizeof(float)), *Y = malloc(NT * NR * sizeof(float));
        for (int i = 0; i < NT * NC; i++) X[i] = rng_gauss();
        lode_matmul_rows(m.t, m.W, m.ncols, X, NC, NT, Y, NR, 1, NR - 1);
        for (int t = 0; t < NT; t++)
            for (int r = 1; r < NR - 1; r++) check_row(&m, r, X + t * NC, Y[t * NR + r], "matmul-large", NT);
        free(X);
        free(Y);
        free_wmat(&m);
    }
}

typedef struct {
    const wmat *m;
    const float *X;
    float *Y;
    int64_t r0, r1;
} thr_arg;

static void *thr_main(void *p) {
    thr_arg *a = p;
    /* Alternate the fused (4 tokens) and tile (6 tokens) paths; each
     * thread gets its own tile scratch, freed when it exits. */
    for (int it = 0; it < 20; it++)
        lode_matmul_rows(a->m->t, a->m->W, a->m->ncols, a->X, a->m->ncols, it & 1 ? 6 : 4, a->Y, a->m->nrows, a->r0,
                         a->r1);
    return NULL;
}

Test(quant, kernels_threads_disjoint_rows) {
    wmat m = make_wmat(LODE_TYPE_Q6_K, 1024, 64);
    float *X = malloc(6 * 1024 * sizeof(float)), *Y = malloc(6 * 64 * sizeof(float));
    for (int i = 0; i < 6 * 1024; i++) X[i] = rng_gauss();
    pthread_t th[4];
    thr_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thr_arg){&m, X, Y, i * 16, i * 16 + 16};
        pthread_create(&th[i], NULL, thr_main, &args[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int t = 0; t < 6; t++)
        for (int r = 0; r < 64; r++) check_row(&m, r, X + t * 1024, Y[t * 64 + r], "threads", 6);
    free(X);
    free(Y);
    free_wmat(&m);
}

Test(quant, cpu_level_env_override) {
    /* A negative level re-runs detection, which reads LODE_CPU (the suite
     * itself may run under LODE_CPU=...: start from a clean environment). */
    unsetenv("LODE_CPU");
    const lode_cpu_level max = lode_quant_set_cpu_level((lode_cpu_level)-1);
    setenv("LODE_CPU", "scalar", 1);
    cr_expect_eq(lode_quant_set_cpu_level((lode_cpu_level)-1), LODE_CPU_SCALAR);
    cr_expect_eq(lode_quant_cpu_level(), LODE_CPU_SCALAR);
    setenv("LODE_CPU", "avx2", 1);
    cr_expect_eq(lode_quant_set_cpu_level((lode_cpu_level)-1), max >= LODE_CPU_AVX2 ? LODE_CPU_AVX2 : max);
    setenv("LODE_CPU", "AVX512", 1);
    cr_expect_eq(lode_quant_set_cpu_level((lode_cpu_level)-1), max);
    setenv("LODE_CPU", "bogus", 1); /* warns, keeps the CPU's best */
    cr_expect_eq(lode_quant_set_cpu_level((lode_cpu_level)-1), max);
    unsetenv("LODE_CPU");
    cr_expect_eq(lode_quant_set_cpu_level(LODE_CPU_AVX512), max);
}

Test(quant, cpu_level_names) {
    cr_expect_str_eq(lode_cpu_level_name(LODE_CPU_SCALAR), "scalar");
    cr_expect_str_eq(lode_cpu_level_name(LODE_CPU_AVX2), "avx2");
    cr_expect_str_eq(lode_cpu_level_name(LODE_CPU_AVX512), "avx512");
    cr_expect_eq(lode_quant_set_cpu_level(LODE_CPU_SCALAR), LODE_CPU_SCALAR);
    cr_expect_eq(lode_quant_cpu_level(), LODE_CPU_SCALAR);
}

// ---- GGML itself as the oracle (optional) ---------------------------------------

#define GGML_BASE_DEFAULT "tests/npm/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so"

typedef void (*ggml_deq_fn)(const void *, float *, int64_t);
typedef void (*ggml_quant_fn)(const float *, void *, int64_t);

static void *ggml_sym(void *h, const char *name) {
    void *p = dlsym(h, name);
    cr_assert_not_null(p, "symbol %s missing from libggml-base", name);
    return p;
}

/* Random bytes for a block, with every f16 scale field forced finite. */
static void random_block(lode_type t, uint8_t *p, size_t n_blocks) {
    const size_t ts = lode_type_get(t)->type_size;
    fill_bytes(p, ts * n_blocks);
    for (size_t b = 0; b < n_blocks; b++) {
        uint8_t *blk = p + b * ts;
        uint16_t h[2];
        for (int i = 0; i < 2; i++) h[i] = (uint16_t)((rng_u32() & 0x83FF) | ((rng_u32() % 30) << 10));
        const size_t off = t == LODE_TYPE_Q6_K ? 208 : 0;
        memcpy(blk + off, &h[0], 2);
        if (t == LODE_TYPE_Q4_K || t == LODE_TYPE_Q5_K || t == LODE_TYPE_Q4_1 || t == LODE_TYPE_Q5_1)
            memcpy(blk + 2, &h[1], 2);
    }
}

Test(quant, matches_ggml_library) {
    const char *path = getenv("LODE_GGML_BASE");
    void *h = dlopen(path && *path ? path : GGML_BASE_DEFAULT, RTLD_NOW | RTLD_LOCAL);
    if (!h) cr_skip_test("libggml-base.so not found (%s)", dlerror());
    const struct { lode_type t; const char *deq, *quant; } k[] = {
        {LODE_TYPE_Q8_0, "dequantize_row_q8_0", "quantize_row_q8_0_ref"},
        {LODE_TYPE_Q4_0, "dequantize_row_q4_0", "quantize_row_q4_0_ref"},
        {LODE_TYPE_Q4_1, "dequantize_row_q4_1", "quantize_row_q4_1_ref"},
        {LODE_TYPE_Q5_0, "dequantize_row_q5_0", "quantize_row_q5_0_ref"},
        {LODE_TYPE_Q5_1, "dequantize_row_q5_1", "quantize_row_q5_1_ref"},
        {LODE_TYPE_Q4_K, "dequantize_row_q4_K", "quantize_row_q4_K_ref"},
        {LODE_TYPE_Q5_K, "dequantize_row_q5_K", "quantize_row_q5_K_ref"},
        {LODE_TYPE_Q6_K, "dequantize_row_q6_K", "quantize_row_q6_K_ref"},
    };
    const int64_t n = 256 * 64;
    uint8_t *blk = malloc(lode_row_size(LODE_TYPE_F32, n)), *blk2 = malloc(lode_row_size(LODE_TYPE_F32, n));
    float *x = malloc(n * sizeof(float)), *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = rng_gauss() * (i % 3 ? 1.0f : 0.01f);
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        const lode_type_traits *tr = lode_type_get(k[i].t);
        ggml_deq_fn gdeq = (ggml_deq_fn)ggml_sym(h, k[i].deq);
        ggml_quant_fn gq = (ggml_quant_fn)ggml_sym(h, k[i].quant);
        /* Dequantizers: random blocks, bit-exact, at every level (to_f32
         * runs the current level's decoder). */
        random_block(k[i].t, blk, (size_t)(n / tr->block_size));
        gdeq(blk, b, n);
        for (int lv = LODE_CPU_SCALAR; lv <= LODE_CPU_AVX512; lv++) {
            if (lode_quant_set_cpu_level((lode_cpu_level)lv) != (lode_cpu_level)lv) continue;
            tr->to_f32(blk, a, n);
            for (int64_t j = 0; j < n; j++)
                cr_assert(fbits(a[j]) == fbits(b[j]), "%s element %ld at %s: lode %a ggml %a", tr->name, (long)j,
                          lode_cpu_level_name((lode_cpu_level)lv), a[j], b[j]);
        }
        /* Quantizers: the 32-block types must be byte-identical; the
         * K-quants use lode's own search, so compare accuracy instead. */
        const size_t rs = lode_row_size(k[i].t, n);
        tr->from_f32(x, blk, n);
        gq(x, blk2, n);
        if (tr->block_size == 32) {
            cr_assert(memcmp(blk, blk2, rs) == 0, "%s quantizer differs from ggml's reference", tr->name);
        } else {
            tr->to_f32(blk, a, n);
            tr->to_f32(blk2, b, n);
            double ea = 0, eb = 0, sx = 0;
            for (int64_t j = 0; j < n; j++) {
                ea += ((double)a[j] - x[j]) * ((double)a[j] - x[j]);
                eb += ((double)b[j] - x[j]) * ((double)b[j] - x[j]);
                sx += (double)x[j] * x[j];
            }
            cr_log_info("%s relative RMSE: lode %.5f, ggml reference %.5f", tr->name, sqrt(ea / sx), sqrt(eb / sx));
            cr_expect(ea <= eb * 1.1, "%s: lode's quantizer is >5%% worse than ggml's reference", tr->name);
        }
    }
    /* f16 and bf16 conversions over every 16-bit pattern and random f32. */
    void (*g16)(const uint16_t *, float *, int64_t) = (void (*)(const uint16_t *, float *, int64_t))ggml_sym(h, "ggml_fp16_to_fp32_row");
    void (*gb16)(const uint16_t *, float *, int64_t) = (void (*)(const uint16_t *, float *, int64_t))ggml_sym(h, "ggml_bf16_to_fp32_row");
    void (*g32to16)(const float *, uint16_t *, int64_t) = (void (*)(const float *, uint16_t *, int64_t))ggml_sym(h, "ggml_fp32_to_fp16_row");
    void (*g32tob16)(const float *, uint16_t *, int64_t) = (void (*)(const float *, uint16_t *, int64_t))ggml_sym(h, "ggml_fp32_to_bf16_row_ref");
    uint16_t *hv = malloc(65536 * 2), *hg = malloc(65536 * 2);
    float *fa = malloc(65536 * sizeof(float)), *fb = malloc(65536 * sizeof(float));
    for (uint32_t i = 0; i < 65536; i++) hv[i] = (uint16_t)i;
    for (int lv = LODE_CPU_SCALAR; lv <= LODE_CPU_AVX512; lv++) {
        if (lode_quant_set_cpu_level((lode_cpu_level)lv) != (lode_cpu_level)lv) continue;
        g16(hv, fb, 65536);
        lode_type_get(LODE_TYPE_F16)->to_f32(hv, fa, 65536);
        for (int i = 0; i < 65536; i++)
            cr_assert(fbits(fa[i]) == fbits(fb[i]) || (isnan(fa[i]) && isnan(fb[i])), "f16 0x%04x at level %d", i, lv);
        gb16(hv, fb, 65536);
        lode_type_get(LODE_TYPE_BF16)->to_f32(hv, fa, 65536);
        for (int i = 0; i < 65536; i++) cr_assert(fbits(fa[i]) == fbits(fb[i]), "bf16 0x%04x at level %d", i, lv);
    }
    for (int i = 0; i < 65536; i++) {
        uint32_t u = rng_u32();
        if (i & 1) u = (u & 0x807FFFFFu) | ((100u + rng_u32() % 51) << 23);
        fa[i] = isnan(bitsf(u)) ? 1.0f : bitsf(u);
    }
    g32to16(fa, hg, 65536);
    for (int i = 0; i < 65536; i++) cr_assert_eq(lode_f32_to_f16(fa[i]), hg[i], "f32->f16 %a", fa[i]);
    g32tob16(fa, hg, 65536);
    for (int i = 0; i < 65536; i++) cr_assert_eq(lode_f32_to_bf16(fa[i]), hg[i], "f32->bf16 %a", fa[i]);
    free(hv), free(hg), free(fa), free(fb);
    free(blk), free(blk2), free(x), free(a), free(b);
    dlclose(h);
}

// ---- int8-activation path (quant_int8.c) -------------------------------------

/* Dequantized activation row (the x^ the int8 path multiplies with). */
static bool q8a_type(lode_type t) { return lode_type_get(t)->block_size == 32; }

static void act_dequant(lode_type t, const void *xq, int64_t n, float *out) {
    if (q8a_type(t)) {
        const lode_block_q8a *b = xq;
        for (int64_t i = 0; i < n; i++) out[i] = b[i / 32].d * (float)b[i / 32].qs[i % 32];
    } else {
        const lode_block_q8k *b = xq;
        for (int64_t i = 0; i < n; i++) out[i] = b[i / 256].d * (float)b[i / 256].qs[i % 256];
    }
}

static const lode_type k_int8_types[] = {LODE_TYPE_Q8_0, LODE_TYPE_Q4_0, LODE_TYPE_Q4_1, LODE_TYPE_Q5_0,
                                         LODE_TYPE_Q5_1, LODE_TYPE_Q4_K, LODE_TYPE_Q5_K, LODE_TYPE_Q6_K};

Test(quant, int8_act_quantize_known) {
    /* One 32-block: max |x| = 2.54 -> d = 0.02, x / d rounded half to even. */
    float x[256];
    for (int i = 0; i < 32; i++) x[i] = 0.0f;
    x[0] = 2.54f, x[1] = -2.54f, x[2] = 0.01f /* 0.5 -> 0 */, x[3] = 0.03f /* 1.5 -> 2 */, x[4] = -1.0f;
    lode_block_q8a b;
    cr_assert_eq(lode_act_row_size(LODE_TYPE_Q8_0, 32), sizeof b);
    lode_act_quantize(LODE_TYPE_Q8_0, x, &b, 32);
    cr_assert_float_eq(b.d, 2.54f / 127.0f, 1e-9);
    cr_assert_eq(b.qs[0], 127);
    cr_assert_eq(b.qs[1], -127);
    cr_assert_eq(b.qs[4], (int8_t)nearbyintf(-1.0f * (1.0f / b.d)));
    cr_assert_eq(b.qs[5], 0);
    /* All-zero block: d = 0 and zero quants. */
    memset(x, 0, sizeof x);
    lode_act_quantize(LODE_TYPE_Q4_0, x, &b, 32);
    cr_assert(b.d == 0.0f && b.qs[0] == 0 && b.qs[31] == 0);
    /* K block: bsums are the sums of 16 quants. */
    for (int i = 0; i < 256; i++) x[i] = (float)((i * 37) % 255) - 127.0f;
    lode_block_q8k k;
    cr_assert_eq(lode_act_row_size(LODE_TYPE_Q4_K, 256), sizeof k);
    lode_act_quantize(LODE_TYPE_Q4_K, x, &k, 256);
    cr_assert_float_eq(k.d, 1.0f, 1e-9);
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int j = 0; j < 16; j++) {
            cr_assert_eq(k.qs[16 * g + j], (int8_t)x[16 * g + j]);
            s += k.qs[16 * g + j];
        }
        cr_assert_eq(k.bsums[g], s);
    }
    /* Types without an int8 path and shapes that do not tile. */
    cr_assert_eq(lode_act_row_size(LODE_TYPE_F32, 256), 0);
    cr_assert_eq(lode_act_row_size(LODE_TYPE_BF16, 256), 0);
    cr_assert_eq(lode_act_row_size(LODE_TYPE_Q4_K, 96), 0);
    cr_assert_eq(lode_act_row_size(LODE_TYPE_Q8_0, 33), 0);
}

/* The scalar int8 reference against the exact f32 dot of the dequantized
 * weights: the only difference is the activation rounding, so
 * |ref - sum w x| <= sum_blocks d_x/2 * sum|w| (+ f32 slack). */
Test(quant, int8_ref_vs_dequantized_f32) {
    for (size_t ti = 0; ti < sizeof k_int8_types / sizeof k_int8_types[0]; ti++) {
        const lode_type t = k_int8_types[ti];
        const int64_t n = 2304, nrows = 9;
        const int64_t bs = q8a_type(t) ? 32 : 256;
        wmat m = make_wmat(t, n, nrows);
        float *x = malloc((size_t)n * sizeof(float)), *xh = malloc((size_t)n * sizeof(float));
        void *xq = malloc(lode_act_row_size(t, n));
        for (int64_t i = 0; i < n; i++) x[i] = rng_gauss() * (i % 7 == 0 ? 4.0f : 1.0f);
        lode_act_quantize(t, x, xq, n);
        act_dequant(t, xq, n, xh);
        const size_t rs = lode_row_size(t, n);
        for (int64_t r = 0; r < nrows; r++) {
            const float *w = m.Wf + r * n;
            double exact = 0, bound = 0, mag = 0, magh = 0;
            for (int64_t b0 = 0; b0 < n; b0 += bs) {
                double amax = 0, sw = 0;
                for (int64_t i = b0; i < b0 + bs; i++) {
                    amax = fmax(amax, fabs((double)x[i]));
                    sw += fabs((double)w[i]);
                }
                bound += amax / 127.0 / 2.0 * sw;
            }
            for (int64_t i = 0; i < n; i++) {
                exact += (double)w[i] * x[i];
                mag += fabs((double)w[i] * x[i]);
                magh += fabs((double)w[i] * xh[i]);
                /* The rounding bound holds element-wise too. */
                cr_assert(fabs((double)xh[i] - x[i]) <= 0.5 * fabs((double)(q8a_type(t)
                                                                            ? ((lode_block_q8a *)xq)[i / 32].d
                                                                            : ((lode_block_q8k *)xq)[i / 256].d)) * 1.0001 + 1e-30);
            }
            const float got = lode_vec_dot_q8_ref(t, (const char *)m.W + r * rs, xq, n);
            /* Against sum w x^ in double: only f32 rounding. */
            double exh = 0;
            for (int64_t i = 0; i < n; i++) exh += (double)w[i] * xh[i];
            cr_assert(fabs(got - exh) <= TOL_DOT * magh + 1e-30, "%s row %ld: ref %.9g vs sum w x^ %.9g",
                      lode_type_name(t), (long)r, got, exh);
            cr_assert(fabs(got - exact) <= bound + TOL_DOT * mag, "%s row %ld: ref %.9g vs f32 %.9g (bound %.3g)",
                      lode_type_name(t), (long)r, got, exact, bound);
        }
        free(x);
        free(xh);
        free(xq);
        free_wmat(&m);
    }
}

/* One output of an int8-path kernel against lode_vec_dot_q8_ref on row r
 * of the plain matrix: within 1e-5 of sum|w x^| (xh: scratch of ncols). */
static void check_q8_row(const wmat *m, int64_t r, const void *xq, float *xh, float got, const char *what, int ntok,
                         lode_cpu_level level) {
    const int64_t n = m->ncols;
    const float ref = lode_vec_dot_q8_ref(m->t, (const char *)m->W + r * lode_row_size(m->t, n), xq, n);
    act_dequant(m->t, xq, n, xh);
    double mag = 0;
    for (int64_t i = 0; i < n; i++) mag += fabs((double)m->Wf[r * n + i] * xh[i]);
    cr_assert(fabs((double)got - ref) <= TOL_DOT * mag + 1e-30,
              "%s %s ncols %ld ntok %d row %ld at %s: %.9g vs ref %.9g (|wx| %.3g)", what, lode_type_name(m->t),
              (long)n, ntok, (long)r, lode_cpu_level_name(level), got, ref, mag);
}

/* Every level of lode_matmul_q8_rows against the scalar reference, on odd
 * row ranges, 1..9 tokens, and more rows than one decode tile holds. */
static void check_int8_at_level(lode_cpu_level level) {
    if (lode_quant_set_cpu_level(level) != level) cr_skip_test("CPU lacks %s", lode_cpu_level_name(level));
    const int64_t shapes[][2] = {{256, 37}, {2304, 37}, {4608, 70}}; /* ncols, nrows */
    for (size_t ti = 0; ti < sizeof k_int8_types / sizeof k_int8_types[0]; ti++)
        for (size_t si = 0; si < 3; si++) {
            const lode_type t = k_int8_types[ti];
            const int64_t n = shapes[si][0], nrows = shapes[si][1], ldy = nrows + 5, ntok_max = 9;
            if (si == 2 && t != LODE_TYPE_Q4_K && t != LODE_TYPE_Q8_0) continue;
            wmat m = make_wmat(t, n, nrows);
            const size_t ars = lode_act_row_size(t, n);
            float *x = malloc((size_t)n * sizeof(float)), *xh = malloc((size_t)n * sizeof(float));
            char *Xq = malloc(ars * (size_t)ntok_max);
            float *Y = malloc((size_t)(ntok_max * ldy) * sizeof(float));
            for (int64_t k = 0; k < ntok_max; k++) {
                for (int64_t i = 0; i < n; i++) x[i] = rng_gauss();
                lode_act_quantize(t, x, Xq + (size_t)k * ars, n);
            }
            const int64_t ranges[][2] = {{3, nrows - 3}, {0, nrows}, {5, 6}, {7, 7}};
            for (int ri = 0; ri < 4; ri++)
                for (int ntok = 1; ntok <= ntok_max; ntok += (ri == 0 ? 1 : 4)) {
                    const int64_t r0 = ranges[ri][0], r1 = ranges[ri][1];
                    for (int64_t i = 0; i < ntok_max * ldy; i++) Y[i] = -777.0f;
                    lode_matmul_q8_rows(t, m.W, n, Xq, ntok, Y, ldy, r0, r1);
                    for (int k = 0; k < ntok_max; k++)
                        for (int64_t r = 0; r < ldy; r++) {
                            const float got = Y[k * ldy + r];
                            if (!(k < ntok && r >= r0 && r < r1)) {
                                cr_assert_eq(got, -777.0f, "int8 matmul wrote outside its rows");
                                continue;
                            }
                            check_q8_row(&m, r, Xq + (size_t)k * ars, xh, got, "int8", ntok, level);
                        }
                }
            free(x);
            free(xh);
            free(Xq);
            free(Y);
            free_wmat(&m);
        }
    lode_quant_set_cpu_level((lode_cpu_level)-1);
}

Test(quant, int8_kernels_scalar) { check_int8_at_level(LODE_CPU_SCALAR); }
Test(quant, int8_kernels_avx2) { check_int8_at_level(LODE_CPU_AVX2); }
Test(quant, int8_kernels_avx512) { check_int8_at_level(LODE_CPU_AVX512); }

Test(quant, int8_switch) {
    lode_quant_set_int8(0);
    cr_assert(!lode_quant_int8_enabled());
    lode_quant_set_int8(1);
    cr_assert(lode_quant_int8_enabled());
    lode_quant_set_int8(-1);
}

/* The AVX2 activation quantizer gives the scalar one's bytes exactly, ties
 * (x / d = k + 0.5), huge and tiny magnitudes and inf/NaN blocks included. */
Test(quant, int8_act_quantize_same_bytes_all_levels) {
    enum { N = 256 * 12 };
    float *x = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = rng_gauss() * (i < 1024 ? 1.0f : i < 2048 ? 1e-30f : 1e30f);
    /* Block 0 of 256: max 127 so x / d = x; put exact ties in it. */
    x[0] = 127.0f;
    for (int i = 1; i < 40; i++) x[i] = (float)(i % 20) - 9.5f;
    x[300] = INFINITY;         /* q8k block 1, q8a block 9 */
    x[600] = NAN;              /* q8k block 2, q8a block 18 */
    x[900] = -INFINITY;
    for (int i = 1024; i < 1024 + 64; i++) x[i] = 0.0f; /* all-zero blocks */
    const lode_type types[] = {LODE_TYPE_Q8_0, LODE_TYPE_Q4_K};
    for (size_t ti = 0; ti < 2; ti++) {
        const size_t ars = lode_act_row_size(types[ti], N);
        char *a = malloc(ars), *b = malloc(ars);
        cr_assert_eq(lode_quant_set_cpu_level(LODE_CPU_SCALAR), LODE_CPU_SCALAR);
        lode_act_quantize(types[ti], x, a, N);
        for (int lv = LODE_CPU_AVX2; lv <= LODE_CPU_AVX512; lv++) {
            if (lode_quant_set_cpu_level((lode_cpu_level)lv) != (lode_cpu_level)lv) continue;
            memset(b, 0x55, ars);
            lode_act_quantize(types[ti], x, b, N);
            cr_assert(memcmp(a, b, ars) == 0, "%s activations differ at %s", lode_type_name(types[ti]),
                      lode_cpu_level_name((lode_cpu_level)lv));
        }
        free(a);
        free(b);
    }
    lode_quant_set_cpu_level((lode_cpu_level)-1);
    /* Ties round half to even in the scalar quantizer. */
    lode_block_q8k k;
    lode_act_quantize(LODE_TYPE_Q6_K, x, &k, 256);
    cr_assert_float_eq(k.d, 1.0f, 0);
    for (int i = 1; i < 40; i++) cr_assert_eq(k.qs[i], (int8_t)nearbyintf(x[i]), "tie at %d", i);
    cr_assert_eq(k.qs[1], -8); /* -8.5 -> -8 */
    cr_assert_eq(k.qs[2], -8); /* -7.5 -> -8 */
    free(x);
}

/* ---- r16: the 16-row interleaved layout (engine/quant_r16.c) ---------- */

/* Packing is lossless, also for arbitrary bytes (every 6-bit scale/min
 * pattern of Q4_K, every nibble), and only the groups asked for change. */
Test(quant, r16_pack_unpack_round_trip) {
    const lode_type types[] = {LODE_TYPE_Q8_0, LODE_TYPE_Q4_K, LODE_TYPE_Q4_1, LODE_TYPE_Q5_0, LODE_TYPE_Q5_1};
    for (size_t ti = 0; ti < 5; ti++) {
        const lode_type t = types[ti];
        const int64_t cols = 768, rows = 48;
        const size_t rs = lode_row_size(t, cols), n = rs * (size_t)rows;
        cr_assert(lode_r16_supported(t, rows, cols));
        cr_assert(!lode_r16_supported(t, rows + 8, cols));
        unsigned char *W = malloc(n), *orig = malloc(n), *back = malloc(n);
        fill_bytes(orig, n);
        memcpy(W, orig, n);
        lode_r16_pack_groups(t, W, cols, 1, 2); /* only the middle group */
        cr_assert(memcmp(W, orig, 16 * rs) == 0 && memcmp(W + 32 * rs, orig + 32 * rs, 16 * rs) == 0);
        cr_assert(memcmp(W + 16 * rs, orig + 16 * rs, 16 * rs) != 0, "%s: the group was not packed", lode_type_name(t));
        lode_r16_pack_groups(t, W, cols, 0, 1);
        lode_r16_pack_groups(t, W, cols, 2, 3);
        lode_r16_unpack(t, W, rows, cols, back);
        cr_assert(memcmp(back, orig, n) == 0, "%s: unpack(pack(W)) != W", lode_type_name(t));
        free(W);
        free(orig);
        free(back);
    }
    cr_assert(!lode_r16_supported(LODE_TYPE_Q6_K, 16, 256));
    cr_assert(!lode_r16_supported(LODE_TYPE_Q4_K, 16, 288));
}

/* The packed kernels at every level (native VNNI, and the unpacking
 * fallback below it) against the scalar reference of the plain rows, for
 * 1..15 tokens (every token-block remainder) and group-aligned ranges. */
static void check_r16_at_level(lode_cpu_level level) {
    if (lode_quant_set_cpu_level(level) != level) cr_skip_test("CPU lacks %s", lode_cpu_level_name(level));
    const lode_type types[] = {LODE_TYPE_Q8_0, LODE_TYPE_Q4_K, LODE_TYPE_Q4_1, LODE_TYPE_Q5_0, LODE_TYPE_Q5_1};
    const int64_t shapes[][2] = {{256, 32}, {2304, 48}, {512, 128}}; /* ncols, nrows */
    for (size_t ti = 0; ti < 5; ti++)
        for (size_t si = 0; si < 3; si++) {
            const lode_type t = types[ti];
            const int64_t n = shapes[si][0], nrows = shapes[si][1], ldy = nrows + 3, ntok_max = 15;
            wmat m = make_wmat(t, n, nrows);
            const size_t ars = lode_act_row_size(t, n), rs = lode_row_size(t, n);
            void *P = malloc(rs * (size_t)nrows);
            memcpy(P, m.W, rs * (size_t)nrows);
            lode_r16_pack_groups(t, P, n, 0, nrows / 16);
            float *x = malloc((size_t)(n * ntok_max) * sizeof(float)), *xh = malloc((size_t)n * sizeof(float));
            char *Xq = malloc(ars * (size_t)ntok_max);
            float *Y = malloc((size_t)(ntok_max * ldy) * sizeof(float));
            for (int64_t i = 0; i < n * ntok_max; i++) x[i] = rng_gauss();
            for (int64_t k = 0; k < ntok_max; k++) lode_act_quantize(t, x + k * n, Xq + (size_t)k * ars, n);
            const int64_t ranges[][2] = {{0, nrows}, {16, 32}, {16, 16}, {16, nrows}};
            for (int ri = 0; ri < 4; ri++)
                for (int ntok = 1; ntok <= ntok_max; ntok++) {
                    const int64_t r0 = ranges[ri][0], r1 = ranges[ri][1];
                    for (int f32 = 0; f32 < 2; f32++) {
                        if (f32 && ntok > 3) continue;
                        for (int64_t i = 0; i < ntok_max * ldy; i++) Y[i] = -777.0f;
                        if (f32) lode_r16_matmul_f32(t, P, n, x, n, ntok, Y, ldy, r0, r1);
                        else lode_r16_matmul_q8(t, P, n, Xq, ntok, Y, ldy, r0, r1);
                        for (int k = 0; k < ntok_max; k++)
                            for (int64_t r = 0; r < ldy; r++) {
                                const float got = Y[k * ldy + r];
                                if (!(k < ntok && r >= r0 && r < r1)) {
                                    cr_assert_eq(got, -777.0f, "r16 matmul wrote outside its rows");
                                    continue;
                                }
                                if (f32) {
                                    check_row(&m, r, x + k * n, got, "r16 f32", ntok);
                                    continue;
                                }
                                check_q8_row(&m, r, Xq + (size_t)k * ars, xh, got, "r16", ntok, level);
                            }
                    }
                }
            free(P);
            free(x);
            free(xh);
            free(Xq);
            free(Y);
            free_wmat(&m);
        }
    lode_quant_set_cpu_level((lode_cpu_level)-1);
}

Test(quant, r16_kernels_scalar) { check_r16_at_level(LODE_CPU_SCALAR); }
Test(quant, r16_kernels_avx2) { check_r16_at_level(LODE_CPU_AVX2); }
Test(quant, r16_kernels_avx512) { check_r16_at_level(LODE_CPU_AVX512); }

/* lode_wsum_f32 (attention's P V) at every level against a double sum,
 * for head counts around the 8-head register block and column counts
 * around the 32-column chunk; rows past k and heads past nh untouched. */
static void check_wsum_at_level(lode_cpu_level level) {
    if (lode_quant_set_cpu_level(level) != level) cr_skip_test("CPU lacks %s", lode_cpu_level_name(level));
    const int64_t nhs[] = {1, 3, 8, 11}, ks[] = {5, 16, 33, 64, 512}, ns[] = {1, 7, 300};
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 5; b++)
            for (size_t c = 0; c < 3; c++) {
                const int64_t nh = nhs[a], k = ks[b], n = ns[c], ldp = n + 3, ldx = k + 7, ldy = k + 5;
                float *P = malloc((size_t)(nh * ldp) * sizeof(float)), *X = malloc((size_t)(n * ldx) * sizeof(float));
                float *Y = malloc((size_t)((nh + 1) * ldy) * sizeof(float));
                for (int64_t i = 0; i < nh * ldp; i++) P[i] = rng_uniform();
                for (int64_t i = 0; i < n * ldx; i++) X[i] = rng_gauss();
                for (int64_t i = 0; i < (nh + 1) * ldy; i++) Y[i] = i < nh * ldy ? rng_gauss() : -777.0f;
                float *Y0 = malloc((size_t)((nh + 1) * ldy) * sizeof(float));
                memcpy(Y0, Y, (size_t)((nh + 1) * ldy) * sizeof(float));
                lode_wsum_f32(P, ldp, nh, X, ldx, n, Y, ldy, k);
                for (int64_t h = 0; h <= nh; h++)
                    for (int64_t d = 0; d < ldy; d++) {
                        if (h == nh || d >= k) {
                            cr_assert_eq(Y[h * ldy + d], Y0[h * ldy + d], "wsum wrote outside its block");
                            continue;
                        }
                        double ref = Y0[h * ldy + d], mag = fabs((double)Y0[h * ldy + d]);
                        for (int64_t j = 0; j < n; j++) {
                            ref += (double)P[h * ldp + j] * X[j * ldx + d];
                            mag += fabs((double)P[h * ldp + j] * X[j * ldx + d]);
                        }
                        cr_assert(fabs(Y[h * ldy + d] - ref) <= TOL_DOT * mag + 1e-30,
                                  "wsum nh %ld k %ld n %ld at %s: %.9g vs %.9g", (long)nh, (long)k, (long)n,
                                  lode_cpu_level_name(level), Y[h * ldy + d], ref);
                    }
                free(P);
                free(X);
                free(Y);
                free(Y0);
            }
    lode_quant_set_cpu_level((lode_cpu_level)-1);
}

Test(quant, wsum_scalar) { check_wsum_at_level(LODE_CPU_SCALAR); }
Test(quant, wsum_avx2) { check_wsum_at_level(LODE_CPU_AVX2); }
Test(quant, wsum_avx512) { check_wsum_at_level(LODE_CPU_AVX512); }

/* lode_gemm_f32 at every level against a double sum: row counts around the
 * 4-row block, token counts around the 4-token block and the 16-token panel
 * switch, k around the 16-wide step; with and without accumulation; Y
 * outside the nr x nt block untouched. */
static void check_gemm_at_level(lode_cpu_level level) {
    if (lode_quant_set_cpu_level(level) != level) cr_skip_test("CPU lacks %s", lode_cpu_level_name(level));
    const int64_t nrs[] = {1, 4, 7, 64}, nts[] = {1, 3, 4, 16, 17, 36}, ks[] = {5, 16, 64, 576};
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 6; b++)
            for (size_t c = 0; c < 4; c++)
                for (int acc = 0; acc < 2; acc++) {
                    const int64_t nr = nrs[a], nt = nts[b], k = ks[c], ldw = k + 3, ldx = k + 1, ldy = nr + 2;
                    float *W = malloc((size_t)(nr * ldw) * sizeof(float)), *X = malloc((size_t)(nt * ldx) * sizeof(float));
                    float *Y = malloc((size_t)((nt + 1) * ldy) * sizeof(float)), *Y0 = malloc((size_t)((nt + 1) * ldy) * sizeof(float));
                    for (int64_t i = 0; i < nr * ldw; i++) W[i] = rng_gauss();
                    for (int64_t i = 0; i < nt * ldx; i++) X[i] = rng_gauss();
                    for (int64_t i = 0; i < (nt + 1) * ldy; i++) Y[i] = Y0[i] = rng_gauss();
                    lode_gemm_f32(W, ldw, nr, X, ldx, nt, Y, ldy, k, acc);
                    for (int64_t t = 0; t <= nt; t++)
                        for (int64_t r = 0; r < ldy; r++) {
                            if (t == nt || r >= nr) {
                                cr_assert_eq(Y[t * ldy + r], Y0[t * ldy + r], "gemm wrote outside its block");
                                continue;
                            }
                            double ref = acc ? Y0[t * ldy + r] : 0, mag = acc ? fabs((double)Y0[t * ldy + r]) : 0;
                            for (int64_t i = 0; i < k; i++) {
                                ref += (double)W[r * ldw + i] * X[t * ldx + i];
                                mag += fabs((double)W[r * ldw + i] * X[t * ldx + i]);
                            }
                            cr_assert(fabs(Y[t * ldy + r] - ref) <= TOL_DOT * mag + 1e-30,
                                      "gemm nr %ld nt %ld k %ld acc %d at %s: %.9g vs %.9g", (long)nr, (long)nt, (long)k,
                                      acc, lode_cpu_level_name(level), Y[t * ldy + r], ref);
                        }
                    free(W);
                    free(X);
                    free(Y);
                    free(Y0);
                }
    lode_quant_set_cpu_level((lode_cpu_level)-1);
}

Test(quant, gemm_scalar) { check_gemm_at_level(LODE_CPU_SCALAR); }
Test(quant, gemm_avx2) { check_gemm_at_level(LODE_CPU_AVX2); }
Test(quant, gemm_avx512) { check_gemm_at_level(LODE_CPU_AVX512); }

/* lode_gemm_nn_f32 at every level against a double sum: m around the 4- and
 * 6-row blocks, n around the 16- and 64-column blocks, k around the 64-step
 * chunk;
 * with and without accumulation; C outside the m x n block untouched. */
static void check_gemm_nn_at_level(lode_cpu_level level) {
    if (lode_quant_set_cpu_level(level) != level) cr_skip_test("CPU lacks %s", lode_cpu_level_name(level));
    const int64_t ms[] = {1, 3, 4, 6, 13, 32}, ns[] = {1, 15, 16, 17, 33, 64, 65, 128}, ks[] = {1, 7, 64, 65, 512};
    for (size_t a = 0; a < 6; a++)
        for (size_t b = 0; b < 8; b++)
            for (size_t c = 0; c < 5; c++)
                for (int acc = 0; acc < 2; acc++) {
                    const int64_t m = ms[a], n = ns[b], k = ks[c], lda = k + 3, ldb = n + 5, ldc = n + 2;
                    float *A = malloc((size_t)(m * lda) * sizeof(float)), *B = malloc((size_t)(k * ldb) * sizeof(float));
                    float *C = malloc((size_t)((m + 1) * ldc) * sizeof(float)), *C0 = malloc((size_t)((m + 1) * ldc) * sizeof(float));
                    for (int64_t i = 0; i < m * lda; i++) A[i] = rng_gauss();
                    for (int64_t i = 0; i < k * ldb; i++) B[i] = rng_gauss();
                    for (int64_t i = 0; i < (m + 1) * ldc; i++) C[i] = C0[i] = rng_gauss();
                    lode_gemm_nn_f32(A, lda, m, B, ldb, n, C, ldc, k, acc);
                    for (int64_t i = 0; i <= m; i++)
                        for (int64_t j = 0; j < ldc; j++) {
                            if (i == m || j >= n) {
                                cr_assert_eq(C[i * ldc + j], C0[i * ldc + j], "gemm_nn wrote outside its block");
                                continue;
                            }
                            double ref = acc ? C0[i * ldc + j] : 0, mag = acc ? fabs((double)C0[i * ldc + j]) : 0;
                            for (int64_t q = 0; q < k; q++) {
                                ref += (double)A[i * lda + q] * B[q * ldb + j];
                                mag += fabs((double)A[i * lda + q] * B[q * ldb + j]);
                            }
                            cr_assert(fabs(C[i * ldc + j] - ref) <= TOL_DOT * mag + 1e-30,
                                      "gemm_nn m %ld n %ld k %ld acc %d at %s: %.9g vs %.9g", (long)m, (long)n, (long)k,
                                      acc, lode_cpu_level_name(level), C[i * ldc + j], ref);
                        }
                    free(A);
                    free(B);
                    free(C);
                    free(C0);
                }
    lode_quant_set_cpu_level((lode_cpu_level)-1);
}

Test(quant, gemm_nn_scalar) { check_gemm_nn_at_level(LODE_CPU_SCALAR); }
Test(quant, gemm_nn_avx2) { check_gemm_nn_at_level(LODE_CPU_AVX2); }
Test(quant, gemm_nn_avx512) { check_gemm_nn_at_level(LODE_CPU_AVX512); }

/* The softmax and SwiGLU pieces at every level against double-precision
 * math: exp within 2 ulp of the true value (0 below FLT_MIN), the sum within
 * 1e-6 relative, silu within 4 ulp; every length from 0 to 40 (the tails). */
static double ulp_err(float got, double want) {
    if (want == 0.0) return got == 0.0f ? 0.0 : INFINITY;
    const double ulp = ldexp(1.0, ilogb(want) - 23);
    return fabs((double)got - want) / ulp;
}

static void check_softmax_pieces_at_level(lode_cpu_level level) {
    if (lode_quant_set_cpu_level(level) != level) cr_skip_test("CPU lacks %s", lode_cpu_level_name(level));
    enum { N = 40 };
    for (int64_t n = 0; n <= N; n++) {
        float x[N + 1], x0[N + 1], u[N + 1], g[N + 1];
        for (int64_t i = 0; i <= N; i++) x[i] = x0[i] = 30.0f * rng_gauss(), u[i] = rng_gauss(), g[i] = 12.0f * rng_gauss();
        x[n] = x0[n] = 1e30f; /* a sentinel past the end */
        const float scale = 0.37f;
        float m = lode_scale_max_f32(x, n, scale, -INFINITY);
        float mref = -INFINITY;
        for (int64_t i = 0; i < n; i++) {
            cr_assert_eq(x[i], x0[i] * scale, "scale_max scaled %ld wrong at %s", (long)i, lode_cpu_level_name(level));
            mref = x[i] > mref ? x[i] : mref;
        }
        cr_assert_eq(m, mref, "scale_max max at %s", lode_cpu_level_name(level));
        cr_assert_eq(x[n], 1e30f, "scale_max wrote past n");
        for (int64_t i = 0; i < n; i++) x0[i] = x[i];
        const double s = lode_exp_sub_f32(x, n, m);
        double sref = 0;
        for (int64_t i = 0; i < n; i++) {
            const float arg = x0[i] - m; /* the kernels subtract in f32 */
            const double e = exp((double)arg);
            const double want = e < 1.1754943508222875e-38 ? 0.0 : e;
            sref += want;
            if (want == 0.0) cr_assert(x[i] < 1.2e-38f, "exp underflow at %s: %g", lode_cpu_level_name(level), x[i]);
            else cr_assert(ulp_err(x[i], want) <= 2.0, "exp(%.9g) at %s: %.9g vs %.9g", (double)arg,
                           lode_cpu_level_name(level), x[i], want);
        }
        cr_assert(fabs(s - sref) <= 1e-6 * sref + 1e-30, "exp sum at %s: %.12g vs %.12g", lode_cpu_level_name(level), s, sref);
        cr_assert_eq(x[n], 1e30f, "exp_sub wrote past n");
        float out[N + 1];
        out[n] = 7.0f;
        lode_swiglu_f32(g, u, out, n);
        for (int64_t i = 0; i < n; i++) {
            const double want = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
            cr_assert(ulp_err(out[i], want) <= 4.0 || fabs(out[i] - want) < 1e-37, "silu(%.9g) * %.9g at %s: %.9g vs %.9g",
                      g[i], u[i], lode_cpu_level_name(level), out[i], want);
        }
        cr_assert_eq(out[n], 7.0f, "swiglu wrote past n");
    }
    /* extremes: exp of -inf and of large negatives is 0, silu saturates */
    float e[4] = {-INFINITY, -200.0f, -87.0f, 0.0f};
    lode_exp_sub_f32(e, 4, 0.0f);
    cr_assert(e[0] == 0.0f && e[1] == 0.0f && e[2] > 0.0f && e[3] == 1.0f, "exp extremes at %s: %g %g %g %g",
              lode_cpu_level_name(level), e[0], e[1], e[2], e[3]);
    float gv[3] = {-200.0f, 200.0f, 0.0f}, uv[3] = {1.0f, 1.0f, 1.0f}, ov[3];
    lode_swiglu_f32(gv, uv, ov, 3);
    cr_assert(fabs(ov[0]) < 1e-30f && ov[1] == 200.0f && ov[2] == 0.0f, "silu extremes at %s: %g %g %g",
              lode_cpu_level_name(level), ov[0], ov[1], ov[2]);
    lode_quant_set_cpu_level((lode_cpu_level)-1);
}

Test(quant, softmax_pieces_scalar) { check_softmax_pieces_at_level(LODE_CPU_SCALAR); }
Test(quant, softmax_pieces_avx2) { check_softmax_pieces_at_level(LODE_CPU_AVX2); }
Test(quant, softmax_pieces_avx512) { check_softmax_pieces_at_level(LODE_CPU_AVX512); }
