/*
 * quant_int8.c — the int8-activation path for quantized weights (the
 * algorithm llama.cpp uses on CPUs): activations are quantized once per row
 * into int8 blocks (lode_block_q8a for Q8_0/Q4_0, lode_block_q8k with
 * 16-element sums for the K-quants) and every weight row is multiplied with
 * integer dot products and f32 block scales. Contract and error bounds: see
 * lode_quant.h.
 *
 * Pieces:
 *   - lode_act_quantize: a portable C quantizer (round to nearest even via
 *     nearbyintf) and an AVX2 one that gives the same bytes (tested), so
 *     all levels see the same int8 activations;
 *   - lode_vec_dot_q8_ref: the scalar reference, straight from the GGML
 *     block layouts (integer sums per (sub-)block, f32 scales);
 *   - AVX-512 VNNI kernels for several tokens (below, "AVX-512 VNNI"),
 *     chosen at the AVX-512 level when the CPU has avx512vnni;
 *   - AVX2 (+FMA+F16C) kernels, used for one token at every SIMD level and
 *     for several tokens without VNNI: a tile of weight rows is first decoded once into a
 *     per-thread scratch in a kernel-friendly form, then a register-blocked
 *     microkernel (2 rows x 4 tokens) runs over every token of the call:
 *       32-blocks (Q8_0, Q4_0): signed int8 weights + f32 scale per block;
 *         |w| . sign(x, w) with vpmaddubsw, vpmaddwd(1), f32 FMA per block;
 *       K-quants: unsigned 4/5/6-bit values per 256-block, int16 sub-block
 *         scales applied with vpmaddwd (int32 sums per 256), and the
 *         mins / the Q6_K offset of 32 as a correction from the activation
 *         sums: dot = d*dx*I - dc*dx*sum_k corr[k]*bsums[k].
 * The scalar level runs the reference itself.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lode_base.h"
#include "lode_quant.h"
#include "quant_blocks.h"

#if defined(__x86_64__) || defined(__i386__)
#define LODE_X86 1
#include <immintrin.h>
#else
#define LODE_X86 0
#endif

static bool is_kq(lode_type t) { return t == LODE_TYPE_Q4_K || t == LODE_TYPE_Q5_K || t == LODE_TYPE_Q6_K; }
/* 32-element blocks with q8a activations; the SIMD kernels below cover
 * Q8_0 and Q4_0, the others (llama.cpp's Q4_1/Q5_0/Q5_1 fallback types) run
 * the reference here and the r16 kernels (quant_r16.c) once packed. */
static bool is_b32(lode_type t) {
    return t == LODE_TYPE_Q8_0 || t == LODE_TYPE_Q4_0 || t == LODE_TYPE_Q4_1 || t == LODE_TYPE_Q5_0 ||
           t == LODE_TYPE_Q5_1;
}
static bool has_vnni_kernel(lode_type t) { return is_kq(t) || t == LODE_TYPE_Q8_0 || t == LODE_TYPE_Q4_0; }
static bool has_avx2_kernel(lode_type t) { return has_vnni_kernel(t) || t == LODE_TYPE_Q5_0; }

size_t lode_act_row_size(lode_type t, int64_t n) {
    if (n <= 0) return 0;
    if (is_b32(t)) return n % 32 ? 0 : (size_t)(n / 32) * sizeof(lode_block_q8a);
    if (is_kq(t)) return n % LODE_QK_K ? 0 : (size_t)(n / LODE_QK_K) * sizeof(lode_block_q8k);
    return 0;
}

// ---- activation quantization (one implementation for every level) -------

static inline int8_t q8_round(float v) {
    if (v != v) return 0; /* NaN (inf * 0): the block scale carries it */
    if (v >= 127.0f) return 127;
    if (v <= -127.0f) return -127;
    return (int8_t)(int)nearbyintf(v);
}

static float block_scale(const float *x, int n, float *id) {
    float amax = 0;
    for (int j = 0; j < n; j++) {
        const float a = fabsf(x[j]);
        amax = a > amax ? a : amax;
    }
    const float d = amax / 127.0f;
    *id = d != 0 ? 1.0f / d : 0.0f;
    return d;
}

#if LODE_X86
/* AVX2 quantizer of one block of 32*nv values, bit-identical with the
 * scalar one: the same max, the same scalar d and 1/d, the same f32
 * product, round-to-nearest-even (vroundps = nearbyintf in the default
 * rounding mode) and |x * id| <= 127 * (1 + 3 ulp) < 127.5 so no clamp is
 * reached. Blocks holding inf/NaN return false (the scalar code handles
 * them). */
static __attribute__((target("avx2,fma,f16c"))) bool quant_block_avx2(const float *x, int nv, float *d_out,
                                                                        int8_t *q) {
    const __m256 sign = _mm256_set1_ps(-0.0f), big = _mm256_set1_ps(3.402823466e38f);
    __m256 mx = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    for (int i = 0; i < 4 * nv; i++) {
        const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * i));
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, big, _CMP_NLE_UQ));
        mx = _mm256_max_ps(mx, a);
    }
    if (_mm256_movemask_ps(bad)) return false;
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    *d_out = d;
    const __m256 idv = _mm256_set1_ps(id);
    for (int i = 0; i < nv; i++) {
        __m256i v[4];
        for (int k = 0; k < 4; k++)
            v[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * i + 8 * k), idv),
                                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        /* packs interleave 128-bit lanes; vpermd restores element order */
        const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
        _mm256_storeu_si256((__m256i *)(q + 32 * i),
                            _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    }
    return true;
}
#endif

void lode_act_quantize(lode_type t, const float *x, void *dst, int64_t n) {
    LODE_ASSERT(lode_act_row_size(t, n) > 0);
#if LODE_X86
    const bool simd = lode_quant_cpu_level() >= LODE_CPU_AVX2;
#else
    const bool simd = false;
#endif
    (void)simd;
    if (is_b32(t)) {
        lode_block_q8a *b = dst;
        for (int64_t i = 0; i < n / 32; i++, x += 32) {
#if LODE_X86
            if (!simd || !quant_block_avx2(x, 1, &b[i].d, b[i].qs))
#endif
            {
                float id;
                b[i].d = block_scale(x, 32, &id);
                for (int j = 0; j < 32; j++) b[i].qs[j] = q8_round(x[j] * id);
            }
            int s = 0;
            for (int j = 0; j < 32; j++) s += b[i].qs[j];
            b[i].s = (int16_t)s;
            b[i].pad = 0;
        }
        return;
    }
    lode_block_q8k *b = dst;
    for (int64_t i = 0; i < n / LODE_QK_K; i++, x += LODE_QK_K) {
#if LODE_X86
        if (!simd || !quant_block_avx2(x, 8, &b[i].d, b[i].qs))
#endif
        {
            float id;
            b[i].d = block_scale(x, LODE_QK_K, &id);
            for (int j = 0; j < LODE_QK_K; j++) b[i].qs[j] = q8_round(x[j] * id);
        }
        for (int k = 0; k < LODE_QK_K / 16; k++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += b[i].qs[16 * k + j];
            b[i].bsums[k] = (int16_t)s;
        }
    }
}

// ---- scalar reference -------------------------------------------------------

float lode_vec_dot_q8_ref(lode_type t, const void *row, const void *xq, int64_t n) {
    LODE_ASSERT(lode_act_row_size(t, n) > 0);
    float acc = 0;
    if (t == LODE_TYPE_Q4_1 || t == LODE_TYPE_Q5_0 || t == LODE_TYPE_Q5_1) {
        /* d * q + m: dot = d dx sum q x^ + m dx sum x^ (Q5_0: m = -16 d) */
        const lode_block_q8a *x = xq;
        const size_t bs = lode_type_get(t)->type_size;
        for (int64_t i = 0; i < n / 32; i++) {
            const uint8_t *blk = (const uint8_t *)row + (size_t)i * bs;
            uint16_t dh, mh = 0;
            memcpy(&dh, blk, 2);
            const uint8_t *qh = t == LODE_TYPE_Q4_1 ? NULL : blk + (t == LODE_TYPE_Q5_0 ? 2 : 4);
            const uint8_t *qs = t == LODE_TYPE_Q4_1 ? blk + 4 : qh + 4;
            if (t != LODE_TYPE_Q5_0) memcpy(&mh, blk + 2, 2);
            int32_t s = 0;
            for (int e = 0; e < 32; e++) s += lode_q5_value(qs, qh, e) * x[i].qs[e];
            const float d = lode_f16_to_f32(dh);
            if (t == LODE_TYPE_Q5_0) acc += (d * x[i].d) * (float)(s - 16 * x[i].s);
            else acc += (d * x[i].d) * (float)s + (lode_f16_to_f32(mh) * x[i].d) * (float)x[i].s;
        }
        return acc;
    }
    if (t == LODE_TYPE_Q8_0 || t == LODE_TYPE_Q4_0) {
        const lode_block_q8a *x = xq;
        for (int64_t i = 0; i < n / 32; i++) {
            int32_t s = 0;
            float dw;
            if (t == LODE_TYPE_Q8_0) {
                const lode_block_q8_0 *w = (const lode_block_q8_0 *)row + i;
                for (int j = 0; j < 32; j++) s += w->qs[j] * x[i].qs[j];
                dw = lode_f16_to_f32(w->d);
            } else {
                const lode_block_q4_0 *w = (const lode_block_q4_0 *)row + i;
                for (int j = 0; j < 16; j++)
                    s += ((w->qs[j] & 0xF) - 8) * x[i].qs[j] + ((w->qs[j] >> 4) - 8) * x[i].qs[j + 16];
                dw = lode_f16_to_f32(w->d);
            }
            acc += (dw * x[i].d) * (float)s;
        }
        return acc;
    }
    const lode_block_q8k *x = xq;
    for (int64_t i = 0; i < n / LODE_QK_K; i++) {
        const int8_t *xs = x[i].qs;
        int32_t I = 0, C = 0; /* sum sc*q*x and the correction sum_k corr*bsums */
        float d, dc;
        if (t == LODE_TYPE_Q6_K) {
            const lode_block_q6_k *w = (const lode_block_q6_k *)row + i;
            for (int e = 0; e < LODE_QK_K; e++) {
                const int h = e / 128, l = e % 32, g = (e % 128) / 32;
                const uint8_t ql = w->ql[64 * h + l + (g & 1) * 32], qh = w->qh[32 * h + l];
                const int q = ((g < 2 ? ql & 0xF : ql >> 4) | (((qh >> (2 * g)) & 3) << 4));
                I += w->scales[e / 16] * q * xs[e];
            }
            for (int k = 0; k < 16; k++) C += 32 * w->scales[k] * x[i].bsums[k];
            d = dc = lode_f16_to_f32(w->d);
        } else {
            const lode_block_q4_k *w4 = (const lode_block_q4_k *)row + i;
            const lode_block_q5_k *w5 = (const lode_block_q5_k *)row + i;
            const bool five = t == LODE_TYPE_Q5_K;
            const uint8_t *scales = five ? w5->scales : w4->scales, *qs = five ? w5->qs : w4->qs;
            for (int j = 0; j < 8; j++) {
                uint8_t sc, m;
                lode_q4k_scale_min(j, scales, &sc, &m);
                int32_t s = 0;
                for (int l = 0; l < 32; l++) {
                    const int c = j / 2;
                    const uint8_t v = qs[32 * c + l];
                    int q = j & 1 ? v >> 4 : v & 0xF;
                    if (five) q |= ((w5->qh[l] >> j) & 1) << 4;
                    s += q * xs[32 * j + l];
                }
                I += sc * s;
                C += m * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
            }
            d = lode_f16_to_f32(five ? w5->d : w4->d);
            dc = lode_f16_to_f32(five ? w5->dmin : w4->dmin);
        }
        acc += (d * x[i].d) * (float)I - (dc * x[i].d) * (float)C;
    }
    return acc;
}

// ---- switch ---------------------------------------------------------------------

static atomic_int g_int8 = -1;

bool lode_quant_int8_enabled(void) {
    int v = atomic_load_explicit(&g_int8, memory_order_relaxed);
    if (v < 0) {
        const char *e = getenv("LODE_INT8");
        v = !(e && (strcmp(e, "0") == 0 || strcmp(e, "off") == 0 || strcmp(e, "no") == 0));
        atomic_store(&g_int8, v);
    }
    return v != 0;
}

void lode_quant_set_int8(int on) { atomic_store(&g_int8, on < 0 ? -1 : on != 0); }

// ---- per-thread decode scratch ---------------------------------------------

#define SCRATCH_BYTES (256 * 1024)

static pthread_key_t g_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static _Thread_local void *tl_buf;
static _Thread_local size_t tl_cap;

static void key_init(void) {
    if (pthread_key_create(&g_key, lode_free) != 0) LODE_ASSERT(!"pthread_key_create failed");
}

static void *scratch(size_t n) {
    if (tl_cap < n) {
        pthread_once(&g_once, key_init);
        lode_free(tl_buf);
        tl_buf = lode_xmalloc(n);
        tl_cap = n;
        pthread_setspecific(g_key, tl_buf);
    }
    return tl_buf;
}

/* Decoded K-quant super-block: values in element order (unsigned), int16
 * scales per 32-element chunk as vpmaddwd expects them (lanes 0-7 cover
 * elements 0-15 of the chunk, lanes 8-15 elements 16-31), and the
 * correction weights for the activation sums. */
typedef struct kdec {
    _Alignas(32) uint8_t q[LODE_QK_K];
    int16_t sc[8][16];
    int16_t corr[16];
    float d, dc;
    float pad[6];
} kdec;
LODE_STATIC_ASSERT(sizeof(kdec) == 576, "kdec size");

#if LODE_X86
#define TGT256 __attribute__((target("avx2,fma,f16c")))
#define AI256 static inline __attribute__((always_inline)) TGT256

/* Byte masks for vpshufb: broadcast int16 lane j of each 128-bit half. */
AI256 __m256i lane16_mask(int j) { return _mm256_set1_epi16((short)((2 * j) | ((2 * j + 1) << 8))); }

/* Decoders: one super-block / 32-block of a row into the kernel's form. */
/* The 8 six-bit scales and mins of a Q4_K/Q5_K block as int16 lanes: the
 * lode_q4k_scale_min rule on 32-bit words (4 sub-blocks per word). */
AI256 void kq_unpack(const uint8_t *scales, __m128i *sc, __m128i *m) {
    uint32_t a, b, c;
    memcpy(&a, scales, 4);
    memcpy(&b, scales + 4, 4);
    memcpy(&c, scales + 8, 4);
    const uint32_t s03 = a & 0x3F3F3F3Fu, s47 = (c & 0x0F0F0F0Fu) | ((a >> 2) & 0x30303030u);
    const uint32_t m03 = b & 0x3F3F3F3Fu, m47 = ((c >> 4) & 0x0F0F0F0Fu) | ((b >> 2) & 0x30303030u);
    *sc = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)(((uint64_t)s47 << 32) | s03)));
    *m = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)(((uint64_t)m47 << 32) | m03)));
}

AI256 void kq_scales_to(kdec *o, const uint8_t *scales) {
    __m128i scv, mv;
    kq_unpack(scales, &scv, &mv);
    const __m256i sc16 = _mm256_broadcastsi128_si256(scv);
    for (int j = 0; j < 8; j++) _mm256_store_si256((__m256i *)o->sc[j], _mm256_shuffle_epi8(sc16, lane16_mask(j)));
    /* corr[2j] = corr[2j + 1] = m[j] */
    _mm256_store_si256((__m256i *)o->corr, _mm256_set_m128i(_mm_unpackhi_epi16(mv, mv), _mm_unpacklo_epi16(mv, mv)));
}

static TGT256 void dec_kq(lode_type t, const void *row, int64_t nsb, kdec *out) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30), b4 = _mm256_set1_epi8(0x10);
    for (int64_t i = 0; i < nsb; i++) {
        kdec *o = &out[i];
        if (t == LODE_TYPE_Q6_K) {
            const lode_block_q6_k *w = (const lode_block_q6_k *)row + i;
            for (int h = 0; h < 2; h++) {
                const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h));
                const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h + 32));
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(w->qh + 32 * h));
                __m256i *q = (__m256i *)(o->q + 128 * h);
                _mm256_store_si256(q, _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30)));
                _mm256_store_si256(q + 1, _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30)));
                _mm256_store_si256(q + 2, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30)));
                _mm256_store_si256(q + 3, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                                          _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30)));
            }
            const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w->scales));
            _mm256_store_si256((__m256i *)o->corr, _mm256_slli_epi16(s16, 5));
            for (int c = 0; c < 8; c++)
                _mm256_store_si256((__m256i *)o->sc[c], _mm256_set_m128i(_mm_set1_epi16(w->scales[2 * c + 1]),
                                                                         _mm_set1_epi16(w->scales[2 * c])));
            o->d = o->dc = _cvtsh_ss(w->d);
        } else {
            const bool five = t == LODE_TYPE_Q5_K;
            const lode_block_q4_k *w4 = (const lode_block_q4_k *)row + i;
            const lode_block_q5_k *w5 = (const lode_block_q5_k *)row + i;
            const uint8_t *qs = five ? w5->qs : w4->qs;
            const __m256i hb = five ? _mm256_loadu_si256((const __m256i *)w5->qh) : _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
                __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                if (five) {
                    /* qh bit 2c (2c + 1) of each byte -> bit 4 */
                    const __m256i a = _mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * c));
                    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(a, 4), b4));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(a, 3), b4));
                }
                _mm256_store_si256((__m256i *)(o->q + 64 * c), lo);
                _mm256_store_si256((__m256i *)(o->q + 64 * c + 32), hi);
            }
            kq_scales_to(o, five ? w5->scales : w4->scales);
            o->d = _cvtsh_ss(five ? w5->d : w4->d);
            o->dc = _cvtsh_ss(five ? w5->dmin : w4->dmin);
        }
    }
}

/* A Q5_0 block's 32 signed values (q - 16) in element order: nibbles as
 * Q4_0, the fifth bit j of qh spread to byte j (vpshufb of its byte j / 8,
 * tested against 1 << (j % 8)). */
AI256 __m256i q5_0_i8(const lode_block_q5_0 *w) {
    const __m128i v = _mm_loadu_si128((const __m128i *)w->qs), m4 = _mm_set1_epi8(0x0F);
    __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4));
    uint32_t h;
    memcpy(&h, w->qh, 4);
    const __m256i hv = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h),
                                           _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2,
                                                            2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(hv, bits), bits);
    q = _mm256_or_si256(q, _mm256_and_si256(set, _mm256_set1_epi8(16)));
    return _mm256_sub_epi8(q, _mm256_set1_epi8(16));
}

/* 32-blocks: nb*32 signed int8 values, then nb f32 scales. */
static TGT256 void dec_b32(lode_type t, const void *row, int64_t nb, int8_t *q, float *d) {
    if (t == LODE_TYPE_Q5_0) {
        const lode_block_q5_0 *w = row;
        for (int64_t i = 0; i < nb; i++) {
            _mm256_storeu_si256((__m256i *)(q + 32 * i), q5_0_i8(&w[i]));
            d[i] = _cvtsh_ss(w[i].d);
        }
    } else if (t == LODE_TYPE_Q8_0) {
        const lode_block_q8_0 *w = row;
        for (int64_t i = 0; i < nb; i++) {
            _mm256_storeu_si256((__m256i *)(q + 32 * i), _mm256_loadu_si256((const __m256i *)w[i].qs));
            d[i] = _cvtsh_ss(w[i].d);
        }
    } else {
        const lode_block_q4_0 *w = row;
        const __m128i m4 = _mm_set1_epi8(0x0F), c8 = _mm_set1_epi8(8);
        for (int64_t i = 0; i < nb; i++) {
            const __m128i v = _mm_loadu_si128((const __m128i *)w[i].qs);
            const __m128i lo = _mm_sub_epi8(_mm_and_si128(v, m4), c8);
            const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), m4), c8);
            _mm256_storeu_si256((__m256i *)(q + 32 * i), _mm256_set_m128i(hi, lo));
            d[i] = _cvtsh_ss(w[i].d);
        }
    }
}

AI256 float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* RB (1-2) decoded 32-block rows x TB (1-4) activation rows. */
AI256 void mk_b32(const int8_t *q0, const float *d0, const int8_t *q1, const float *d1, const lode_block_q8a *x,
                  int64_t nb, float *out, const int RB, const int TB) {
    __m256 acc[2][4];
#pragma GCC unroll 2
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int t = 0; t < TB; t++) acc[r][t] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; b++) {
        __m256i w[2], aw[2];
        __m256 dw[2];
        w[0] = _mm256_loadu_si256((const __m256i *)(q0 + 32 * b));
        aw[0] = _mm256_abs_epi8(w[0]);
        dw[0] = _mm256_broadcast_ss(d0 + b);
        if (RB > 1) {
            w[1] = _mm256_loadu_si256((const __m256i *)(q1 + 32 * b));
            aw[1] = _mm256_abs_epi8(w[1]);
            dw[1] = _mm256_broadcast_ss(d1 + b);
        }
#pragma GCC unroll 4
        for (int t = 0; t < TB; t++) {
            const lode_block_q8a *xb = x + t * nb + b;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)xb->qs);
            const __m256 dx = _mm256_broadcast_ss(&xb->d);
#pragma GCC unroll 2
            for (int r = 0; r < RB; r++) {
                const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[r], _mm256_sign_epi8(xv, w[r])), ones);
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw[r], dx), acc[r][t]);
            }
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int t = 0; t < TB; t++) out[4 * r + t] = hsum8(acc[r][t]);
}

/* RB (1-2) decoded K-quant rows x TB (1-4) activation rows. */
AI256 void mk_kq(const kdec *w0, const kdec *w1, const lode_block_q8k *x, int64_t nsb, float *out, const int RB,
                 const int TB) {
    __m256 acc[2][4];
#pragma GCC unroll 2
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int t = 0; t < TB; t++) acc[r][t] = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        const kdec *w[2] = {w0 + s, RB > 1 ? w1 + s : w0 + s};
        __m256i ia[2][4];
#pragma GCC unroll 2
        for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
            for (int t = 0; t < TB; t++) ia[r][t] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            __m256i q[2], sc[2];
#pragma GCC unroll 2
            for (int r = 0; r < RB; r++) {
                q[r] = _mm256_load_si256((const __m256i *)(w[r]->q + 32 * c));
                sc[r] = _mm256_loadu_si256((const __m256i *)w[r]->sc[c]);
            }
#pragma GCC unroll 4
            for (int t = 0; t < TB; t++) {
                const __m256i xv = _mm256_loadu_si256((const __m256i *)(x[t * nsb + s].qs + 32 * c));
#pragma GCC unroll 2
                for (int r = 0; r < RB; r++)
                    ia[r][t] = _mm256_add_epi32(ia[r][t], _mm256_madd_epi16(_mm256_maddubs_epi16(q[r], xv), sc[r]));
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < TB; t++) {
            const lode_block_q8k *xb = x + t * nsb + s;
            const __m256i bs = _mm256_loadu_si256((const __m256i *)xb->bsums);
#pragma GCC unroll 2
            for (int r = 0; r < RB; r++) {
                const __m256i cc = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)w[r]->corr), bs);
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[r][t]), _mm256_set1_ps(w[r]->d * xb->d), acc[r][t]);
                acc[r][t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(cc), _mm256_set1_ps(w[r]->dc * xb->d), acc[r][t]);
            }
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int t = 0; t < TB; t++) out[4 * r + t] = hsum8(acc[r][t]);
}

/* ---- single token (matvec): decode in registers, no scratch ---- */

AI256 float mv_b32(lode_type t, const void *row, const lode_block_q8a *x, int64_t nb) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    const __m128i m4 = _mm_set1_epi8(0x0F), c8 = _mm_set1_epi8(8);
    for (int64_t b = 0; b < nb; b++) {
        __m256i w;
        float dw;
        if (t == LODE_TYPE_Q5_0) {
            const lode_block_q5_0 *wb = (const lode_block_q5_0 *)row + b;
            w = q5_0_i8(wb);
            dw = _cvtsh_ss(wb->d);
        } else if (t == LODE_TYPE_Q8_0) {
            const lode_block_q8_0 *wb = (const lode_block_q8_0 *)row + b;
            w = _mm256_loadu_si256((const __m256i *)wb->qs);
            dw = _cvtsh_ss(wb->d);
        } else {
            const lode_block_q4_0 *wb = (const lode_block_q4_0 *)row + b;
            const __m128i v = _mm_loadu_si128((const __m128i *)wb->qs);
            w = _mm256_set_m128i(_mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), m4), c8),
                                 _mm_sub_epi8(_mm_and_si128(v, m4), c8));
            dw = _cvtsh_ss(wb->d);
        }
        const __m256i xv = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(xv, w)), ones);
        const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * x[b].d));
        if (b & 1) acc1 = _mm256_add_ps(acc1, f);
        else acc0 = _mm256_add_ps(acc0, f);
    }
    return hsum8(_mm256_add_ps(acc0, acc1));
}

AI256 float mv_kq(lode_type t, const void *row, const lode_block_q8k *x, int64_t nsb) {
    __m256 acc = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30), b4 = _mm256_set1_epi8(0x10);
    for (int64_t i = 0; i < nsb; i++) {
        const int8_t *xs = x[i].qs;
        const __m256i bs = _mm256_loadu_si256((const __m256i *)x[i].bsums);
        __m256i ia = _mm256_setzero_si256();
        if (t == LODE_TYPE_Q6_K) {
            const lode_block_q6_k *w = (const lode_block_q6_k *)row + i;
            const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w->scales));
            /* Chunk c: lanes 0-7 scale 2c, lanes 8-15 scale 2c + 1. */
            const __m256i hm = _mm256_set_m128i(_mm_set1_epi16(0x0302), _mm_set1_epi16(0x0100));
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h));
                const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h + 32));
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(w->qh + 32 * h));
                __m256i q[4];
                q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
                q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
                q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30));
                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                       _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
#pragma GCC unroll 4
                for (int g = 0; g < 4; g++) {
                    const int c = 4 * h + g;
                    const __m256i sc = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(s16, _mm256_set1_epi32(c)), hm);
                    const __m256i xv = _mm256_loadu_si256((const __m256i *)(xs + 32 * c));
                    ia = _mm256_add_epi32(ia, _mm256_madd_epi16(_mm256_maddubs_epi16(q[g], xv), sc));
                }
            }
            ia = _mm256_sub_epi32(ia, _mm256_slli_epi32(_mm256_madd_epi16(s16, bs), 5));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia), _mm256_set1_ps(_cvtsh_ss(w->d) * x[i].d), acc);
        } else {
            const bool five = t == LODE_TYPE_Q5_K;
            const lode_block_q4_k *w4 = (const lode_block_q4_k *)row + i;
            const lode_block_q5_k *w5 = (const lode_block_q5_k *)row + i;
            const uint8_t *qs = five ? w5->qs : w4->qs, *scales = five ? w5->scales : w4->scales;
            __m128i scv, mv;
            kq_unpack(scales, &scv, &mv);
            const __m256i sc16 = _mm256_broadcastsi128_si256(scv);
            const __m256i corr = _mm256_set_m128i(_mm_unpackhi_epi16(mv, mv), _mm_unpacklo_epi16(mv, mv));
            const __m256i hb = five ? _mm256_loadu_si256((const __m256i *)w5->qh) : _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
                __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                if (five) {
                    const __m256i a = _mm256_srli_epi16(hb, 2 * c);
                    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(a, 4), b4));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(a, 3), b4));
                }
                const __m256i x0 = _mm256_loadu_si256((const __m256i *)(xs + 64 * c));
                const __m256i x1 = _mm256_loadu_si256((const __m256i *)(xs + 64 * c + 32));
                ia = _mm256_add_epi32(ia, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), _mm256_shuffle_epi8(sc16, lane16_mask(2 * c))));
                ia = _mm256_add_epi32(ia, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), _mm256_shuffle_epi8(sc16, lane16_mask(2 * c + 1))));
            }
            const float dx = x[i].d;
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia), _mm256_set1_ps(_cvtsh_ss(five ? w5->d : w4->d) * dx), acc);
            acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(corr, bs)),
                                   _mm256_set1_ps(_cvtsh_ss(five ? w5->dmin : w4->dmin) * dx), acc);
        }
    }
    return hsum8(acc);
}

#define MK_CASES(CALL)                                                                               \
    do {                                                                                             \
        if (rb == 2) {                                                                               \
            switch (tb) {                                                                            \
            case 4: CALL(2, 4); break;                                                               \
            case 3: CALL(2, 3); break;                                                               \
            case 2: CALL(2, 2); break;                                                               \
            default: CALL(2, 1); break;                                                              \
            }                                                                                        \
        } else {                                                                                     \
            switch (tb) {                                                                            \
            case 4: CALL(1, 4); break;                                                               \
            case 3: CALL(1, 3); break;                                                               \
            case 2: CALL(1, 2); break;                                                               \
            default: CALL(1, 1); break;                                                              \
            }                                                                                        \
        }                                                                                            \
    } while (0)

static TGT256 void matmul_q8_avx2(lode_type t, const void *W, int64_t ncols, const void *Xq, int64_t ntok, float *Y,
                                  int64_t ldy, int64_t r0, int64_t r1) {
    const size_t rs = lode_row_size(t, ncols);
    const bool kq = is_kq(t);
    const int64_t nb = kq ? ncols / LODE_QK_K : ncols / 32;
    if (ntok == 1) {
        for (int64_t r = r0; r < r1; r++) {
            const void *row = (const char *)W + (size_t)r * rs;
            Y[r] = kq ? mv_kq(t, row, Xq, nb) : mv_b32(t, row, Xq, nb);
        }
        return;
    }
    /* Decoded row: K-quants nb kdec; 32-blocks 32*nb values + nb scales,
     * rounded to 32 bytes. */
    const size_t drs = kq ? (size_t)nb * sizeof(kdec) : ((size_t)nb * 36 + 31) & ~(size_t)31;
    int64_t tr = (int64_t)(SCRATCH_BYTES / drs);
    if (tr < 2) tr = 2;
    if (tr > 256) tr = 256;
    tr &= ~(int64_t)1;
    char *buf = scratch((size_t)tr * drs + 32);
    buf = (char *)(((uintptr_t)buf + 31) & ~(uintptr_t)31);
    for (int64_t rt = r0; rt < r1; rt += tr) {
        const int64_t nr = r1 - rt < tr ? r1 - rt : tr;
        for (int64_t i = 0; i < nr; i++) {
            const void *row = (const char *)W + (size_t)(rt + i) * rs;
            char *d = buf + (size_t)i * drs;
            if (kq) dec_kq(t, row, nb, (kdec *)d);
            else dec_b32(t, row, nb, (int8_t *)d, (float *)(d + 32 * nb));
        }
        for (int64_t t0 = 0; t0 < ntok; t0 += 4) {
            const int tb = ntok - t0 < 4 ? (int)(ntok - t0) : 4;
            for (int64_t i = 0; i < nr; i += 2) {
                const int rb = nr - i >= 2 ? 2 : 1;
                const char *d0 = buf + (size_t)i * drs, *d1 = rb > 1 ? d0 + drs : d0;
                float out[8];
                if (kq) {
                    const lode_block_q8k *x = (const lode_block_q8k *)Xq + t0 * nb;
#define CALLK(RB_, TB_) mk_kq((const kdec *)d0, (const kdec *)d1, x, nb, out, RB_, TB_)
                    MK_CASES(CALLK);
#undef CALLK
                } else {
                    const lode_block_q8a *x = (const lode_block_q8a *)Xq + t0 * nb;
#define CALLB(RB_, TB_)                                                                                 \
    mk_b32((const int8_t *)d0, (const float *)(d0 + 32 * nb), (const int8_t *)d1,                   \
           (const float *)(d1 + 32 * nb), x, nb, out, RB_, TB_)
                    MK_CASES(CALLB);
#undef CALLB
                }
                for (int r = 0; r < rb; r++)
                    for (int k = 0; k < tb; k++) Y[(t0 + k) * ldy + rt + i + r] = out[4 * r + k];
            }
        }
    }
}

/* ---- AVX-512 VNNI: several tokens (prefill) ------------------------------
 * vpdpbusd multiplies unsigned bytes by signed bytes, 4 per int32 lane. The
 * weights are the unsigned side: Q8_0 as w + 128 and Q4_0 as its raw nibble
 * (w + 8), with offset * (sum of the activation block) subtracted; the
 * K-quants are unsigned already (their mins / the Q6_K offset of 32 are the
 * kdec corrections, applied with vpdpwssd on the activation sums). One zmm
 * lane is one weight row: a tile of rows is packed in groups of 16 rows as
 * [4-element step][row][4 bytes], so a 64-byte load feeds 16 rows and a
 * broadcast of 4 activation bytes feeds them all; results for 16 rows land in
 * one register (no horizontal sums) and are stored with a row mask.
 * Integer sums are exact, so the results are the scalar reference's up to
 * the order of the f32 scale accumulation (the same contract as AVX2). */
#define TGT512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define AI512 static inline __attribute__((always_inline)) TGT512

bool lode__cpu_vnni(void) {
    static atomic_int ok = -1;
    int v = atomic_load_explicit(&ok, memory_order_relaxed);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
            __builtin_cpu_supports("avx512vnni");
        atomic_store(&ok, v);
    }
    return v != 0;
}

/* A group of 16 rows, one 32-block (Q8_0/Q4_0). */
typedef struct pb32 {
    _Alignas(64) uint8_t q[8][64];
    float d[16];
} pb32;
LODE_STATIC_ASSERT(sizeof(pb32) == 576, "pb32 size");

/* A group of 16 rows, one K-quant super-block. sc: the integer scale of each
 * sub-block (8 of 32 elements for Q4_K/Q5_K, 16 of 16 for Q6_K) per row;
 * corr: the 16 kdec corrections as 8 int16 pairs per row. */
typedef struct pkq {
    _Alignas(64) uint8_t q[64][64];
    int32_t sc[16][16];
    int32_t corr[8][16];
    float d[16], dc[16];
} pkq;
LODE_STATIC_ASSERT(sizeof(pkq) == 5760, "pkq size");

/* r[i] = 16 int32 of row i -> r[j] = element j of the 16 rows. */
AI512 void tr16x16(__m512i r[16]) {
    __m512i a[16], b[16];
    for (int k = 0; k < 8; k++) {
        a[2 * k] = _mm512_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        a[2 * k + 1] = _mm512_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 4; k++) {
        b[4 * k] = _mm512_unpacklo_epi64(a[4 * k], a[4 * k + 2]);
        b[4 * k + 1] = _mm512_unpackhi_epi64(a[4 * k], a[4 * k + 2]);
        b[4 * k + 2] = _mm512_unpacklo_epi64(a[4 * k + 1], a[4 * k + 3]);
        b[4 * k + 3] = _mm512_unpackhi_epi64(a[4 * k + 1], a[4 * k + 3]);
    }
    /* b[4k + m], 128-bit chunk c = element 4c + m of rows 4k..4k+3 */
    for (int m = 0; m < 4; m++) {
        const __m512i p0 = _mm512_shuffle_i32x4(b[m], b[4 + m], 0x44), p1 = _mm512_shuffle_i32x4(b[m], b[4 + m], 0xEE);
        const __m512i p2 = _mm512_shuffle_i32x4(b[8 + m], b[12 + m], 0x44),
                      p3 = _mm512_shuffle_i32x4(b[8 + m], b[12 + m], 0xEE);
        r[m] = _mm512_shuffle_i32x4(p0, p2, 0x88);
        r[4 + m] = _mm512_shuffle_i32x4(p0, p2, 0xDD);
        r[8 + m] = _mm512_shuffle_i32x4(p1, p3, 0x88);
        r[12 + m] = _mm512_shuffle_i32x4(p1, p3, 0xDD);
    }
}

/* 64 unsigned weight bytes of a row: blocks b and b + 1 (zero past nb). */
AI512 __m512i b32_pair_u8(lode_type t, const void *row, int64_t b, int64_t nb) {
    __m256i h[2];
    for (int k = 0; k < 2; k++) {
        if (b + k >= nb) {
            h[k] = t == LODE_TYPE_Q8_0 ? _mm256_set1_epi8((char)0x80) : _mm256_set1_epi8(8);
            continue;
        }
        if (t == LODE_TYPE_Q8_0) {
            const lode_block_q8_0 *w = (const lode_block_q8_0 *)row + b + k;
            h[k] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)w->qs), _mm256_set1_epi8((char)0x80));
        } else {
            const lode_block_q4_0 *w = (const lode_block_q4_0 *)row + b + k;
            const __m128i v = _mm_loadu_si128((const __m128i *)w->qs), m4 = _mm_set1_epi8(0x0F);
            h[k] = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4));
        }
    }
    return _mm512_inserti64x4(_mm512_castsi256_si512(h[0]), h[1], 1);
}

/* Pack rows [0, nr) (nr <= 16; the rest zero weights) of a 32-block type. */
static TGT512 void pack_b32(lode_type t, const char *W, size_t rs, int nr, int64_t nb, pb32 *out) {
    const uint8_t zero_u8 = t == LODE_TYPE_Q8_0 ? 0x80 : 8;
    const size_t bsz = t == LODE_TYPE_Q8_0 ? sizeof(lode_block_q8_0) : sizeof(lode_block_q4_0);
    const __mmask16 rmask = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    const __m512i ridx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32((int)rs));
    for (int64_t b = 0; b < nb; b += 2) {
        __m512i r[16];
        for (int i = 0; i < 16; i++)
            r[i] = i < nr ? b32_pair_u8(t, W + (size_t)i * rs, b, nb) : _mm512_set1_epi8((char)zero_u8);
        tr16x16(r);
        for (int s = 0; s < 8; s++) _mm512_store_si512(out[b].q[s], r[s]);
        if (b + 1 < nb)
            for (int s = 0; s < 8; s++) _mm512_store_si512(out[b + 1].q[s], r[8 + s]);
        /* the f16 scales of 16 rows in one gather (d is each block's first
         * field); rows past nr read nothing and get 0 */
        for (int k = 0; k < 2 && b + k < nb; k++)
            if (rs > (size_t)INT32_MAX / 16) {
                for (int i = 0; i < 16; i++) {
                    uint16_t h = 0;
                    if (i < nr) memcpy(&h, W + (size_t)i * rs + (size_t)(b + k) * bsz, 2);
                    out[b + k].d[i] = i < nr ? _cvtsh_ss(h) : 0.0f;
                }
            } else
            _mm512_store_ps(out[b + k].d,
                            _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_mask_i32gather_epi32(
                                _mm512_setzero_si512(), rmask, ridx, W + (size_t)(b + k) * bsz, 1))));
    }
}

/* One row's super-block decoded in registers: q[m] = 64 unsigned values,
 * meta = the 8 sub-block scales (lanes 0-7) and the 8 correction pairs
 * (lanes 8-15) for Q4_K/Q5_K; for Q6_K meta = the 16 scales and meta2 the
 * 8 correction pairs. Q4_K/Q5_K values come in nibble order (q[m]: chunk
 * pair m / 2, low (m even) or high nibbles; lanes 0-31 sub-block 4(m/2) +
 * (m&1), lanes 32-63 that + 2); Q6_K values in element order. */
AI512 void dec512_kq(lode_type t, const void *blk, __m512i q[4], __m512i *meta, __m512i *meta2, float *d,
                     float *dc) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), one = _mm512_set1_epi8(1), three = _mm512_set1_epi8(3);
    if (t == LODE_TYPE_Q6_K) {
        const lode_block_q6_k *w = blk;
        const __m512i sh_lo = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
        const __m512i sh_hi = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
        for (int h = 0; h < 2; h++) {
            const __m512i ql = _mm512_loadu_si512(w->ql + 64 * h);
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w->qh + 32 * h)));
            q[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                       _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, sh_lo), three), 4));
            q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                           _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, sh_hi), three), 4));
        }
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)w->scales);
        *meta = _mm512_cvtepi8_epi32(sc8);
        *meta2 = _mm512_zextsi256_si512(_mm256_slli_epi16(_mm256_cvtepi8_epi16(sc8), 5));
        *d = *dc = _cvtsh_ss(w->d);
        return;
    }
    const bool five = t == LODE_TYPE_Q5_K;
    const lode_block_q4_k *w4 = blk;
    const lode_block_q5_k *w5 = blk;
    const uint8_t *qs = five ? w5->qs : w4->qs;
    const __m512i qhb = five ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)w5->qh)) : _mm512_setzero_si512();
    for (int c = 0; c < 2; c++) {
        const __m512i v = _mm512_loadu_si512(qs + 64 * c);
        __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        if (five) {
            const __m512i shl = _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * c)), _mm256_set1_epi16((short)(4 * c + 2)), 1);
            const __m512i shh = _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * c + 1)), _mm256_set1_epi16((short)(4 * c + 3)), 1);
            lo = _mm512_or_si512(lo, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qhb, shl), one), 4));
            hi = _mm512_or_si512(hi, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qhb, shh), one), 4));
        }
        q[2 * c] = lo;
        q[2 * c + 1] = hi;
    }
    __m128i scv, mv;
    kq_unpack(five ? w5->scales : w4->scales, &scv, &mv);
    const __m256i m32 = _mm256_cvtepu16_epi32(mv);
    *meta = _mm512_inserti64x4(_mm512_zextsi256_si512(_mm256_cvtepu16_epi32(scv)),
                               _mm256_or_si256(m32, _mm256_slli_epi32(m32, 16)), 1);
    *meta2 = _mm512_setzero_si512();
    *d = _cvtsh_ss(five ? w5->d : w4->d);
    *dc = _cvtsh_ss(five ? w5->dmin : w4->dmin);
}

static TGT512 void pack_kq(lode_type t, const char *W, size_t rs, int nr, int64_t nsb, pkq *out) {
    const bool six = t == LODE_TYPE_Q6_K;
    const size_t bs = lode_type_get(t)->type_size;
    for (int64_t s = 0; s < nsb; s++) {
        pkq *o = &out[s];
        __m512i q[4][16], meta[16], meta2[16];
        for (int i = 0; i < 16; i++) {
            if (i < nr) {
                __m512i v[4];
                dec512_kq(t, W + (size_t)i * rs + (size_t)s * bs, v, &meta[i], &meta2[i], &o->d[i], &o->dc[i]);
                for (int m = 0; m < 4; m++) q[m][i] = v[m];
            } else {
                for (int m = 0; m < 4; m++) q[m][i] = _mm512_setzero_si512();
                meta[i] = meta2[i] = _mm512_setzero_si512();
                o->d[i] = o->dc[i] = 0.0f;
            }
        }
        for (int m = 0; m < 4; m++) {
            tr16x16(q[m]);
            for (int k = 0; k < 16; k++) _mm512_store_si512(o->q[16 * m + k], q[m][k]);
        }
        tr16x16(meta);
        if (six) {
            tr16x16(meta2);
            for (int j = 0; j < 16; j++) _mm512_store_si512(o->sc[j], meta[j]);
            for (int j = 0; j < 8; j++) _mm512_store_si512(o->corr[j], meta2[j]);
        } else {
            for (int j = 0; j < 8; j++) _mm512_store_si512(o->sc[j], meta[j]);
            for (int j = 0; j < 8; j++) _mm512_store_si512(o->corr[j], meta[8 + j]);
        }
    }
}

AI512 int32_t ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* RB (1-2) groups of 16 rows x TB (1-4) tokens, 32-blocks. */
AI512 void mk512_b32(const pb32 *g0, const pb32 *g1, const lode_block_q8a *x, int64_t nb, int off, __m512 *res,
                     const int RB, const int TB) {
    __m512 acc[2][4];
#pragma GCC unroll 2
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int t = 0; t < TB; t++) acc[r][t] = _mm512_setzero_ps();
    const pb32 *g[2] = {g0, g1};
    for (int64_t b = 0; b < nb; b++) {
        __m512i is[2][4];
#pragma GCC unroll 4
        for (int t = 0; t < TB; t++) {
            const __m512i init = _mm512_set1_epi32(-off * x[t * nb + b].s);
#pragma GCC unroll 2
            for (int r = 0; r < RB; r++) is[r][t] = init;
        }
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            __m512i w[2];
#pragma GCC unroll 2
            for (int r = 0; r < RB; r++) w[r] = _mm512_load_si512(g[r][b].q[s]);
#pragma GCC unroll 4
            for (int t = 0; t < TB; t++) {
                const __m512i xb = _mm512_set1_epi32(ld32(x[t * nb + b].qs + 4 * s));
#pragma GCC unroll 2
                for (int r = 0; r < RB; r++) is[r][t] = _mm512_dpbusd_epi32(is[r][t], w[r], xb);
            }
        }
#pragma GCC unroll 2
        for (int r = 0; r < RB; r++) {
            const __m512 dw = _mm512_load_ps(g[r][b].d);
#pragma GCC unroll 4
            for (int t = 0; t < TB; t++)
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[r][t]), _mm512_mul_ps(dw, _mm512_set1_ps(x[t * nb + b].d)),
                                            acc[r][t]);
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int t = 0; t < TB; t++) res[4 * r + t] = acc[r][t];
}

/* RB (1-2) groups x TB (1-4) tokens, K-quant super-blocks; NSUB sub-blocks
 * of 256 / NSUB elements. The f32 sums live in res across super-blocks. */
AI512 void mk512_kq(const pkq *g0, const pkq *g1, const lode_block_q8k *x, int64_t nsb, __m512 *res, const int RB,
                    const int TB, const int NSUB) {
    const int SPS = 64 / NSUB; /* 4-element steps per sub-block */
    const pkq *g[2] = {g0, g1};
#pragma GCC unroll 2
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int t = 0; t < TB; t++) res[4 * r + t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < nsb; s++) {
        __m512i a32[2][4];
#pragma GCC unroll 2
        for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
            for (int t = 0; t < TB; t++) a32[r][t] = _mm512_setzero_si512();
#pragma GCC unroll 16
        for (int j = 0; j < NSUB; j++) {
            __m512i is[2][4];
#pragma GCC unroll 2
            for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
                for (int t = 0; t < TB; t++) is[r][t] = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int k = 0; k < SPS; k++) {
                /* packed step (pack_kq's value order) and activation offset */
                const int st = NSUB == 16 ? 4 * j + k : 16 * (2 * (j / 4) + (j & 1)) + 8 * ((j & 3) >> 1) + k;
                const int xo = NSUB == 16 ? 16 * j + 4 * k : 32 * j + 4 * k;
                __m512i w[2];
#pragma GCC unroll 2
                for (int r = 0; r < RB; r++) w[r] = _mm512_load_si512(g[r][s].q[st]);
#pragma GCC unroll 4
                for (int t = 0; t < TB; t++) {
                    const __m512i xb = _mm512_set1_epi32(ld32(x[t * nsb + s].qs + xo));
#pragma GCC unroll 2
                    for (int r = 0; r < RB; r++) is[r][t] = _mm512_dpbusd_epi32(is[r][t], w[r], xb);
                }
            }
#pragma GCC unroll 2
            for (int r = 0; r < RB; r++) {
                const __m512i sc = _mm512_load_si512(g[r][s].sc[j]);
#pragma GCC unroll 4
                for (int t = 0; t < TB; t++) a32[r][t] = _mm512_add_epi32(a32[r][t], _mm512_mullo_epi32(is[r][t], sc));
            }
        }
        /* corrections: sum_k corr[k] * bsums[k], 8 int16 pairs */
        __m512i cc[2][4];
#pragma GCC unroll 2
        for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
            for (int t = 0; t < TB; t++) cc[r][t] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            __m512i cw[2];
#pragma GCC unroll 2
            for (int r = 0; r < RB; r++) cw[r] = _mm512_load_si512(g[r][s].corr[k]);
#pragma GCC unroll 4
            for (int t = 0; t < TB; t++) {
                const __m512i bs = _mm512_set1_epi32(ld32(x[t * nsb + s].bsums + 2 * k));
#pragma GCC unroll 2
                for (int r = 0; r < RB; r++) cc[r][t] = _mm512_dpwssd_epi32(cc[r][t], cw[r], bs);
            }
        }
#pragma GCC unroll 2
        for (int r = 0; r < RB; r++) {
            const __m512 d = _mm512_load_ps(g[r][s].d), dc = _mm512_load_ps(g[r][s].dc);
#pragma GCC unroll 4
            for (int t = 0; t < TB; t++) {
                const __m512 dx = _mm512_set1_ps(x[t * nsb + s].d);
                __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a32[r][t]), _mm512_mul_ps(d, dx), res[4 * r + t]);
                res[4 * r + t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(cc[r][t]), _mm512_mul_ps(dc, dx), v);
            }
        }
    }
}

/* ---- AVX-512 VNNI: one token (matvec) ------------------------------------
 * K-quant weights decoded in registers to unsigned bytes as in the tile
 * kernels (the same corrections); int32 partial sums per sub-block scaled
 * with vpmulld, f32 per super-block. */
AI512 float hsum16(__m512 v) { return _mm512_reduce_add_ps(v); }

/* Q8_0 one token, two blocks per 512-bit register: the tile packer's
 * unsigned weights (b32_pair_u8), offset * sum(x) preloaded in lane 0 of
 * each half, one f32 scale per half. */
AI512 float mv512_b32(lode_type t, const void *row, const lode_block_q8a *x, int64_t nb) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    const int off = t == LODE_TYPE_Q8_0 ? 128 : 8;
    const size_t bsz = t == LODE_TYPE_Q8_0 ? sizeof(lode_block_q8_0) : sizeof(lode_block_q4_0);
    for (int64_t b = 0; b < nb; b += 2) {
        const bool two = b + 1 < nb;
        uint16_t h[2] = {0, 0};
        memcpy(&h[0], (const char *)row + (size_t)b * bsz, 2); /* d is each block's first field */
        if (two) memcpy(&h[1], (const char *)row + (size_t)(b + 1) * bsz, 2);
        const __m512i wv = b32_pair_u8(t, row, b, nb);
        const __m256i x1 = two ? _mm256_loadu_si256((const __m256i *)x[b + 1].qs) : _mm256_setzero_si256();
        const __m512i xv = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x[b].qs)), x1, 1);
        const __m512i init = _mm512_mask_blend_epi32((__mmask16)0x0100, _mm512_maskz_set1_epi32(1, -off * x[b].s),
                                                     _mm512_set1_epi32(two ? -off * x[b + 1].s : 0));
        const __m512i p = _mm512_dpbusd_epi32(init, wv, xv);
        const __m512 sc = _mm512_insertf32x8(_mm512_set1_ps(_cvtsh_ss(h[0]) * x[b].d),
                                             _mm256_set1_ps(two ? _cvtsh_ss(h[1]) * x[b + 1].d : 0.0f), 1);
        if (b & 2) acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc1);
        else acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc0);
    }
    return hsum16(_mm512_add_ps(acc0, acc1));
}

/* K-quants one token: the super-block decoded by dec512_kq (the tile
 * packer's decoder) and dotted in its value order. */
AI512 float mv512_kq(lode_type t, const void *row, const lode_block_q8k *x, int64_t nsb) {
    __m512 acc = _mm512_setzero_ps();
    __m256 accc = _mm256_setzero_ps();
    const bool six = t == LODE_TYPE_Q6_K;
    const size_t bs = lode_type_get(t)->type_size;
    const __m512i lane4 = _mm512_srli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 2);
    const __m512i half = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi32(2), 1);
    for (int64_t i = 0; i < nsb; i++) {
        const int8_t *xs = x[i].qs;
        __m512i q[4], meta, meta2;
        float d, dc;
        dec512_kq(t, (const char *)row + (size_t)i * bs, q, &meta, &meta2, &d, &dc);
        __m512i a32 = _mm512_setzero_si512();
#pragma GCC unroll 2
        for (int c = 0; c < 2; c++) {
            __m512i x0, x1, s0, s1;
            if (six) {
                /* q[2c]: elements 128c + 0..63, q[2c+1]: 128c + 64..127;
                 * 16-element sub-block scale 8c (+4) + lane/4 */
                x0 = _mm512_loadu_si512(xs + 128 * c);
                x1 = _mm512_loadu_si512(xs + 128 * c + 64);
                s0 = _mm512_permutexvar_epi32(_mm512_add_epi32(lane4, _mm512_set1_epi32(8 * c)), meta);
                s1 = _mm512_permutexvar_epi32(_mm512_add_epi32(lane4, _mm512_set1_epi32(8 * c + 4)), meta);
            } else {
                /* q[2c]: sub-blocks 4c | 4c+2 (low nibbles), q[2c+1]: 4c+1 | 4c+3 */
                const __m512i xa = _mm512_loadu_si512(xs + 128 * c), xb = _mm512_loadu_si512(xs + 128 * c + 64);
                x0 = _mm512_shuffle_i64x2(xa, xb, 0x44);
                x1 = _mm512_shuffle_i64x2(xa, xb, 0xEE);
                const __m512i ilo = _mm512_add_epi32(_mm512_set1_epi32(4 * c), half);
                s0 = _mm512_permutexvar_epi32(ilo, meta);
                s1 = _mm512_permutexvar_epi32(_mm512_add_epi32(ilo, _mm512_set1_epi32(1)), meta);
            }
            const __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[2 * c], x0);
            const __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[2 * c + 1], x1);
            a32 = _mm512_add_epi32(a32, _mm512_add_epi32(_mm512_mullo_epi32(p0, s0), _mm512_mullo_epi32(p1, s1)));
        }
        const float dx = x[i].d;
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a32), _mm512_set1_ps(d * dx), acc);
        const __m256i corr = six ? _mm512_castsi512_si256(meta2) : _mm512_extracti64x4_epi64(meta, 1);
        const __m256i bsv = _mm256_loadu_si256((const __m256i *)x[i].bsums);
        accc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(corr, bsv)), _mm256_set1_ps(dc * dx), accc);
    }
    return hsum16(acc) - hsum8(accc);
}

#ifndef VNNI_MATVEC_MAX_TOK
#define VNNI_MATVEC_MAX_TOK 3
#endif

static TGT512 void matmul_q8_vnni(lode_type t, const void *W, int64_t ncols, const void *Xq, int64_t ntok, float *Y,
                                  int64_t ldy, int64_t r0, int64_t r1) {
    const size_t rs = lode_row_size(t, ncols);
    const bool kq = is_kq(t);
    const int64_t nb = kq ? ncols / LODE_QK_K : ncols / 32;
    const size_t gbytes = (size_t)nb * (kq ? sizeof(pkq) : sizeof(pb32)); /* one group of 16 rows */
    int64_t tg = (int64_t)(SCRATCH_BYTES / gbytes);
    if (tg < 2) tg = 2;
    if (tg > 16) tg = 16;
    char *buf = scratch((size_t)tg * gbytes + 64);
    buf = (char *)(((uintptr_t)buf + 63) & ~(uintptr_t)63);
    const int off = t == LODE_TYPE_Q8_0 ? 128 : 8;
    if (ntok <= VNNI_MATVEC_MAX_TOK) {
        /* A few tokens: packing a tile costs more than reading the weights
         * once per token (about 4 token-passes of Q4_K at this machine's
         * bandwidth), so run the matvec per token. */
        for (int64_t k = 0; k < ntok; k++) {
            const char *xk = (const char *)Xq + (size_t)k * lode_act_row_size(t, ncols);
            for (int64_t r = r0; r < r1; r++) {
                const void *row = (const char *)W + (size_t)r * rs;
                /* Q4_0: the AVX2 matvec measured faster (18-byte blocks) */
                Y[k * ldy + r] = kq ? mv512_kq(t, row, (const lode_block_q8k *)xk, nb)
                                 : t == LODE_TYPE_Q8_0 ? mv512_b32(t, row, (const lode_block_q8a *)xk, nb)
                                                       : mv_b32(t, row, (const lode_block_q8a *)xk, nb);
            }
        }
        return;
    }
    for (int64_t rt = r0; rt < r1; rt += 16 * tg) {
        const int64_t nr = r1 - rt < 16 * tg ? r1 - rt : 16 * tg, ng = (nr + 15) / 16;
        for (int64_t gi = 0; gi < ng; gi++) {
            const int rows = nr - 16 * gi < 16 ? (int)(nr - 16 * gi) : 16;
            const char *wr = (const char *)W + (size_t)(rt + 16 * gi) * rs;
            if (kq) pack_kq(t, wr, rs, rows, nb, (pkq *)(buf + (size_t)gi * gbytes));
            else pack_b32(t, wr, rs, rows, nb, (pb32 *)(buf + (size_t)gi * gbytes));
        }
        for (int64_t t0 = 0; t0 < ntok; t0 += 4) {
            const int tb = ntok - t0 < 4 ? (int)(ntok - t0) : 4;
            for (int64_t gi = 0; gi < ng; gi += 2) {
                const int rb = ng - gi >= 2 ? 2 : 1;
                const char *p0 = buf + (size_t)gi * gbytes, *p1 = rb > 1 ? p0 + gbytes : p0;
                __m512 res[8];
                if (kq) {
                    const lode_block_q8k *x = (const lode_block_q8k *)Xq + t0 * nb;
                    if (t == LODE_TYPE_Q6_K) {
#define CALL6(RB_, TB_) mk512_kq((const pkq *)p0, (const pkq *)p1, x, nb, res, RB_, TB_, 16)
                        MK_CASES(CALL6);
#undef CALL6
                    } else {
#define CALL4(RB_, TB_) mk512_kq((const pkq *)p0, (const pkq *)p1, x, nb, res, RB_, TB_, 8)
                        MK_CASES(CALL4);
#undef CALL4
                    }
                } else {
                    const lode_block_q8a *x = (const lode_block_q8a *)Xq + t0 * nb;
#define CALLB(RB_, TB_) mk512_b32((const pb32 *)p0, (const pb32 *)p1, x, nb, off, res, RB_, TB_)
                    MK_CASES(CALLB);
#undef CALLB
                }
                for (int r = 0; r < rb; r++) {
                    const int64_t row = rt + 16 * (gi + r);
                    const int left = (int)(r1 - row);
                    const __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
                    for (int k = 0; k < tb; k++) _mm512_mask_storeu_ps(Y + (t0 + k) * ldy + row, m, res[4 * r + k]);
                }
            }
        }
    }
}
#endif

void lode_matmul_q8_rows(lode_type t, const void *W, int64_t ncols, const void *Xq, int64_t ntok, float *Y,
                         int64_t ldy, int64_t r0, int64_t r1) {
    if (ntok <= 0 || r1 <= r0) return;
    const size_t ars = lode_act_row_size(t, ncols), rs = lode_row_size(t, ncols);
    LODE_ASSERT(ars > 0 && rs > 0);
#if LODE_X86
    /* other types: the reference below (their fast form is the r16 layout) */
    if (has_vnni_kernel(t) && lode_quant_cpu_level() >= LODE_CPU_AVX512 && lode__cpu_vnni()) {
        matmul_q8_vnni(t, W, ncols, Xq, ntok, Y, ldy, r0, r1);
        return;
    }
    if (has_avx2_kernel(t) && lode_quant_cpu_level() >= LODE_CPU_AVX2) {
        matmul_q8_avx2(t, W, ncols, Xq, ntok, Y, ldy, r0, r1);
        return;
    }
#endif
    for (int64_t i = 0; i < ntok; i++)
        for (int64_t r = r0; r < r1; r++)
            Y[i * ldy + r] = lode_vec_dot_q8_ref(t, (const char *)W + (size_t)r * rs, (const char *)Xq + (size_t)i * ars,
                                                 ncols);
}
