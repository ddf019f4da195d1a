/*
 * quant.c — element types: f16/bf16 conversion, GGML-compatible block
 * dequantizers and reference quantizers, the scalar reference dot product,
 * and the row kernels (lode_matvec_rows / lode_matmul_rows) the matmuls call.
 *
 * Layouts live in quant_blocks.h. The dequantizers reproduce GGML's
 * dequantize_row_* results bit for bit: the same f32 operations in the same
 * order (this file must be built without FP contraction, which -std=c11
 * gives with GCC, and without -ffast-math).
 *
 * Row kernels: one scalar, one AVX2 (+FMA+F16C) and one AVX-512 version,
 * compiled with per-function target attributes and chosen at run time from
 * __builtin_cpu_supports/CPUID and the LODE_CPU environment variable. The
 * level is the only global state: an atomic written at first use (or by
 * lode_quant_set_cpu_level in tests). Per call:
 *   - matvec, and matmul on quantized weights with <= FUSED_MAX_TOK tokens:
 *     each row is decoded in registers and multiplied with up to 4 token
 *     vectors at once (no scratch);
 *   - larger matmuls: a tile of rows x 2048 columns is dequantized into a
 *     per-thread 256 KiB scratch (pthread key, freed at thread exit) and
 *     multiplied with every token by a register-blocked f32 kernel.
 * All results agree with lode_vec_dot_f32_ref to within 1e-5 of
 * sum|w_i * x_i| (only the summation order differs); the tile decoders are
 * bit-exact with to_f32.
 *
 * Threading: every function here is reentrant; kernels may run concurrently
 * on disjoint output rows.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lode_base.h"
#include "lode_quant.h"
#include "quant_blocks.h"

#if defined(__x86_64__) || defined(__i386__)
#define LODE_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define LODE_X86 0
#endif

// ---- f16 / bf16 ---------------------------------------------------------

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float lode_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1F;
    const uint32_t mant = h & 0x3FF;
    if (exp == 0) {
        /* Zero or subnormal: mant * 2^-24 is exact in f32. */
        const float v = (float)mant * 0x1p-24f;
        return bits_f32(sign | f32_bits(v));
    }
    if (exp == 31) return bits_f32(sign | 0x7F800000u | (mant << 13)); /* inf, NaN (payload kept) */
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

/* Round to nearest even, overflow to inf, subnormals kept, NaN stays NaN
 * (quiet, top payload bits kept). Matches the F16C instruction. */
uint16_t lode_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7FFFFFFFu;
    if (x >= 0x7F800000u) {
        if (x == 0x7F800000u) return sign | 0x7C00;
        return (uint16_t)(sign | 0x7E00 | ((x >> 13) & 0x3FF));
    }
    if (x >= 0x477FF000u) return sign | 0x7C00; /* >= 65520 rounds to inf */
    if (x < 0x38800000u) {
        /* Below 2^-14: the result is subnormal (or zero). Adding 0.5 makes
         * the FPU round the value to a multiple of 2^-24 in its low bits. */
        const float v = bits_f32(x) + 0.5f;
        return (uint16_t)(sign | (uint16_t)(f32_bits(v) - 0x3F000000u));
    }
    /* Normal: rebias the exponent and round the 13 dropped bits. */
    const uint32_t odd = (x >> 13) & 1;
    x += 0xC8000000u /* (15 - 127) << 23 */ + 0xFFF + odd;
    return (uint16_t)(sign | (x >> 13));
}

float lode_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t lode_f32_to_bf16(float f) {
    const uint32_t x = f32_bits(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    return (uint16_t)((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

// ---- dequantizers (bit-exact with GGML) --------------------------------
// These scalar versions are the reference: the scalar kernel level and
// lode_vec_dot_f32_ref use them. The public to_f32 in the type table runs
// the SIMD decoder of the current level, which is bit-exact with them.

static void f32_to_f32(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }

static void f16_to_f32_ref(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = lode_f16_to_f32(s[i]);
}

static void bf16_to_f32_ref(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = lode_bf16_to_f32(s[i]);
}

static void q8_0_to_f32_ref(const void *src, float *y, int64_t n) {
    const lode_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / LODE_QK8_0; i++, y += LODE_QK8_0) {
        const float d = lode_f16_to_f32(b[i].d);
        for (int j = 0; j < LODE_QK8_0; j++) y[j] = (float)b[i].qs[j] * d;
    }
}

static void q4_0_to_f32_ref(const void *src, float *y, int64_t n) {
    const lode_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / LODE_QK4_0; i++, y += LODE_QK4_0) {
        const float d = lode_f16_to_f32(b[i].d);
        for (int j = 0; j < LODE_QK4_0 / 2; j++) {
            y[j] = (float)((b[i].qs[j] & 0xF) - 8) * d;
            y[j + 16] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* Q4_1, Q5_0, Q5_1: x = d * q + m (Q5_0: m = -16 d). */
static void q4_1_to_f32_ref(const void *src, float *y, int64_t n) {
    const lode_block_q4_1 *b = src;
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        const float d = lode_f16_to_f32(b[i].d), m = lode_f16_to_f32(b[i].m);
        for (int e = 0; e < 32; e++) y[e] = (float)lode_q5_value(b[i].qs, NULL, e) * d + m;
    }
}

static void q5_0_to_f32_ref(const void *src, float *y, int64_t n) {
    const lode_block_q5_0 *b = src;
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        const float d = lode_f16_to_f32(b[i].d);
        for (int e = 0; e < 32; e++) y[e] = (float)(lode_q5_value(b[i].qs, b[i].qh, e) - 16) * d;
    }
}

static void q5_1_to_f32_ref(const void *src, float *y, int64_t n) {
    const lode_block_q5_1 *b = src;
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        const float d = lode_f16_to_f32(b[i].d), m = lode_f16_to_f32(b[i].m);
        for (int e = 0; e < 32; e++) y[e] = (float)lode_q5_value(b[i].qs, b[i].qh, e) * d + m;
    }
}

static void q4_k_to_f32_ref(const void *src, float *y, int64_t n) {
    const lode_block_q4_k *b = src;
    for (int64_t i = 0; i < n / LODE_QK_K; i++) {
        const float d = lode_f16_to_f32(b[i].d), dmin = lode_f16_to_f32(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int c = 0; c < 4; c++, q += 32) {
            uint8_t sc, m;
            lode_q4k_scale_min(2 * c, b[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            lode_q4k_scale_min(2 * c + 1, b[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

static void q5_k_to_f32_ref(const void *src, float *y, int64_t n) {
    const lode_block_q5_k *b = src;
    for (int64_t i = 0; i < n / LODE_QK_K; i++) {
        const float d = lode_f16_to_f32(b[i].d), dmin = lode_f16_to_f32(b[i].dmin);
        const uint8_t *ql = b[i].qs, *qh = b[i].qh;
        for (int c = 0; c < 4; c++, ql += 32) {
            uint8_t sc, m;
            lode_q4k_scale_min(2 * c, b[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            lode_q4k_scale_min(2 * c + 1, b[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            const uint8_t u1 = (uint8_t)(1u << (2 * c)), u2 = (uint8_t)(2u << (2 * c));
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

static void q6_k_to_f32_ref(const void *src, float *y, int64_t n) {
    const lode_block_q6_k *b = src;
    for (int64_t i = 0; i < n / LODE_QK_K; i++) {
        const float d = lode_f16_to_f32(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int h = 0; h < 2; h++, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

// ---- reference quantizers ----------------------------------------------
// Inputs must be finite. Q8_0 and Q4_0 follow GGML's reference quantizer
// exactly; the K-quants use lode's own scale search (below).

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* roundf (half away from zero) for |v| < 2^31 without a libm call: the
 * truncation is exact and so is v - trunc(v). */
static inline int iround(float v) {
    const int i = (int)v;
    const float f = v - (float)i;
    return f >= 0.5f ? i + 1 : f <= -0.5f ? i - 1 : i;
}

/* Grid of K-quant scale candidates: (nmax + 0.1 k) / range for k in
 * [QK_SEARCH_LO, QK_SEARCH_HI]. Measured on N(0,1) data: -2..8 matches
 * GGML's reference quantizer's error (q4_k 0.0727 vs 0.0726, q5_k 0.0377 vs
 * 0.0382 relative RMSE) at ~3x its speed; -4..12 gains 0.3% RMSE for 35%
 * more time. */
#define QK_SEARCH_LO (-2)
#define QK_SEARCH_HI 8

static void f32_from_f32(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }

static void f16_from_f32(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = lode_f32_to_f16(src[i]);
}

static void bf16_from_f32(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = lode_f32_to_bf16(src[i]);
}

static void q8_0_from_f32(const float *x, void *dst, int64_t n) {
    lode_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / LODE_QK8_0; i++, x += LODE_QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < LODE_QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = lode_f32_to_f16(d);
        for (int j = 0; j < LODE_QK8_0; j++) b[i].qs[j] = (int8_t)iround(x[j] * id);
    }
}

/* GGML's reference quantizers for Q4_1/Q5_1 (d = (max - min) / levels,
 * q = trunc((x - min) / d + 0.5)) and Q5_0 (the value of largest magnitude
 * maps to -16, q = trunc(x / d + 16.5) clamped to 31). */
static void minmax32(const float *x, float *mn, float *mx) {
    float a = x[0], b = x[0];
    for (int j = 1; j < 32; j++) a = x[j] < a ? x[j] : a, b = x[j] > b ? x[j] : b;
    *mn = a, *mx = b;
}

static void put_q5(uint8_t *qs, uint8_t *qh, const int *q) {
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
        h |= (uint32_t)((q[j] >> 4) & 1) << j | (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    if (qh) qh[0] = (uint8_t)h, qh[1] = (uint8_t)(h >> 8), qh[2] = (uint8_t)(h >> 16), qh[3] = (uint8_t)(h >> 24);
}

static void q4_1_from_f32(const float *x, void *dst, int64_t n) {
    lode_block_q4_1 *b = dst;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float mn, mx;
        minmax32(x, &mn, &mx);
        const float d = (mx - mn) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = lode_f32_to_f16(d);
        b[i].m = lode_f32_to_f16(mn);
        int q[32];
        for (int j = 0; j < 32; j++) {
            const int v = (int)(int8_t)((x[j] - mn) * id + 0.5f);
            q[j] = v > 15 ? 15 : v;
        }
        put_q5(b[i].qs, NULL, q);
    }
}

static void q5_0_from_f32(const float *x, void *dst, int64_t n) {
    lode_block_q5_0 *b = dst;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float amax = 0.0f, vmax = 0.0f;
        for (int j = 0; j < 32; j++)
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]), vmax = x[j];
        const float d = vmax / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = lode_f32_to_f16(d);
        int q[32];
        for (int j = 0; j < 32; j++) {
            const int v = (int)(int8_t)(x[j] * id + 16.5f);
            q[j] = v > 31 ? 31 : v;
        }
        put_q5(b[i].qs, b[i].qh, q);
    }
}

static void q5_1_from_f32(const float *x, void *dst, int64_t n) {
    lode_block_q5_1 *b = dst;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float mn, mx;
        minmax32(x, &mn, &mx);
        const float d = (mx - mn) / 31.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = lode_f32_to_f16(d);
        b[i].m = lode_f32_to_f16(mn);
        int q[32];
        for (int j = 0; j < 32; j++) q[j] = (int)(uint8_t)((x[j] - mn) * id + 0.5f);
        put_q5(b[i].qs, b[i].qh, q);
    }
}

static void q4_0_from_f32(const float *x, void *dst, int64_t n) {
    lode_block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / LODE_QK4_0; i++, x += LODE_QK4_0) {
        /* The signed value of largest magnitude maps to -8, so the extra
         * negative level is used. */
        float amax = 0.0f, vmax = 0.0f;
        for (int j = 0; j < LODE_QK4_0; j++)
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]), vmax = x[j];
        const float d = vmax / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = lode_f32_to_f16(d);
        for (int j = 0; j < 16; j++) {
            int q0 = (int)(int8_t)(x[j] * id + 8.5f), q1 = (int)(int8_t)(x[j + 16] * id + 8.5f);
            q0 = q0 > 15 ? 15 : q0;
            q1 = q1 > 15 ? 15 : q1;
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}


/* Least-squares x ~= a*L + b over n points from the sums of L, L^2, x,
 * L*x and x^2, with b <= 0 (K-quant mins are stored as a non-negative
 * amount to subtract). Returns the squared error, or INFINITY when the fit
 * would need a < 0. */
static double fit_affine_sums(int n, double sl, double sll, double sx, double slx, double sxx, float *pa,
                              float *pb) {
    const double D = n * sll - sl * sl;
    double a, b;
    if (D <= 0) { /* every L equal: only one of a, b is determined */
        if (sll > 0)
            a = slx / sll, b = 0;
        else
            a = 0, b = sx / n < 0 ? sx / n : 0;
    } else {
        a = (n * slx - sl * sx) / D, b = (sll * sx - sl * slx) / D;
        if (b > 0) b = 0, a = slx / sll;
    }
    if (a < 0) return INFINITY;
    *pa = (float)a, *pb = (float)b;
    const double err = sxx - 2 * a * slx - 2 * b * sx + a * a * sll + 2 * a * b * sl + n * b * b;
    return err < 0 ? 0 : err;
}

/* Scale/min search for one K-quant sub-block: x ~= a*L - m, L in [0, nmax],
 * a >= 0, m >= 0. Tries a few grid spacings around (max - min)/nmax, refits
 * a and m by least squares for each, then refines by requantizing against
 * the best fit. Per candidate only the sums involving L are recomputed
 * (integer sums are exact), which keeps this at ~100 ops per element. */
static void search_scale_min(const float *x, int n, int nmax, float *pa, float *pm) {
    float lo = x[0], hi = x[0], sx = 0, sxx = 0;
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
        sx += x[i], sxx += x[i] * x[i];
    }
    if (lo > 0) lo = 0;
    *pa = 0.0f, *pm = -lo;
    if (!(hi > lo)) return;
    double best = INFINITY;
    for (int k = QK_SEARCH_LO; k <= QK_SEARCH_HI; k++) {
        const float iscale = ((float)nmax + 0.1f * (float)k) / (hi - lo);
        int sl = 0, sll = 0;
        float slx = 0;
        for (int i = 0; i < n; i++) {
            int l = (int)((x[i] - lo) * iscale + 0.5f); /* argument >= 0: rounds half up */
            l = l > nmax ? nmax : l;
            sl += l, sll += l * l, slx += (float)l * x[i];
        }
        float a, b;
        const double err = fit_affine_sums(n, sl, sll, sx, slx, sxx, &a, &b);
        if (err < best) best = err, *pa = a, *pm = -b;
    }
    for (int it = 0; it < 3 && *pa > 0; it++) {
        const float inv = 1.0f / *pa;
        int sl = 0, sll = 0;
        float slx = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(iround((x[i] + *pm) * inv), 0, nmax);
            sl += l, sll += l * l, slx += (float)l * x[i];
        }
        float a, b;
        const double err = fit_affine_sums(n, sl, sll, sx, slx, sxx, &a, &b);
        if (!(err < best)) break;
        best = err, *pa = a, *pm = -b;
    }
}

/* Shared by Q4_K and Q5_K: pick 6-bit scales/mins for 8 sub-blocks of 32 and
 * the per-element levels L[256] in [0, nmax]. */
static void quantize_k_affine(const float *x, int nmax, uint16_t *hd, uint16_t *hdmin, uint8_t scales[12],
                              uint8_t L[LODE_QK_K]) {
    float a[8], m[8], amax = 0, mmax = 0;
    for (int j = 0; j < 8; j++) {
        search_scale_min(x + 32 * j, 32, nmax, &a[j], &m[j]);
        amax = fmaxf(amax, a[j]), mmax = fmaxf(mmax, m[j]);
    }
    *hd = lode_f32_to_f16(amax / 63.0f);
    *hdmin = lode_f32_to_f16(mmax / 63.0f);
    const float d = lode_f16_to_f32(*hd), dmin = lode_f16_to_f32(*hdmin);
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)(d > 0 ? clampi(iround(a[j] / d), 0, 63) : 0);
        lm[j] = (uint8_t)(dmin > 0 ? clampi(iround(m[j] / dmin), 0, 63) : 0);
    }
    memset(scales, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            scales[j] |= ls[j];
            scales[j + 4] |= lm[j];
        } else {
            scales[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            scales[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            scales[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
    for (int j = 0; j < 8; j++) {
        const float s = d * (float)ls[j], mn = dmin * (float)lm[j];
        const float is = s > 0 ? 1.0f / s : 0.0f;
        for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)clampi(iround((x[32 * j + l] + mn) * is), 0, nmax);
    }
}

static void q4_k_from_f32(const float *x, void *dst, int64_t n) {
    lode_block_q4_k *b = dst;
    uint8_t L[LODE_QK_K];
    for (int64_t i = 0; i < n / LODE_QK_K; i++, x += LODE_QK_K) {
        quantize_k_affine(x, 15, &b[i].d, &b[i].dmin, b[i].scales, L);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                b[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

static void q5_k_from_f32(const float *x, void *dst, int64_t n) {
    lode_block_q5_k *b = dst;
    uint8_t L[LODE_QK_K];
    for (int64_t i = 0; i < n / LODE_QK_K; i++, x += LODE_QK_K) {
        quantize_k_affine(x, 31, &b[i].d, &b[i].dmin, b[i].scales, L);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                const int q0 = L[64 * c + l], q1 = L[64 * c + 32 + l];
                b[i].qs[32 * c + l] = (uint8_t)((q0 & 0xF) | ((q1 & 0xF) << 4));
                b[i].qh[l] |= (uint8_t)(((q0 >> 4) << (2 * c)) | ((q1 >> 4) << (2 * c + 1)));
            }
    }
}

/* Symmetric search for one Q6_K sub-block: x ~= a*L, L in [-32, 31]. The
 * element of largest magnitude starts on level -32 (the extra level); grid
 * spacings around that are tried and a refit by least squares. */
static float search_scale_sym(const float *x, int n) {
    float amax = 0, vmax = 0, sxx = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), vmax = x[i];
        sxx += x[i] * x[i];
    }
    if (amax == 0) return 0;
    double best = INFINITY;
    float best_a = vmax / -32.0f;
    for (int k = -6; k <= 6; k++) {
        const float iscale = -(32.0f + 0.25f * (float)k) / vmax;
        int sll = 0;
        float slx = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(iround(x[i] * iscale), -32, 31);
            slx += (float)l * x[i], sll += l * l;
        }
        if (sll == 0) continue;
        const double err = (double)sxx - (double)slx * slx / sll;
        if (err < best) best = err, best_a = slx / (float)sll;
    }
    return best_a;
}

static void q6_k_from_f32(const float *x, void *dst, int64_t n) {
    lode_block_q6_k *b = dst;
    for (int64_t i = 0; i < n / LODE_QK_K; i++, x += LODE_QK_K) {
        float a[16], amax = 0, vmax = 0;
        for (int j = 0; j < 16; j++) {
            a[j] = search_scale_sym(x + 16 * j, 16);
            if (fabsf(a[j]) > amax) amax = fabsf(a[j]), vmax = a[j];
        }
        /* The largest sub-block scale maps to -128 (int8 has one more
         * negative level). */
        b[i].d = lode_f32_to_f16(vmax / -128.0f);
        const float d = lode_f16_to_f32(b[i].d);
        uint8_t L[LODE_QK_K];
        for (int j = 0; j < 16; j++) {
            const int ls = d != 0 ? clampi(iround(a[j] / d), -128, 127) : 0;
            b[i].scales[j] = (int8_t)ls;
            const float s = d * (float)ls, is = s != 0 ? 1.0f / s : 0.0f;
            for (int l = 0; l < 16; l++) L[16 * j + l] = (uint8_t)(32 + clampi(iround(x[16 * j + l] * is), -32, 31));
        }
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const int q1 = L[128 * h + l], q2 = L[128 * h + l + 32];
                const int q3 = L[128 * h + l + 64], q4 = L[128 * h + l + 96];
                b[i].ql[64 * h + l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
                b[i].ql[64 * h + l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
                b[i].qh[32 * h + l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
    }
}

// ---- type table ---------------------------------------------------------

static void deq_dispatch(lode_type t, const void *src, float *dst, int64_t n);

#define LODE__TO_F32(name, T) \
    static void name##_to_f32(const void *src, float *dst, int64_t n) { deq_dispatch(T, src, dst, n); }
LODE__TO_F32(f16, LODE_TYPE_F16)
LODE__TO_F32(bf16, LODE_TYPE_BF16)
LODE__TO_F32(q8_0, LODE_TYPE_Q8_0)
LODE__TO_F32(q4_0, LODE_TYPE_Q4_0)
LODE__TO_F32(q4_k, LODE_TYPE_Q4_K)
LODE__TO_F32(q5_k, LODE_TYPE_Q5_K)
LODE__TO_F32(q6_k, LODE_TYPE_Q6_K)
LODE__TO_F32(q4_1, LODE_TYPE_Q4_1)
LODE__TO_F32(q5_0, LODE_TYPE_Q5_0)
LODE__TO_F32(q5_1, LODE_TYPE_Q5_1)
#undef LODE__TO_F32

typedef void (*to_f32_fn)(const void *src, float *dst, int64_t n);
static const to_f32_fn k_ref_to_f32[LODE_TYPE_COUNT] = {
    [LODE_TYPE_F32] = f32_to_f32,          [LODE_TYPE_F16] = f16_to_f32_ref,   [LODE_TYPE_BF16] = bf16_to_f32_ref,
    [LODE_TYPE_Q8_0] = q8_0_to_f32_ref,    [LODE_TYPE_Q4_0] = q4_0_to_f32_ref, [LODE_TYPE_Q4_K] = q4_k_to_f32_ref,
    [LODE_TYPE_Q5_K] = q5_k_to_f32_ref,    [LODE_TYPE_Q6_K] = q6_k_to_f32_ref, [LODE_TYPE_Q4_1] = q4_1_to_f32_ref,
    [LODE_TYPE_Q5_0] = q5_0_to_f32_ref,    [LODE_TYPE_Q5_1] = q5_1_to_f32_ref,
};

static const lode_type_traits k_traits[LODE_TYPE_COUNT] = {
    [LODE_TYPE_F32] = {"f32", 1, 4, false, f32_to_f32, f32_from_f32},
    [LODE_TYPE_F16] = {"f16", 1, 2, false, f16_to_f32, f16_from_f32},
    [LODE_TYPE_BF16] = {"bf16", 1, 2, false, bf16_to_f32, bf16_from_f32},
    [LODE_TYPE_Q8_0] = {"q8_0", LODE_QK8_0, sizeof(lode_block_q8_0), true, q8_0_to_f32, q8_0_from_f32},
    [LODE_TYPE_Q4_0] = {"q4_0", LODE_QK4_0, sizeof(lode_block_q4_0), true, q4_0_to_f32, q4_0_from_f32},
    [LODE_TYPE_Q4_K] = {"q4_k", LODE_QK_K, sizeof(lode_block_q4_k), true, q4_k_to_f32, q4_k_from_f32},
    [LODE_TYPE_Q5_K] = {"q5_k", LODE_QK_K, sizeof(lode_block_q5_k), true, q5_k_to_f32, q5_k_from_f32},
    [LODE_TYPE_Q6_K] = {"q6_k", LODE_QK_K, sizeof(lode_block_q6_k), true, q6_k_to_f32, q6_k_from_f32},
    /* llama.cpp's fallbacks for rows that are not a multiple of 256 (Lite's
     * 1408-wide expert down projections: Q4_K -> Q5_0, Q5_K -> Q5_1);
     * AVX-512 decoders (the scalar reference below that level), and the
     * int8 path (quant_int8.c's reference, quant_r16.c's VNNI kernels). */
    [LODE_TYPE_Q4_1] = {"q4_1", 32, sizeof(lode_block_q4_1), true, q4_1_to_f32, q4_1_from_f32},
    [LODE_TYPE_Q5_0] = {"q5_0", 32, sizeof(lode_block_q5_0), true, q5_0_to_f32, q5_0_from_f32},
    [LODE_TYPE_Q5_1] = {"q5_1", 32, sizeof(lode_block_q5_1), true, q5_1_to_f32, q5_1_from_f32},
};

/* Names of every GGML type id, supported or not (for messages). */
static const char *const k_names[LODE_TYPE_COUNT] = {
    [0] = "f32",      [1] = "f16",     [2] = "q4_0",    [3] = "q4_1",    [6] = "q5_0",    [7] = "q5_1",
    [8] = "q8_0",     [9] = "q8_1",    [10] = "q2_k",   [11] = "q3_k",   [12] = "q4_k",   [13] = "q5_k",
    [14] = "q6_k",    [15] = "q8_k",   [16] = "iq2_xxs", [17] = "iq2_xs", [18] = "iq3_xxs", [19] = "iq1_s",
    [20] = "iq4_nl",  [21] = "iq3_s",  [22] = "iq2_s",  [23] = "iq4_xs", [24] = "i8",     [25] = "i16",
    [26] = "i32",     [27] = "i64",    [28] = "f64",    [29] = "iq1_m",  [30] = "bf16",   [34] = "tq1_0",
    [35] = "tq2_0",   [39] = "mxfp4",
};

const lode_type_traits *lode_type_get(lode_type t) {
    if ((unsigned)t >= LODE_TYPE_COUNT || !k_traits[t].name) return NULL;
    return &k_traits[t];
}

const char *lode_type_name(lode_type t) {
    static _Thread_local char buf[32];
    if ((unsigned)t < LODE_TYPE_COUNT && k_names[t]) return k_names[t];
    snprintf(buf, sizeof buf, "unknown(%d)", (int)t);
    return buf;
}

int lode_type_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < LODE_TYPE_COUNT; i++)
        if (k_names[i] && strcasecmp(k_names[i], name) == 0) return i;
    return -1;
}

size_t lode_row_size(lode_type t, int64_t n) {
    const lode_type_traits *tr = lode_type_get(t);
    if (!tr || n < 0 || n % tr->block_size) return 0;
    return (size_t)(n / tr->block_size) * tr->type_size;
}

// ---- reference dot --------------------------------------------------------

/* Dequantizes block by block (the exact f32 weights) and accumulates the
 * f32 products in double, so the oracle is more accurate than any kernel it
 * checks. */
float lode_vec_dot_f32_ref(lode_type t, const void *row, const float *x, int64_t n) {
    const lode_type_traits *tr = lode_type_get(t);
    LODE_ASSERT(tr && n % tr->block_size == 0);
    const int64_t chunk = tr->block_size == 1 ? 256 : tr->block_size;
    const size_t chunk_bytes = (size_t)(chunk / tr->block_size) * tr->type_size;
    float w[LODE_QK_K];
    double acc = 0;
    int64_t i = 0;
    for (const char *p = row; i < n; i += chunk, p += chunk_bytes) {
        const int64_t m = n - i < chunk ? n - i : chunk;
        k_ref_to_f32[t](p, w, m);
        for (int64_t j = 0; j < m; j++) acc += (double)w[j] * (double)x[i + j];
    }
    return (float)acc;
}

// ---- row kernels: shared driver -------------------------------------------

/* One instruction-set level: a fused dequantize+dot of one row with nt
 * (1..4) token vectors x + t*ldx (results in out[t]), a row
 * dequantizer into f32 (to fill matmul tiles), and an f32 tile product
 * Y[t][r] (+)= dot(Wt[r], X[t]) over k columns. */
typedef struct kernel_set {
    void (*dotn)(lode_type t, const void *row, const float *x, int64_t ldx, int64_t n, int nt, float *out);
    void (*deq)(lode_type t, const void *row, float *dst, int64_t n);
    void (*gemm)(const float *Wt, int64_t ldw, int64_t nr, const float *X, int64_t ldx, int64_t nt, float *Y,
                 int64_t ldy, int64_t k, bool accumulate);
} kernel_set;

/* Scalar level: 8 independent f32 lanes so the compiler can keep them in
 * SSE registers; weights are dequantized one block (<= 256) at a time. */
static float dot_f32_scalar(const float *w, const float *x, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += w[i + j] * x[i + j];
    for (; i < n; i++) acc[0] += w[i] * x[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static float dot_scalar(lode_type t, const void *row, const float *x, int64_t n) {
    if (t == LODE_TYPE_F32) return dot_f32_scalar(row, x, n);
    const lode_type_traits *tr = &k_traits[t];
    const int64_t chunk = tr->block_size == 1 ? 256 : tr->block_size;
    const size_t chunk_bytes = (size_t)(chunk / tr->block_size) * tr->type_size;
    float w[LODE_QK_K];
    float acc = 0;
    int64_t i = 0;
    for (const char *p = row; i < n; i += chunk, p += chunk_bytes) {
        const int64_t m = n - i < chunk ? n - i : chunk;
        k_ref_to_f32[t](p, w, m);
        acc += dot_f32_scalar(w, x + i, m);
    }
    return acc;
}

static void dotn_scalar(lode_type t, const void *row, const float *x, int64_t ldx, int64_t n, int nt, float *out) {
    for (int i = 0; i < nt; i++) out[i] = dot_scalar(t, row, x + i * ldx, n);
}

static void deq_scalar(lode_type t, const void *row, float *dst, int64_t n) { k_ref_to_f32[t](row, dst, n); }

static void gemm_scalar(const float *Wt, int64_t ldw, int64_t nr, const float *X, int64_t ldx, int64_t nt,
                        float *Y, int64_t ldy, int64_t k, bool accumulate) {
    for (int64_t t = 0; t < nt; t++)
        for (int64_t r = 0; r < nr; r++) {
            const float v = dot_f32_scalar(Wt + r * ldw, X + t * ldx, k);
            Y[t * ldy + r] = accumulate ? Y[t * ldy + r] + v : v;
        }
}

static const kernel_set k_scalar = {dotn_scalar, deq_scalar, gemm_scalar};

// ---- AVX-512 level ---------------------------------------------------------
// Each block decoder is written once per type and used in two modes: dot
// (fused dequantize + FMA with 1..4 token vectors, for matvec and small
// matmuls) and store (dequantize into a matmul tile). `dot` is the token
// count (0 = store) and a compile-time constant after inlining. In store
// mode the f32 operations are GGML's (bit-exact); in dot mode K-quant
// weights use one fused multiply-subtract.

#if LODE_X86
#define TGT512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define AI512 static inline __attribute__((always_inline)) TGT512

/* `dot` is the number of tokens (1..4; 0 = store mode). Accumulator for
 * token t and stream k (0..3): 4 streams for one token, 2 each for two, one
 * each for three or four. */
#define ACCI(t, k) (dot == 1 ? (k) : dot == 2 ? 2 * (t) + ((k) & 1) : (t))

#define SINK512(k, w, off)                                                                      \
    do {                                                                                        \
        const __m512 w_ = (w);                                                                  \
        if (dot) {                                                                              \
            _Pragma("GCC unroll 4") for (int t_ = 0; t_ < dot; t_++) acc[ACCI(t_, k)] =         \
                _mm512_fmadd_ps(w_, _mm512_loadu_ps(x + t_ * ldx + (off)), acc[ACCI(t_, k)]);   \
        } else {                                                                                \
            _mm512_storeu_ps(dst + (off), w_);                                                  \
        }                                                                                       \
    } while (0)

AI512 __m512i ld_u8x16(const uint8_t *p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)); }

/* Horizontal sums of the accumulators into out[0 .. dot-1]. */
AI512 void finish512(const __m512 *acc, float *out, const int dot) {
    if (dot == 1)
        out[0] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
    else if (dot == 2)
        out[0] = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1])),
        out[1] = _mm512_reduce_add_ps(_mm512_add_ps(acc[2], acc[3]));
    else
        for (int t = 0; t < dot; t++) out[t] = _mm512_reduce_add_ps(acc[t]);
}

AI512 void q8_0_block512(const lode_block_q8_0 *b, const float *x, int64_t ldx, float *dst, __m512 *acc, const int kb,
                          const int dot) {
    const __m512 d = _mm512_set1_ps(_cvtsh_ss(b->d));
    const __m512i q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b->qs));
    const __m512i q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b->qs + 16)));
    SINK512(kb, _mm512_mul_ps(_mm512_cvtepi32_ps(q0), d), 0);
    SINK512(kb + 1, _mm512_mul_ps(_mm512_cvtepi32_ps(q1), d), 16);
}

AI512 void row_q8_0_512(const void *src, int64_t n, const float *x, int64_t ldx, float *dst, float *out,
                        const int dot) {
    const lode_block_q8_0 *b = src;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    const int64_t nb = n / LODE_QK8_0;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        q8_0_block512(b + i, x + (dot ? 32 * i : 0), ldx, dst + (dot ? 0 : 32 * i), acc, 0, dot);
        q8_0_block512(b + i + 1, x + (dot ? 32 * i + 32 : 0), ldx, dst + (dot ? 0 : 32 * i + 32), acc, 2, dot);
    }
    if (i < nb) q8_0_block512(b + i, x + (dot ? 32 * i : 0), ldx, dst + (dot ? 0 : 32 * i), acc, 0, dot);
    if (dot) finish512(acc, out, dot);
}

/* 4-bit formats decode through a 16-entry table of finished weights per
 * scale (vpermps uses the low 4 bits of each lane as the index), so one
 * permute replaces mask + convert + scale. */
AI512 __m512 iota512(void) {
    return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

AI512 void q4_0_block512(const lode_block_q4_0 *b, const float *x, int64_t ldx, float *dst, __m512 *acc, const int kb,
                          const int dot) {
    /* (q - 8) * d for q = 0..15, exactly GGML's arithmetic. */
    const __m512 tab = _mm512_mul_ps(_mm512_sub_ps(iota512(), _mm512_set1_ps(8.0f)), _mm512_set1_ps(_cvtsh_ss(b->d)));
    const __m512i v = ld_u8x16(b->qs);
    SINK512(kb, _mm512_permutexvar_ps(v, tab), 0);
    SINK512(kb + 1, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tab), 16);
}

AI512 void row_q4_0_512(const void *src, int64_t n, const float *x, int64_t ldx, float *dst, float *out,
                        const int dot) {
    const lode_block_q4_0 *b = src;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    const int64_t nb = n / LODE_QK4_0;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        q4_0_block512(b + i, x + (dot ? 32 * i : 0), ldx, dst + (dot ? 0 : 32 * i), acc, 0, dot);
        q4_0_block512(b + i + 1, x + (dot ? 32 * i + 32 : 0), ldx, dst + (dot ? 0 : 32 * i + 32), acc, 2, dot);
    }
    if (i < nb) q4_0_block512(b + i, x + (dot ? 32 * i : 0), ldx, dst + (dot ? 0 : 32 * i), acc, 0, dot);
    if (dot) finish512(acc, out, dot);
}

/* Q4_1 / Q5_0 / Q5_1: q (0..15 / 0..31) from the nibbles and the fifth
 * bits (bit j of qh for element j), then GGML's arithmetic: (q - 16) * d,
 * or q * d + m as a product and a sum (not fused), as the reference. */
AI512 void q5x_block512(lode_type t, const uint8_t *blk, const float *x, int64_t ldx, float *dst, __m512 *acc,
                        const int kb, const int dot) {
    uint16_t dh, mh = 0;
    memcpy(&dh, blk, 2);
    const bool five = t != LODE_TYPE_Q4_1, min = t != LODE_TYPE_Q5_0;
    if (min) memcpy(&mh, blk + 2, 2);
    const uint8_t *qh = blk + (min ? 4 : 2), *qs = five ? qh + 4 : qh;
    const __m512i v = ld_u8x16(qs), m15 = _mm512_set1_epi32(15);
    __m512i q0 = _mm512_and_si512(v, m15), q1 = _mm512_srli_epi32(v, 4);
    if (five) {
        uint32_t h;
        memcpy(&h, qh, 4);
        const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        const __m512i one = _mm512_set1_epi32(1);
        q0 = _mm512_or_si512(q0, _mm512_slli_epi32(_mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32((int)h), lane), one), 4));
        q1 = _mm512_or_si512(q1, _mm512_slli_epi32(_mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32((int)(h >> 16)), lane), one), 4));
    }
    const __m512 d = _mm512_set1_ps(_cvtsh_ss(dh));
    __m512 w0, w1;
    if (min) {
        const __m512 m = _mm512_set1_ps(_cvtsh_ss(mh));
        w0 = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(q0), d), m);
        w1 = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(q1), d), m);
    } else {
        const __m512i o = _mm512_set1_epi32(16);
        w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q0, o)), d);
        w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q1, o)), d);
    }
    SINK512(kb, w0, 0);
    SINK512(kb + 1, w1, 16);
}

AI512 void row_q5x_512(lode_type t, const void *src, int64_t n, const float *x, int64_t ldx, float *dst, float *out,
                       const int dot) {
    const uint8_t *b = src;
    const size_t bs = lode_type_get(t)->type_size;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    const int64_t nb = n / 32;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        q5x_block512(t, b + (size_t)i * bs, x + (dot ? 32 * i : 0), ldx, dst + (dot ? 0 : 32 * i), acc, 0, dot);
        q5x_block512(t, b + (size_t)(i + 1) * bs, x + (dot ? 32 * i + 32 : 0), ldx, dst + (dot ? 0 : 32 * i + 32), acc,
                     2, dot);
    }
    if (i < nb) q5x_block512(t, b + (size_t)i * bs, x + (dot ? 32 * i : 0), ldx, dst + (dot ? 0 : 32 * i), acc, 0, dot);
    if (dot) finish512(acc, out, dot);
}

/* Table of K-quant weights d1*q - m1 for q = io: fused in dot mode, GGML's
 * two roundings when storing. */
AI512 __m512 kq_tab512(__m512 io, __m512 d1, __m512 m1, const int dot) {
    return dot ? _mm512_fmsub_ps(io, d1, m1) : _mm512_sub_ps(_mm512_mul_ps(io, d1), m1);
}

/* All 8 scales and 8 mins of a Q4_K/Q5_K block at once: the
 * get_scale_min_k4 rule applied to 32-bit words (4 sub-blocks per word),
 * then ds[j] = d*sc[j] and ds[8 + j] = dmin*m[j] with one vector multiply
 * (the same single f32 product as GGML's d * sc). */
AI512 void kq_scales512(const uint8_t *scales, float d, float dmin, float ds[16]) {
    uint32_t a, b, c;
    memcpy(&a, scales, 4);
    memcpy(&b, scales + 4, 4);
    memcpy(&c, scales + 8, 4);
    const __m128i sm = _mm_setr_epi32((int)(a & 0x3F3F3F3Fu), (int)((c & 0x0F0F0F0Fu) | ((a >> 2) & 0x30303030u)),
                                      (int)(b & 0x3F3F3F3Fu), (int)(((c >> 4) & 0x0F0F0F0Fu) | ((b >> 2) & 0x30303030u)));
    const __m512 dd = _mm512_insertf32x8(_mm512_set1_ps(d), _mm256_set1_ps(dmin), 1);
    _mm512_storeu_ps(ds, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(sm)), dd));
}

/* Q4_K and Q5_K share everything but the fifth bit (qh == NULL for Q4_K).
 * Weights come from tables d1*q - m1: 16 entries for Q4_K (vpermps), 32 for
 * Q5_K (vpermt2ps, index = low nibble | fifth bit << 4). */
AI512 void kq_block512(const uint8_t *scales, float d, float dmin, const uint8_t *qs, const uint8_t *qh,
                       const float *x, int64_t ldx, float *dst, __m512 *acc, const int dot) {
    float ds[16];
    kq_scales512(scales, d, dmin, ds);
    const __m512 io = iota512(), io16 = _mm512_add_ps(iota512(), _mm512_set1_ps(16.0f));
    const __m512i m4 = _mm512_set1_epi32(0xF);
    __m512i h0 = _mm512_setzero_si512(), h1 = _mm512_setzero_si512();
    if (qh) h0 = ld_u8x16(qh), h1 = ld_u8x16(qh + 16);
#pragma GCC unroll 4
    for (int c4 = 0; c4 < 4; c4++) {
        const __m512 d1 = _mm512_set1_ps(ds[2 * c4]), m1 = _mm512_set1_ps(ds[8 + 2 * c4]);
        const __m512 d2 = _mm512_set1_ps(ds[2 * c4 + 1]), m2 = _mm512_set1_ps(ds[9 + 2 * c4]);
        const __m512 t1 = kq_tab512(io, d1, m1, dot), t2 = kq_tab512(io, d2, m2, dot);
        __m512 t1h = t1, t2h = t2;
        if (qh) t1h = kq_tab512(io16, d1, m1, dot), t2h = kq_tab512(io16, d2, m2, dot);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i v = ld_u8x16(qs + 32 * c4 + 16 * h);
            const __m512i vh = _mm512_srli_epi32(v, 4);
            __m512 wlo, whi;
            if (qh) {
                /* Move qh bit 2c (2c+1) to bit 4 and take bits 0-3 from the
                 * nibble: bit-select with m4 (0xD8 = C ? B : A). */
                const __m512i hb = h ? h1 : h0;
                const __m512i slo = 2 * c4 <= 4 ? _mm512_slli_epi32(hb, 4 - 2 * c4) : _mm512_srli_epi32(hb, 2 * c4 - 4);
                const __m512i shi = 2 * c4 + 1 <= 4 ? _mm512_slli_epi32(hb, 3 - 2 * c4) : _mm512_srli_epi32(hb, 2 * c4 - 3);
                wlo = _mm512_permutex2var_ps(t1, _mm512_ternarylogic_epi32(slo, v, m4, 0xD8), t1h);
                whi = _mm512_permutex2var_ps(t2, _mm512_ternarylogic_epi32(shi, vh, m4, 0xD8), t2h);
            } else {
                wlo = _mm512_permutexvar_ps(v, t1);
                whi = _mm512_permutexvar_ps(vh, t2);
            }
            SINK512(h, wlo, 64 * c4 + 16 * h);
            SINK512(2 + h, whi, 64 * c4 + 32 + 16 * h);
        }
    }
}

AI512 void row_q4_k_512(const void *src, int64_t n, const float *x, int64_t ldx, float *dst, float *out,
                        const int dot) {
    const lode_block_q4_k *b = src;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int64_t i = 0; i < n / LODE_QK_K; i++)
        kq_block512(b[i].scales, _cvtsh_ss(b[i].d), _cvtsh_ss(b[i].dmin), b[i].qs, NULL, dot ? x + 256 * i : x, ldx,
                    dot ? dst : dst + 256 * i, acc, dot);
    if (dot) finish512(acc, out, dot);
}

AI512 void row_q5_k_512(const void *src, int64_t n, const float *x, int64_t ldx, float *dst, float *out,
                        const int dot) {
    const lode_block_q5_k *b = src;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int64_t i = 0; i < n / LODE_QK_K; i++)
        kq_block512(b[i].scales, _cvtsh_ss(b[i].d), _cvtsh_ss(b[i].dmin), b[i].qs, b[i].qh,
                    dot ? x + 256 * i : x, ldx, dot ? dst : dst + 256 * i, acc, dot);
    if (dot) finish512(acc, out, dot);
}

/* Q6_K: the six-bit values of a 128-element half are assembled as bytes, 64
 * at a time in element order (low nibbles of ql + qh bit pairs shifted to
 * bits 4-5: 4/2 positions left for the first/second 32 elements, 0/2 right
 * for the next two groups), made signed (q - 32), then widened 16 at a
 * time; (q - 32) * (d * sc) is GGML's arithmetic bit for bit. */
AI512 void row_q6_k_512(const void *src, int64_t n, const float *x, int64_t ldx, float *dst, float *out,
                        const int dot) {
    const lode_block_q6_k *b = src;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    const __m512i m0f = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i cnt_lo = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i cnt_hi = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i c32 = _mm512_set1_epi8(32);
    _Alignas(64) int8_t qb[128];
    _Alignas(64) float ds[16];
    for (int64_t i = 0; i < n / LODE_QK_K; i++) {
        const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b[i].scales)));
        _mm512_store_ps(ds, _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(b[i].d)), sc));
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i ql = _mm512_loadu_si512(b[i].ql + 64 * h);
            const __m512i hh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b[i].qh + 32 * h)));
            const __m512i tlo = _mm512_and_si512(_mm512_sllv_epi16(hh, cnt_lo), m30);
            const __m512i thi = _mm512_and_si512(_mm512_srlv_epi16(hh, cnt_hi), m30);
            /* 0xE4: C ? A : B with C = 0x0F, i.e. low nibble from ql. */
            _mm512_store_si512(qb, _mm512_sub_epi8(_mm512_ternarylogic_epi32(ql, tlo, m0f, 0xE4), c32));
            _mm512_store_si512(qb + 64,
                               _mm512_sub_epi8(_mm512_ternarylogic_epi32(_mm512_srli_epi16(ql, 4), thi, m0f, 0xE4), c32));
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                const __m512i q = _mm512_cvtepi8_epi32(_mm_load_si128((const __m128i *)(qb + 16 * j)));
                const __m512 w = _mm512_mul_ps(_mm512_cvtepi32_ps(q), _mm512_set1_ps(ds[8 * h + j]));
                SINK512(j & 3, w, 256 * i + 128 * h + 16 * j);
            }
        }
    }
    if (dot) finish512(acc, out, dot);
}

/* Float types: 16 elements per step, masked tail. kind 0 = f32, 1 = f16,
 * 2 = bf16. */
AI512 __m512 ld_float512(const void *src, int64_t i, int kind) {
    if (kind == 0) return _mm512_loadu_ps((const float *)src + i);
    const __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)src + i));
    if (kind == 1) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AI512 __m512 ld_float512_tail(const void *src, int64_t i, __mmask16 k, int kind) {
    if (kind == 0) return _mm512_maskz_loadu_ps(k, (const float *)src + i);
    const __m256i h = _mm256_maskz_loadu_epi16(k, (const uint16_t *)src + i);
    if (kind == 1) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AI512 void row_float512(const void *src, int64_t n, const float *x, int64_t ldx, float *dst, float *out, const int dot,
                        int kind) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) SINK512(k, ld_float512(src, i + 16 * k, kind), i + 16 * k);
    }
    for (; i + 16 <= n; i += 16) SINK512(0, ld_float512(src, i, kind), i);
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        const __m512 w = ld_float512_tail(src, i, k, kind);
        if (dot) {
            for (int t = 0; t < dot; t++)
                acc[ACCI(t, 1)] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(k, x + t * ldx + i), acc[ACCI(t, 1)]);
        } else {
            _mm512_mask_storeu_ps(dst + i, k, w);
        }
    }
    if (dot) finish512(acc, out, dot);
}

/* Fused dequantize + dot of one row against nt (1..4) token vectors. */
#define DOTN_CASES(SUF, NT)                                                                 \
    switch (t) {                                                                            \
    case LODE_TYPE_F32: row_float##SUF(row, n, x, ldx, NULL, out, NT, 0); return;           \
    case LODE_TYPE_F16: row_float##SUF(row, n, x, ldx, NULL, out, NT, 1); return;           \
    case LODE_TYPE_BF16: row_float##SUF(row, n, x, ldx, NULL, out, NT, 2); return;          \
    case LODE_TYPE_Q8_0: row_q8_0_##SUF(row, n, x, ldx, NULL, out, NT); return;             \
    case LODE_TYPE_Q4_0: row_q4_0_##SUF(row, n, x, ldx, NULL, out, NT); return;             \
    case LODE_TYPE_Q4_K: row_q4_k_##SUF(row, n, x, ldx, NULL, out, NT); return;             \
    case LODE_TYPE_Q5_K: row_q5_k_##SUF(row, n, x, ldx, NULL, out, NT); return;             \
    case LODE_TYPE_Q6_K: row_q6_k_##SUF(row, n, x, ldx, NULL, out, NT); return;             \
    default: break;                                                                         \
    }

static TGT512 void dotn_avx512(lode_type t, const void *row, const float *x, int64_t ldx, int64_t n, int nt,
                               float *out) {
    if (t == LODE_TYPE_Q4_1 || t == LODE_TYPE_Q5_0 || t == LODE_TYPE_Q5_1) {
        switch (nt) {
        case 1: row_q5x_512(t, row, n, x, ldx, NULL, out, 1); return;
        case 2: row_q5x_512(t, row, n, x, ldx, NULL, out, 2); return;
        case 3: row_q5x_512(t, row, n, x, ldx, NULL, out, 3); return;
        case 4: row_q5x_512(t, row, n, x, ldx, NULL, out, 4); return;
        default: break;
        }
    }
    switch (nt) {
    case 1: DOTN_CASES(512, 1) break;
    case 2: DOTN_CASES(512, 2) break;
    case 3: DOTN_CASES(512, 3) break;
    case 4: DOTN_CASES(512, 4) break;
    default: break;
    }
    dotn_scalar(t, row, x, ldx, n, nt, out);
}

static TGT512 void deq_avx512(lode_type t, const void *row, float *dst, int64_t n) {
    switch (t) {
    case LODE_TYPE_F32: row_float512(row, n, NULL, 0, dst, NULL, 0, 0); break;
    case LODE_TYPE_F16: row_float512(row, n, NULL, 0, dst, NULL, 0, 1); break;
    case LODE_TYPE_BF16: row_float512(row, n, NULL, 0, dst, NULL, 0, 2); break;
    case LODE_TYPE_Q8_0: row_q8_0_512(row, n, NULL, 0, dst, NULL, 0); break;
    case LODE_TYPE_Q4_0: row_q4_0_512(row, n, NULL, 0, dst, NULL, 0); break;
    case LODE_TYPE_Q4_1:
    case LODE_TYPE_Q5_0:
    case LODE_TYPE_Q5_1: row_q5x_512(t, row, n, NULL, 0, dst, NULL, 0); break;
    case LODE_TYPE_Q4_K: row_q4_k_512(row, n, NULL, 0, dst, NULL, 0); break;
    case LODE_TYPE_Q5_K: row_q5_k_512(row, n, NULL, 0, dst, NULL, 0); break;
    case LODE_TYPE_Q6_K: row_q6_k_512(row, n, NULL, 0, dst, NULL, 0); break;
    default: deq_scalar(t, row, dst, n); break;
    }
}

/* Lane i of the result = the sum of v[i]'s 16 lanes: a transposing tree
 * (15 adds, 30 shuffles) instead of 16 separate reductions (128 ops). */
AI512 __m512 hsum16_512(const __m512 v[16]) {
    __m512 a[8], b[4], c[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) /* 128-bit lane: (v2i, v2i+1, v2i, v2i+1) partials */
        a[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) { /* 128-bit lane: v4i .. v4i+3 partials */
        const __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);
        b[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) /* lanes: v8i..+3 (two halves), v8i+4..+7 (two halves) */
        c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88), _mm512_shuffle_f32x4(c[0], c[1], 0xDD));
}

/* Register-blocked f32 tile product: RB rows x TB tokens of accumulators,
 * each 16 wide, summed horizontally at the end. */
AI512 void gemm_block512(const float *Wt, int64_t ldw, const float *X, int64_t ldx, float *Y, int64_t ldy,
                         int64_t k, bool accumulate, const float *pf, int64_t pfstride, int npf, const int RB,
                         const int TB) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int t = 0; t < TB; t++) acc[r][t] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        for (int q = 0; q < npf; q++) _mm_prefetch((const char *)(pf + q * pfstride + i), _MM_HINT_T0);
        __m512 xv[4];
#pragma GCC unroll 4
        for (int t = 0; t < TB; t++) xv[t] = _mm512_loadu_ps(X + t * ldx + i);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const __m512 w = _mm512_loadu_ps(Wt + r * ldw + i);
#pragma GCC unroll 4
            for (int t = 0; t < TB; t++) acc[r][t] = _mm512_fmadd_ps(w, xv[t], acc[r][t]);
        }
    }
    if (i < k) {
        const __mmask16 m = (__mmask16)((1u << (k - i)) - 1);
        __m512 xv[4];
#pragma GCC unroll 4
        for (int t = 0; t < TB; t++) xv[t] = _mm512_maskz_loadu_ps(m, X + t * ldx + i);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const __m512 w = _mm512_maskz_loadu_ps(m, Wt + r * ldw + i);
#pragma GCC unroll 4
            for (int t = 0; t < TB; t++) acc[r][t] = _mm512_fmadd_ps(w, xv[t], acc[r][t]);
        }
    }
    if (RB == 4 && TB == 4) {
        /* the 16 sums at once: lane 4t + r of s is acc[r][t]'s sum */
        __m512 v[16];
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++)
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) v[4 * t + r] = acc[r][t];
        const __m512 s = hsum16_512(v);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            __m128 q = _mm512_extractf32x4_ps(s, 0);
            if (t == 1) q = _mm512_extractf32x4_ps(s, 1);
            if (t == 2) q = _mm512_extractf32x4_ps(s, 2);
            if (t == 3) q = _mm512_extractf32x4_ps(s, 3);
            if (accumulate) q = _mm_add_ps(q, _mm_loadu_ps(Y + t * ldy));
            _mm_storeu_ps(Y + t * ldy, q);
        }
        return;
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int t = 0; t < TB; t++) {
            const float v = _mm512_reduce_add_ps(acc[r][t]);
            Y[t * ldy + r] = accumulate ? Y[t * ldy + r] + v : v;
        }
}

/* pf: rows that the block of tokens t0..t0+3 prefetches while it runs
 * (pf + (t0 / 4) * ldw, then every (number of token blocks) rows, below
 * pf_rows), or NULL. */
static TGT512 void gemm_panel512(const float *Wt, int64_t ldw, int64_t nr, const float *X, int64_t ldx, int64_t nt,
                                 float *Y, int64_t ldy, int64_t k, bool accumulate, const float *pf, int64_t pf_rows) {
    const int64_t nblk = (nt + 3) / 4;
    int64_t t = 0;
    for (; t + 4 <= nt; t += 4) {
        const int64_t q = t / 4;
        const int npf = pf && q < pf_rows ? (int)((pf_rows - q + nblk - 1) / nblk) : 0;
        const float *pq = pf ? pf + q * ldw : NULL;
        int64_t r = 0;
        for (; r + 4 <= nr; r += 4)
            gemm_block512(Wt + r * ldw, ldw, X + t * ldx, ldx, Y + t * ldy + r, ldy, k, accumulate, pq, nblk * ldw, npf, 4, 4);
        for (; r < nr; r++)
            gemm_block512(Wt + r * ldw, ldw, X + t * ldx, ldx, Y + t * ldy + r, ldy, k, accumulate, NULL, 0, 0, 1, 4);
    }
    const int64_t left = nt - t;
    if (!left) return;
    int64_t r = 0;
    for (; r + 4 <= nr; r += 4) {
        const float *w = Wt + r * ldw;
        float *y = Y + t * ldy + r;
        if (left == 1) gemm_block512(w, ldw, X + t * ldx, ldx, y, ldy, k, accumulate, NULL, 0, 0, 4, 1);
        else if (left == 2) gemm_block512(w, ldw, X + t * ldx, ldx, y, ldy, k, accumulate, NULL, 0, 0, 4, 2);
        else gemm_block512(w, ldw, X + t * ldx, ldx, y, ldy, k, accumulate, NULL, 0, 0, 4, 3);
    }
    for (; r < nr; r++) {
        const float *w = Wt + r * ldw;
        float *y = Y + t * ldy + r;
        if (left == 1) gemm_block512(w, ldw, X + t * ldx, ldx, y, ldy, k, accumulate, NULL, 0, 0, 1, 1);
        else if (left == 2) gemm_block512(w, ldw, X + t * ldx, ldx, y, ldy, k, accumulate, NULL, 0, 0, 1, 2);
        else gemm_block512(w, ldw, X + t * ldx, ldx, y, ldy, k, accumulate, NULL, 0, 0, 1, 3);
    }
}

#ifndef GEMM_PF
#define GEMM_PF 2 /* panels ahead */
#endif
/* With few tokens (attention's heads: up to 16 rows of X, which stay in L1)
 * the rows of W go 4 at a time through every token block, so each W row is
 * read from memory once and reused from L1; otherwise X is the panel that
 * stays and W streams. */
static TGT512 void gemm_avx512(const float *Wt, int64_t ldw, int64_t nr, const float *X, int64_t ldx, int64_t nt,
                               float *Y, int64_t ldy, int64_t k, bool accumulate) {
    if (nt > 16) {
        gemm_panel512(Wt, ldw, nr, X, ldx, nt, Y, ldy, k, accumulate, NULL, 0);
        return;
    }
    /* each panel prefetches the rows GEMM_PF panels ahead: the first token
     * block would otherwise wait on memory for every W row */
    for (int64_t r0 = 0; r0 < nr; r0 += 4) {
        const int64_t pr = r0 + 4 * GEMM_PF, npf = nr - pr < 4 ? nr - pr : 4;
        gemm_panel512(Wt + r0 * ldw, ldw, nr - r0 < 4 ? nr - r0 : 4, X, ldx, nt, Y + r0, ldy, k, accumulate,
                      npf > 0 ? Wt + pr * ldw : NULL, npf > 0 ? npf : 0);
    }
}

static const kernel_set k_avx512 = {dotn_avx512, deq_avx512, gemm_avx512};
#else
#define k_avx512 k_scalar
#endif

// ---- AVX2 level ------------------------------------------------------------
// Same structure as the AVX-512 level, 8 lanes wide. Without a 16-entry
// permute, nibbles go through mask + convert (store mode keeps GGML's
// arithmetic, so tiles stay bit-exact).

#if LODE_X86
#define TGT256 __attribute__((target("avx2,fma,f16c")))
#define AI256 static inline __attribute__((always_inline)) TGT256

#define SINK256(k, w, off)                                                                      \
    do {                                                                                        \
        const __m256 w_ = (w);                                                                  \
        if (dot) {                                                                              \
            _Pragma("GCC unroll 4") for (int t_ = 0; t_ < dot; t_++) acc[ACCI(t_, k)] =         \
                _mm256_fmadd_ps(w_, _mm256_loadu_ps(x + t_ * ldx + (off)), acc[ACCI(t_, k)]);   \
        } else {                                                                                \
            _mm256_storeu_ps(dst + (off), w_);                                                  \
        }                                                                                       \
    } while (0)

AI256 __m256i ld_u8x8(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }

AI256 float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI256 void finish256(const __m256 *acc, float *out, const int dot) {
    if (dot == 1)
        out[0] = hsum256(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    else if (dot == 2)
        out[0] = hsum256(_mm256_add_ps(acc[0], acc[1])), out[1] = hsum256(_mm256_add_ps(acc[2], acc[3]));
    else
        for (int t = 0; t < dot; t++) out[t] = hsum256(acc[t]);
}

#define ACC256_ZERO {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}

AI256 void row_q8_0_256(const void *src, int64_t n, const float *x, int64_t ldx, float *dst, float *out,
                        const int dot) {
    const lode_block_q8_0 *b = src;
    __m256 acc[4] = ACC256_ZERO;
    for (int64_t i = 0; i < n / LODE_QK8_0; i++) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(b[i].d));
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) {
            const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b[i].qs + 8 * g)));
            SINK256(g, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d), 32 * i + 8 * g);
        }
    }
    if (dot) finish256(acc, out, dot);
}

AI256 void row_q4_0_256(const void *src, int64_t n, const float *x, int64_t ldx, float *dst, float *out,
                        const int dot) {
    const lode_block_q4_0 *b = src;
    __m256 acc[4] = ACC256_ZERO;
    const __m256i m4 = _mm256_set1_epi32(0xF), c8 = _mm256_set1_epi32(8);
    for (int64_t i = 0; i < n / LODE_QK4_0; i++) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(b[i].d));
#pragma GCC unroll 2
        for (int g = 0; g < 2; g++) {
            const __m256i v = ld_u8x8(b[i].qs + 8 * g);
            const __m256i lo = _mm256_sub_epi32(_mm256_and_si256(v, m4), c8);
            const __m256i hi = _mm256_sub_epi32(_mm256_srli_epi32(v, 4), c8);
            SINK256(g, _mm256_mul_ps(_mm256_cvtepi32_ps(lo), d), 32 * i + 8 * g);
            SINK256(2 + g, _mm256_mul_ps(_mm256_cvtepi32_ps(hi), d), 32 * i + 16 + 8 * g);
        }
    }
    if (dot) finish256(acc, out, dot);
}

AI256 __m256 kq_w256(__m256i q, __m256 d1, __m256 m1, const int dot) {
    const __m256 qf = _mm256_cvtepi32_ps(q);
    return dot ? _mm256_fmsub_ps(qf, d1, m1) : _mm256_sub_ps(_mm256_mul_ps(qf, d1), m1);
}

AI256 void kq_block256(const uint8_t *scales, float d, float dmin, const uint8_t *qs, const uint8_t *qh,
                       const float *x, int64_t ldx, float *dst, __m256 *acc, const int dot) {
    const __m256i m4 = _mm256_set1_epi32(0xF), one = _mm256_set1_epi32(1);
    __m256i hv[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    if (qh)
        for (int g = 0; g < 4; g++) hv[g] = ld_u8x8(qh + 8 * g);
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        uint8_t sc, m;
        lode_q4k_scale_min(2 * c, scales, &sc, &m);
        const __m256 d1 = _mm256_set1_ps(d * (float)sc), m1 = _mm256_set1_ps(dmin * (float)m);
        lode_q4k_scale_min(2 * c + 1, scales, &sc, &m);
        const __m256 d2 = _mm256_set1_ps(d * (float)sc), m2 = _mm256_set1_ps(dmin * (float)m);
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) {
            const __m256i v = ld_u8x8(qs + 32 * c + 8 * g);
            __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_srli_epi32(v, 4);
            if (qh) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hv[g], 2 * c), one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hv[g], 2 * c + 1), one), 4));
            }
            SINK256(g, kq_w256(lo, d1, m1, dot), 64 * c + 8 * g);
            SINK256(g, kq_w256(hi, d2, m2, dot), 64 * c + 32 + 8 * g);
        }
    }
}

AI256 void row_q4_k_256(const void *src, int64_t n, const float *x, int64_t ldx, float *dst, float *out,
                        const int dot) {
    const lode_block_q4_k *b = src;
    __m256 acc[4] = ACC256_ZERO;
    for (int64_t i = 0; i < n / LODE_QK_K; i++)
        kq_block256(b[i].scales, _cvtsh_ss(b[i].d), _cvtsh_ss(b[i].dmin), b[i].qs, NULL, dot ? x + 256 * i : x, ldx,
                    dot ? dst : dst + 256 * i, acc, dot);
    if (dot) finish256(acc, out, dot);
}

AI256 void row_q5_k_256(const void *src, int64_t n, const float *x, int64_t ldx, float *dst, float *out,
                        const int dot) {
    const lode_block_q5_k *b = src;
    __m256 acc[4] = ACC256_ZERO;
    for (int64_t i = 0; i < n / LODE_QK_K; i++)
        kq_block256(b[i].scales, _cvtsh_ss(b[i].d), _cvtsh_ss(b[i].dmin), b[i].qs, b[i].qh,
                    dot ? x + 256 * i : x, ldx, dot ? dst : dst + 256 * i, acc, dot);
    if (dot) finish256(acc, out, dot);
}

/* (q - 32) * ds: GGML's arithmetic, signed zeros included. */
AI256 __m256 q6_w256(__m256i q, float ds) {
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, _mm256_set1_epi32(32))), _mm256_set1_ps(ds));
}

AI256 void row_q6_k_256(const void *src, int64_t n, const float *x, int64_t ldx, float *dst, float *out,
                        const int dot) {
    const lode_block_q6_k *b = src;
    __m256 acc[4] = ACC256_ZERO;
    const __m256i m4 = _mm256_set1_epi32(0xF), m30 = _mm256_set1_epi32(0x30);
    for (int64_t i = 0; i < n / LODE_QK_K; i++) {
        const float d = _cvtsh_ss(b[i].d);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++)
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                const __m256i a = ld_u8x8(b[i].ql + 64 * h + 8 * g);
                const __m256i c = ld_u8x8(b[i].ql + 64 * h + 32 + 8 * g);
                const __m256i hq = ld_u8x8(b[i].qh + 32 * h + 8 * g);
                const __m256i q1 = _mm256_or_si256(_mm256_and_si256(a, m4), _mm256_and_si256(_mm256_slli_epi32(hq, 4), m30));
                const __m256i q2 = _mm256_or_si256(_mm256_and_si256(c, m4), _mm256_and_si256(_mm256_slli_epi32(hq, 2), m30));
                const __m256i q3 = _mm256_or_si256(_mm256_srli_epi32(a, 4), _mm256_and_si256(hq, m30));
                const __m256i q4 = _mm256_or_si256(_mm256_srli_epi32(c, 4), _mm256_and_si256(_mm256_srli_epi32(hq, 2), m30));
                const int8_t *sc = b[i].scales + 8 * h + g / 2;
                const int64_t e = 256 * i + 128 * h + 8 * g;
                SINK256(0, q6_w256(q1, d * (float)sc[0]), e);
                SINK256(1, q6_w256(q2, d * (float)sc[2]), e + 32);
                SINK256(2, q6_w256(q3, d * (float)sc[4]), e + 64);
                SINK256(3, q6_w256(q4, d * (float)sc[6]), e + 96);
            }
    }
    if (dot) finish256(acc, out, dot);
}

AI256 __m256 ld_float256(const void *src, int64_t i, int kind) {
    if (kind == 0) return _mm256_loadu_ps((const float *)src + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)src + i));
    if (kind == 1) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AI256 void row_float256(const void *src, int64_t n, const float *x, int64_t ldx, float *dst, float *out, const int dot,
                        int kind) {
    __m256 acc[4] = ACC256_ZERO;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) SINK256(k, ld_float256(src, i + 8 * k, kind), i + 8 * k);
    }
    for (; i + 8 <= n; i += 8) SINK256(0, ld_float256(src, i, kind), i);
    float tail[4] = {0};
    for (; i < n; i++) {
        const float w = kind == 0 ? ((const float *)src)[i]
                        : kind == 1 ? _cvtsh_ss(((const uint16_t *)src)[i])
                                    : lode_bf16_to_f32(((const uint16_t *)src)[i]);
        if (dot)
            for (int t = 0; t < dot; t++) tail[t] += w * x[t * ldx + i];
        else
            dst[i] = w;
    }
    if (dot) {
        finish256(acc, out, dot);
        for (int t = 0; t < dot; t++) out[t] += tail[t];
    }
}

static TGT256 void dotn_avx2(lode_type t, const void *row, const float *x, int64_t ldx, int64_t n, int nt,
                             float *out) {
    switch (nt) {
    case 1: DOTN_CASES(256, 1) break;
    case 2: DOTN_CASES(256, 2) break;
    case 3: DOTN_CASES(256, 3) break;
    case 4: DOTN_CASES(256, 4) break;
    default: break;
    }
    dotn_scalar(t, row, x, ldx, n, nt, out);
}

static TGT256 void deq_avx2(lode_type t, const void *row, float *dst, int64_t n) {
    switch (t) {
    case LODE_TYPE_F32: row_float256(row, n, NULL, 0, dst, NULL, 0, 0); break;
    case LODE_TYPE_F16: row_float256(row, n, NULL, 0, dst, NULL, 0, 1); break;
    case LODE_TYPE_BF16: row_float256(row, n, NULL, 0, dst, NULL, 0, 2); break;
    case LODE_TYPE_Q8_0: row_q8_0_256(row, n, NULL, 0, dst, NULL, 0); break;
    case LODE_TYPE_Q4_0: row_q4_0_256(row, n, NULL, 0, dst, NULL, 0); break;
    case LODE_TYPE_Q4_K: row_q4_k_256(row, n, NULL, 0, dst, NULL, 0); break;
    case LODE_TYPE_Q5_K: row_q5_k_256(row, n, NULL, 0, dst, NULL, 0); break;
    case LODE_TYPE_Q6_K: row_q6_k_256(row, n, NULL, 0, dst, NULL, 0); break;
    default: deq_scalar(t, row, dst, n); break;
    }
}

/* RB rows x TB tokens of 8-wide accumulators (12 + 3 + 1 of the 16 ymm
 * registers at 4 x 3); the k tail is scalar. */
AI256 void gemm_block256(const float *Wt, int64_t ldw, const float *X, int64_t ldx, float *Y, int64_t ldy,
                         int64_t k, bool accumulate, const int RB, const int TB) {
    __m256 acc[4][3];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 3
        for (int t = 0; t < TB; t++) acc[r][t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 xv[3];
#pragma GCC unroll 3
        for (int t = 0; t < TB; t++) xv[t] = _mm256_loadu_ps(X + t * ldx + i);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const __m256 w = _mm256_loadu_ps(Wt + r * ldw + i);
#pragma GCC unroll 3
            for (int t = 0; t < TB; t++) acc[r][t] = _mm256_fmadd_ps(w, xv[t], acc[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 3
        for (int t = 0; t < TB; t++) {
            float v = hsum256(acc[r][t]);
            for (int64_t j = i; j < k; j++) v += Wt[r * ldw + j] * X[t * ldx + j];
            Y[t * ldy + r] = accumulate ? Y[t * ldy + r] + v : v;
        }
}

static TGT256 void gemm_avx2(const float *Wt, int64_t ldw, int64_t nr, const float *X, int64_t ldx, int64_t nt,
                             float *Y, int64_t ldy, int64_t k, bool accumulate) {
    for (int64_t t = 0; t < nt; t += 3) {
        const int64_t left = nt - t;
        const float *xt = X + t * ldx;
        float *yt = Y + t * ldy;
        int64_t r = 0;
        for (; r + 4 <= nr; r += 4) {
            if (left >= 3) gemm_block256(Wt + r * ldw, ldw, xt, ldx, yt + r, ldy, k, accumulate, 4, 3);
            else if (left == 2) gemm_block256(Wt + r * ldw, ldw, xt, ldx, yt + r, ldy, k, accumulate, 4, 2);
            else gemm_block256(Wt + r * ldw, ldw, xt, ldx, yt + r, ldy, k, accumulate, 4, 1);
        }
        for (; r < nr; r++) {
            if (left >= 3) gemm_block256(Wt + r * ldw, ldw, xt, ldx, yt + r, ldy, k, accumulate, 1, 3);
            else if (left == 2) gemm_block256(Wt + r * ldw, ldw, xt, ldx, yt + r, ldy, k, accumulate, 1, 2);
            else gemm_block256(Wt + r * ldw, ldw, xt, ldx, yt + r, ldy, k, accumulate, 1, 1);
        }
    }
}

static const kernel_set k_avx2 = {dotn_avx2, deq_avx2, gemm_avx2};
#else
#define k_avx2 k_scalar
#endif

// ---- dispatch ---------------------------------------------------------------

static atomic_int g_level = -1; /* lode_cpu_level, -1 until first use */

static lode_cpu_level cpu_max_level(void) {
#if LODE_X86 && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return LODE_CPU_AVX512;
    /* F16C is read from CPUID directly: not every compiler knows it as a
     * __builtin_cpu_supports name. */
    unsigned a, b, c, d;
    const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c) return LODE_CPU_AVX2;
#endif
    return LODE_CPU_SCALAR;
}

const char *lode_cpu_level_name(lode_cpu_level level) {
    switch (level) {
    case LODE_CPU_SCALAR: return "scalar";
    case LODE_CPU_AVX2: return "avx2";
    case LODE_CPU_AVX512: return "avx512";
    }
    return "unknown";
}

lode_cpu_level lode_quant_cpu_level(void) {
    int lv = atomic_load_explicit(&g_level, memory_order_relaxed);
    if (lv >= 0) return (lode_cpu_level)lv;
    /* Racing first calls compute the same value; storing it twice is fine. */
    lode_cpu_level best = cpu_max_level();
    const char *env = getenv("LODE_CPU");
    if (env && *env) {
        int want = -1;
        for (int i = LODE_CPU_SCALAR; i <= LODE_CPU_AVX512; i++)
            if (strcasecmp(env, lode_cpu_level_name((lode_cpu_level)i)) == 0) want = i;
        if (want < 0)
            lode_log(LODE_LOG_WARN, "LODE_CPU=%s not understood (scalar|avx2|avx512); using %s", env,
                     lode_cpu_level_name(best));
        else if (want > (int)best)
            lode_log(LODE_LOG_WARN, "LODE_CPU=%s not supported by this CPU; using %s", env,
                     lode_cpu_level_name(best));
        else
            best = (lode_cpu_level)want;
    }
    atomic_store(&g_level, (int)best);
    return best;
}

lode_cpu_level lode_quant_set_cpu_level(lode_cpu_level level) {
    if ((int)level < 0) {
        atomic_store(&g_level, -1);
        return lode_quant_cpu_level();
    }
    const lode_cpu_level max = cpu_max_level();
    if (level > max) level = max;
    atomic_store(&g_level, (int)level);
    return level;
}

static const kernel_set *kernels(void) {
    switch (lode_quant_cpu_level()) {
    case LODE_CPU_AVX512: return &k_avx512;
    case LODE_CPU_AVX2: return &k_avx2;
    default: return &k_scalar;
    }
}

static void deq_dispatch(lode_type t, const void *src, float *dst, int64_t n) { kernels()->deq(t, src, dst, n); }

// ---- public row kernels -------------------------------------------------------

void lode_matvec_rows(lode_type t, const void *W, int64_t ncols, const float *x, float *y, int64_t r0,
                      int64_t r1) {
    const size_t rs = lode_row_size(t, ncols);
    LODE_ASSERT(rs > 0 || ncols == 0);
    const kernel_set *ks = kernels();
    for (int64_t r = r0; r < r1; r++) ks->dotn(t, (const char *)W + (size_t)r * rs, x, 0, ncols, 1, &y[r]);
}

/* Per-thread dequantization tile: TILE_FLOATS f32 (256 KiB, sized to sit in
 * L2), allocated on a thread's first multi-token call and released by the
 * pthread key destructor when the thread exits. */
#define TILE_FLOATS (64 * 1024)
/* Up to this many tokens, lode_matmul_rows on quantized weights uses fused
 * multi-token dots instead of dequantized tiles: measured on the dev box
 * (4096 columns), fused wins clearly at 2-4 tokens and the tiles from about
 * 8. Float weights always take the tile path (f32 needs no decoding and its
 * 4 x 4 register-blocked product beats the fused one). */
#define FUSED_MAX_TOK 4
#define TILE_MAX_K 2048

static pthread_key_t g_tile_key;
static pthread_once_t g_tile_once = PTHREAD_ONCE_INIT;
static _Thread_local float *tl_tile;

static void tile_key_init(void) {
    if (pthread_key_create(&g_tile_key, lode_free) != 0) LODE_ASSERT(!"pthread_key_create failed");
}

static float *tile_get(void) {
    if (!tl_tile) {
        pthread_once(&g_tile_once, tile_key_init);
        tl_tile = lode_xmalloc(TILE_FLOATS * sizeof(float));
        pthread_setspecific(g_tile_key, tl_tile);
    }
    return tl_tile;
}

void lode_matmul_rows(lode_type t, const void *W, int64_t ncols, const float *X, int64_t ldx, int64_t ntok,
                      float *Y, int64_t ldy, int64_t r0, int64_t r1) {
    if (ntok <= 0 || r1 <= r0) return;
    if (ntok == 1) {
        lode_matvec_rows(t, W, ncols, X, Y, r0, r1);
        return;
    }
    const size_t rs = lode_row_size(t, ncols);
    LODE_ASSERT(rs > 0 || ncols == 0);
    if (ncols == 0) {
        for (int64_t i = 0; i < ntok; i++)
            for (int64_t r = r0; r < r1; r++) Y[i * ldy + r] = 0;
        return;
    }
    const kernel_set *ks = kernels();
    if (k_traits[t].is_quantized && ntok <= FUSED_MAX_TOK) {
        /* Few tokens: decode each row in registers once per group of up to 4
         * tokens; the row stays in L1 between groups. */
        for (int64_t r = r0; r < r1; r++) {
            const void *row = (const char *)W + (size_t)r * rs;
            for (int64_t t0 = 0; t0 < ntok; t0 += 4) {
                const int nt = ntok - t0 < 4 ? (int)(ntok - t0) : 4;
                float out[4];
                ks->dotn(t, row, X + t0 * ldx, ldx, ncols, nt, out);
                for (int i = 0; i < nt; i++) Y[(t0 + i) * ldy + r] = out[i];
            }
        }
        return;
    }
    const int64_t bs = k_traits[t].block_size;
    /* Column block: at most TILE_MAX_K (a multiple of every block size);
     * row tile: as many rows as fit in the scratch. */
    const int64_t kc_max = ncols < TILE_MAX_K ? ncols : TILE_MAX_K;
    int64_t tr = TILE_FLOATS / kc_max;
    if (tr > 256) tr = 256;
    float *tile = t == LODE_TYPE_F32 ? NULL : tile_get();
    for (int64_t r = r0; r < r1; r += tr) {
        const int64_t nr = r1 - r < tr ? r1 - r : tr;
        for (int64_t k0 = 0; k0 < ncols; k0 += kc_max) {
            const int64_t kc = ncols - k0 < kc_max ? ncols - k0 : kc_max;
            const size_t off = (size_t)(k0 / bs) * k_traits[t].type_size;
            const float *Wt;
            int64_t ldw;
            if (t == LODE_TYPE_F32) {
                Wt = (const float *)W + r * ncols + k0;
                ldw = ncols;
            } else {
                for (int64_t i = 0; i < nr; i++)
                    ks->deq(t, (const char *)W + (size_t)(r + i) * rs + off, tile + i * kc, kc);
                Wt = tile;
                ldw = kc;
            }
            ks->gemm(Wt, ldw, nr, X + k0, ldx, ntok, Y + r, ldy, kc, k0 > 0);
        }
    }
}

void lode_gemm_f32(const float *W, int64_t ldw, int64_t nr, const float *X, int64_t ldx, int64_t nt, float *Y,
                   int64_t ldy, int64_t k, bool accumulate) {
    if (nr <= 0 || nt <= 0) return;
    if (k <= 0) {
        if (!accumulate)
            for (int64_t t = 0; t < nt; t++)
                for (int64_t r = 0; r < nr; r++) Y[t * ldy + r] = 0;
        return;
    }
    kernels()->gemm(W, ldw, nr, X, ldx, nt, Y, ldy, k, accumulate);
}

/* ---- lode_gemm_nn_f32: C (+)= A B, B not transposed ----------------------------
 * Blocks of 4 rows of C x 64 columns (AVX-512) or 6 x 16 (AVX2): each
 * step broadcasts one A element per row against the columns of one B row
 * (no horizontal sums, B read in its own layout). The k loop runs in chunks
 * of NN_KC steps whose partial sums are added into C, so each output is a
 * sum of at most NN_KC sequential FMAs plus k / NN_KC chunk adds (the error
 * of the 16-lane dot kernels, not of one k-long chain). */
#define NN_MR 6
#define NN_KC 64

/* Scalar: the same chunked order per output. */
static void gemm_nn_scalar(const float *A, int64_t lda, int64_t m, const float *B, int64_t ldb, int64_t n, float *C,
                           int64_t ldc, int64_t k, bool accumulate) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float tot = accumulate ? C[i * ldc + j] : 0.0f;
            for (int64_t p0 = 0; p0 < k; p0 += NN_KC) {
                const int64_t p1 = p0 + NN_KC < k ? p0 + NN_KC : k;
                float acc = 0.0f;
                for (int64_t p = p0; p < p1; p++) acc += A[i * lda + p] * B[p * ldb + j];
                tot = (p0 == 0 && !accumulate) ? acc : tot + acc;
            }
            C[i * ldc + j] = tot;
        }
}

#if LODE_X86
#define TGTNN512 __attribute__((target("avx512f,avx2,fma")))
#define AINN512 static inline __attribute__((always_inline)) TGTNN512
/* AVX-512: MR rows x 64 columns (four vectors, masked at the edge). */
AINN512 void nn_block512(const float *A, int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc, int64_t k,
                         bool accumulate, const __mmask16 *mk, const int MR) {
    for (int64_t p0 = 0; p0 < k; p0 += NN_KC) {
        const int64_t p1 = p0 + NN_KC < k ? p0 + NN_KC : k;
        __m512 c[4][4];
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) c[r][v] = _mm512_setzero_ps();
        for (int64_t p = p0; p < p1; p++) {
            __m512 b[4];
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) b[v] = _mm512_maskz_loadu_ps(mk[v], B + p * ldb + 16 * v);
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) {
                const __m512 a = _mm512_set1_ps(A[r * lda + p]);
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++) c[r][v] = _mm512_fmadd_ps(a, b[v], c[r][v]);
            }
        }
        const bool add = p0 > 0 || accumulate;
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) {
                float *cp = C + r * ldc + 16 * v;
                const __m512 x = add ? _mm512_add_ps(c[r][v], _mm512_maskz_loadu_ps(mk[v], cp)) : c[r][v];
                _mm512_mask_storeu_ps(cp, mk[v], x);
            }
    }
}

static TGTNN512 void gemm_nn_avx512(const float *A, int64_t lda, int64_t m, const float *B, int64_t ldb, int64_t n,
                                    float *C, int64_t ldc, int64_t k, bool accumulate) {
    for (int64_t j0 = 0; j0 < n; j0 += 64) {
        const int64_t w = n - j0 < 64 ? n - j0 : 64;
        __mmask16 mk[4];
        for (int v = 0; v < 4; v++) {
            const int64_t left = w - 16 * v;
            mk[v] = (__mmask16)(left >= 16 ? 0xffff : left > 0 ? (1u << left) - 1 : 0);
        }
        for (int64_t i0 = 0; i0 < m; i0 += 4) {
            const float *a = A + i0 * lda, *b = B + j0;
            float *c = C + i0 * ldc + j0;
            switch (m - i0 < 4 ? (int)(m - i0) : 4) {
            case 1: nn_block512(a, lda, b, ldb, c, ldc, k, accumulate, mk, 1); break;
            case 2: nn_block512(a, lda, b, ldb, c, ldc, k, accumulate, mk, 2); break;
            case 3: nn_block512(a, lda, b, ldb, c, ldc, k, accumulate, mk, 3); break;
            default: nn_block512(a, lda, b, ldb, c, ldc, k, accumulate, mk, 4); break;
            }
        }
    }
}

#define TGTNN256 __attribute__((target("avx2,fma")))
#define AINN256 static inline __attribute__((always_inline)) TGTNN256
/* AVX2: blocks of 16 full columns; a narrower tail runs the scalar loop. */
AINN256 void nn_block256(const float *A, int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc, int64_t k,
                         bool accumulate, const int MR) {
    for (int64_t p0 = 0; p0 < k; p0 += NN_KC) {
        const int64_t p1 = p0 + NN_KC < k ? p0 + NN_KC : k;
        __m256 c0[NN_MR], c1[NN_MR];
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) c0[r] = c1[r] = _mm256_setzero_ps();
        for (int64_t p = p0; p < p1; p++) {
            const __m256 b0 = _mm256_loadu_ps(B + p * ldb), b1 = _mm256_loadu_ps(B + p * ldb + 8);
#pragma GCC unroll 6
            for (int r = 0; r < MR; r++) {
                const __m256 a = _mm256_set1_ps(A[r * lda + p]);
                c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
                c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
            }
        }
        const bool add = p0 > 0 || accumulate;
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            float *c = C + r * ldc;
            if (add) {
                c0[r] = _mm256_add_ps(c0[r], _mm256_loadu_ps(c));
                c1[r] = _mm256_add_ps(c1[r], _mm256_loadu_ps(c + 8));
            }
            _mm256_storeu_ps(c, c0[r]);
            _mm256_storeu_ps(c + 8, c1[r]);
        }
    }
}

static TGTNN256 void gemm_nn_avx2(const float *A, int64_t lda, int64_t m, const float *B, int64_t ldb, int64_t n,
                                  float *C, int64_t ldc, int64_t k, bool accumulate) {
    int64_t j0 = 0;
    for (; j0 + 16 <= n; j0 += 16)
        for (int64_t i0 = 0; i0 < m; i0 += NN_MR) {
            const float *a = A + i0 * lda, *b = B + j0;
            float *c = C + i0 * ldc + j0;
            switch (m - i0 < NN_MR ? (int)(m - i0) : NN_MR) {
            case 1: nn_block256(a, lda, b, ldb, c, ldc, k, accumulate, 1); break;
            case 2: nn_block256(a, lda, b, ldb, c, ldc, k, accumulate, 2); break;
            case 3: nn_block256(a, lda, b, ldb, c, ldc, k, accumulate, 3); break;
            case 4: nn_block256(a, lda, b, ldb, c, ldc, k, accumulate, 4); break;
            case 5: nn_block256(a, lda, b, ldb, c, ldc, k, accumulate, 5); break;
            default: nn_block256(a, lda, b, ldb, c, ldc, k, accumulate, 6); break;
            }
        }
    if (j0 < n) gemm_nn_scalar(A, lda, m, B + j0, ldb, n - j0, C + j0, ldc, k, accumulate);
}
#endif

void lode_gemm_nn_f32(const float *A, int64_t lda, int64_t m, const float *B, int64_t ldb, int64_t n, float *C,
                      int64_t ldc, int64_t k, bool accumulate) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (!accumulate)
            for (int64_t i = 0; i < m; i++) memset(C + i * ldc, 0, (size_t)n * sizeof(float));
        return;
    }
#if LODE_X86
    switch (lode_quant_cpu_level()) {
    case LODE_CPU_AVX512: gemm_nn_avx512(A, lda, m, B, ldb, n, C, ldc, k, accumulate); return;
    case LODE_CPU_AVX2: gemm_nn_avx2(A, lda, m, B, ldb, n, C, ldc, k, accumulate); return;
    default: break;
    }
#endif
    gemm_nn_scalar(A, lda, m, B, ldb, n, C, ldc, k, accumulate);
}

/* ---- axpy ---------------------------------------------------------------------- */
#if LODE_X86
static __attribute__((target("avx512f"))) void axpy_avx512(int64_t n, float a, const float *x, float *y) {
    const __m512 av = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static __attribute__((target("avx2,fma"))) void axpy_avx2(int64_t n, float a, const float *x, float *y) {
    const __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}
#endif

void lode_axpy_f32(int64_t n, float a, const float *x, float *y) {
#if LODE_X86
    switch (lode_quant_cpu_level()) {
    case LODE_CPU_AVX512: axpy_avx512(n, a, x, y); return;
    case LODE_CPU_AVX2: axpy_avx2(n, a, x, y); return;
    default: break;
    }
#endif
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* ---- softmax and SwiGLU pieces ------------------------------------------------ */
#define EXP_LOG2E 1.44269504088896341f
#define EXP_LN2_HI 0.693359375f
#define EXP_LN2_LO -2.12194440e-4f
#define EXP_MIN -87.33654f /* below: e^x < FLT_MIN, flushed to 0 */
#define EXP_MAX 88.3762626647949f

#if LODE_X86
/* e^x for x <= EXP_MAX (callers clamp): Taylor terms to r^7 / 7! (error
 * r^8 / 8! < 5.2e-9 relative for |r| <= ln2 / 2), scaled by 2^n. */
static inline __attribute__((always_inline, target("avx512f"))) __m512 exp512(__m512 x) {
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512 e = _mm512_scalef_ps(p, n);
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_MIN), _CMP_NLT_UQ), e);
}

static inline __attribute__((always_inline, target("avx2,fma"))) __m256 exp256(__m256 x) {
    const __m256 xc = _mm256_max_ps(_mm256_set1_ps(EXP_MIN), x); /* NaN stays (second operand) */
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_HI), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    const __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
    return _mm256_and_ps(e, _mm256_cmp_ps(x, _mm256_set1_ps(EXP_MIN), _CMP_NLT_UQ));
}

static __attribute__((target("avx512f"))) float scale_max512(float *x, int64_t n, float scale, float m0) {
    const __m512 sc = _mm512_set1_ps(scale);
    __m512 m = _mm512_set1_ps(m0);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), sc);
        _mm512_mask_storeu_ps(x + i, k, v);
        m = _mm512_mask_max_ps(m, k, m, v);
    }
    return _mm512_reduce_max_ps(m);
}

static __attribute__((target("avx512f"))) double exp_sub512(float *x, int64_t n, float mx) {
    const __m512 mv = _mm512_set1_ps(mx);
    __m512 s = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 e = exp512(_mm512_min_ps(_mm512_set1_ps(EXP_MAX), _mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), mv)));
        _mm512_mask_storeu_ps(x + i, k, e);
        s = _mm512_mask_add_ps(s, k, s, e);
    }
    return (double)_mm512_reduce_add_ps(s);
}

static __attribute__((target("avx512f"))) void swiglu512(const float *g, const float *u, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(k, g + i);
        const __m512 e = exp512(_mm512_min_ps(_mm512_set1_ps(EXP_MAX), _mm512_sub_ps(_mm512_setzero_ps(), v)));
        const __m512 y = _mm512_mul_ps(_mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), _mm512_maskz_loadu_ps(k, u + i));
        _mm512_mask_storeu_ps(out + i, k, y);
    }
}

/* AVX2: 8 at a time, the tail through a padded copy (same arithmetic). */
static __attribute__((target("avx2,fma"))) double exp_sub256(float *x, int64_t n, float mx) {
    const __m256 mv = _mm256_set1_ps(mx);
    __m256 s = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp256(_mm256_min_ps(_mm256_set1_ps(EXP_MAX), _mm256_sub_ps(_mm256_loadu_ps(x + i), mv)));
        _mm256_storeu_ps(x + i, e);
        s = _mm256_add_ps(s, e);
    }
    float t[8];
    _mm256_storeu_ps(t, s);
    double sum = 0;
    for (int j = 0; j < 8; j++) sum += t[j];
    if (i < n) {
        float b[8] = {0};
        memcpy(b, x + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(b, exp256(_mm256_min_ps(_mm256_set1_ps(EXP_MAX), _mm256_sub_ps(_mm256_loadu_ps(b), mv))));
        for (int64_t j = 0; j < n - i; j++) sum += b[j];
        memcpy(x + i, b, (size_t)(n - i) * sizeof(float));
    }
    return sum;
}

static __attribute__((target("avx2,fma"))) void swiglu256(const float *g, const float *u, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i += 8) {
        float bg[8] = {0}, bu[8] = {0};
        const int64_t w = n - i < 8 ? n - i : 8;
        const float *pg = g + i, *pu = u + i;
        if (w < 8) {
            memcpy(bg, g + i, (size_t)w * sizeof(float));
            memcpy(bu, u + i, (size_t)w * sizeof(float));
            pg = bg, pu = bu;
        }
        const __m256 v = _mm256_loadu_ps(pg);
        const __m256 e = exp256(_mm256_min_ps(_mm256_set1_ps(EXP_MAX), _mm256_sub_ps(_mm256_setzero_ps(), v)));
        const __m256 y = _mm256_mul_ps(_mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), _mm256_loadu_ps(pu));
        if (w < 8) {
            _mm256_storeu_ps(bg, y);
            memcpy(out + i, bg, (size_t)w * sizeof(float));
        } else {
            _mm256_storeu_ps(out + i, y);
        }
    }
}
#endif

float lode_scale_max_f32(float *x, int64_t n, float scale, float m0) {
#if LODE_X86
    if (lode_quant_cpu_level() >= LODE_CPU_AVX512) return scale_max512(x, n, scale, m0);
#endif
    float m = m0;
    for (int64_t i = 0; i < n; i++) {
        x[i] *= scale;
        m = x[i] > m ? x[i] : m;
    }
    return m;
}

double lode_exp_sub_f32(float *x, int64_t n, float m) {
#if LODE_X86
    switch (lode_quant_cpu_level()) {
    case LODE_CPU_AVX512: return exp_sub512(x, n, m);
    case LODE_CPU_AVX2: return exp_sub256(x, n, m);
    default: break;
    }
#endif
    double t = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        t += x[i];
    }
    return t;
}

void lode_swiglu_f32(const float *g, const float *u, float *out, int64_t n) {
#if LODE_X86
    switch (lode_quant_cpu_level()) {
    case LODE_CPU_AVX512: swiglu512(g, u, out, n); return;
    case LODE_CPU_AVX2: swiglu256(g, u, out, n); return;
    default: break;
    }
#endif
    for (int64_t i = 0; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* ---- weighted sums of rows (attention's P V) ----------------------------------- */
#if LODE_X86
/* HB heads x 32 columns in registers over all n rows: each row chunk is
 * loaded once for the HB heads (the per-row axpy loaded and stored every
 * head's sum once per row). */
static inline __attribute__((always_inline, target("avx512f"))) void wsum512_blk(const float *P, int64_t ldp,
                                                                                const float *X, int64_t ldx, int64_t n,
                                                                                float *Y, int64_t ldy, __mmask16 m0,
                                                                                __mmask16 m1, const int HB) {
    __m512 a0[8], a1[8];
#pragma GCC unroll 8
    for (int h = 0; h < HB; h++) {
        a0[h] = _mm512_maskz_loadu_ps(m0, Y + h * ldy);
        a1[h] = _mm512_maskz_loadu_ps(m1, Y + h * ldy + 16);
    }
    for (int64_t j = 0; j < n; j++) {
        const __m512 x0 = _mm512_maskz_loadu_ps(m0, X + j * ldx), x1 = _mm512_maskz_loadu_ps(m1, X + j * ldx + 16);
#pragma GCC unroll 8
        for (int h = 0; h < HB; h++) {
            const __m512 p = _mm512_set1_ps(P[h * ldp + j]);
            a0[h] = _mm512_fmadd_ps(p, x0, a0[h]);
            a1[h] = _mm512_fmadd_ps(p, x1, a1[h]);
        }
    }
#pragma GCC unroll 8
    for (int h = 0; h < HB; h++) {
        _mm512_mask_storeu_ps(Y + h * ldy, m0, a0[h]);
        _mm512_mask_storeu_ps(Y + h * ldy + 16, m1, a1[h]);
    }
}

/* Rows are taken WSUM_ROWS at a time (a block that stays in L1 while every
 * 32-column chunk of it is summed): the rows stream from memory once, in
 * order, instead of once per chunk with a stride. */
#define WSUM_ROWS 16
static __attribute__((target("avx512f"))) void wsum_avx512(const float *P, int64_t ldp, int64_t nh, const float *X,
                                                           int64_t ldx, int64_t n, float *Y, int64_t ldy, int64_t k) {
    for (int64_t j0 = 0; j0 < n; j0 += WSUM_ROWS) {
        const int64_t nj = n - j0 < WSUM_ROWS ? n - j0 : WSUM_ROWS;
        const float *Xj = X + j0 * ldx;
        for (int64_t h0 = 0; h0 < nh; h0 += 8) {
            const int hb = nh - h0 < 8 ? (int)(nh - h0) : 8;
            for (int64_t d0 = 0; d0 < k; d0 += 32) {
                const int64_t left = k - d0;
                const __mmask16 m0 = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
                const __mmask16 m1 = left >= 32 ? (__mmask16)0xFFFF : left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : 0;
                const float *Ph = P + h0 * ldp + j0, *Xd = Xj + d0;
                float *Yh = Y + h0 * ldy + d0;
                switch (hb) {
#define WB(N) \
    case N: wsum512_blk(Ph, ldp, Xd, ldx, nj, Yh, ldy, m0, m1, N); break;
                    WB(1) WB(2) WB(3) WB(4) WB(5) WB(6) WB(7) WB(8)
#undef WB
                }
            }
        }
    }
}
#endif

void lode_wsum_f32(const float *P, int64_t ldp, int64_t nh, const float *X, int64_t ldx, int64_t n, float *Y,
                   int64_t ldy, int64_t k) {
    if (nh <= 0 || n <= 0 || k <= 0) return;
#if LODE_X86
    if (lode_quant_cpu_level() >= LODE_CPU_AVX512) {
        wsum_avx512(P, ldp, nh, X, ldx, n, Y, ldy, k);
        return;
    }
#endif
    for (int64_t h = 0; h < nh; h++)
        for (int64_t j = 0; j < n; j++) lode_axpy_f32(k, P[h * ldp + j], X + j * ldx, Y + h * ldy);
}
