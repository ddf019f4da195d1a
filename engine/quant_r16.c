/*
 * quant_r16.c — the 16-row interleaved weight layout ("r16") and its
 * AVX-512 VNNI kernels: the int8 path's fast form for Q8_0 and Q4_K weights,
 * made once at load (lode_r16_pack) instead of per call.
 *
 * Why: the int8 tile kernels of quant_int8.c reach vpdpbusd's speed only
 * after decoding a tile of rows into [4-element step][row][4 bytes] groups,
 * and a one-token matvec cannot amortize that decode, so decode ran at about
 * half the memory bandwidth with compute to spare for nothing else. Stored
 * pre-interleaved, a 64-byte load feeds 16 rows straight away, for one token
 * as for many.
 *
 * Layout: rows are taken 16 at a time (rows % 16 == 0); group g occupies the
 * bytes of rows 16g..16g+15 (16 * lode_row_size bytes, the same size as the
 * plain rows), as one record per block of the row:
 *
 *   Q8_0, 544 bytes per 32 columns:
 *     uint8 q[8][64]   q[s][4r + k] = w_r[4s + k] + 128 (vpdpbusd's unsigned side)
 *     f16   d[16]      the 16 rows' scales
 *   Q4_K, 2304 bytes per 256 columns (sub-block j = columns 32j..32j+31):
 *     uint8 q[32][64]  vector 4j + u, byte 4r + k: the 4-bit value of column
 *                      32j + 8u + k (low nibble) and of 32j + 8u + 4 + k
 *                      (high nibble) of row r
 *     u32  sc[3][16]   row r: sc[0] nibble j = low 4 bits of scale j; sc[1]
 *                      nibble j = low 4 bits of min j; sc[2] bits 2j..2j+1 =
 *                      scale j >> 4, bits 16 + 2j.. = min j >> 4
 *     f16   d[16], dmin[16]
 *   Q4_1 / Q5_0 / Q5_1, 320 / 352 / 384 bytes per 32 columns (x = d q + m;
 *   Q5_0: m = -16 d):
 *     uint8 q[4][64]   vector u, byte 4r + k: the low 4 bits of column
 *                      8u + k (low nibble) and 8u + 4 + k (high nibble)
 *     u32  qh[16]      (5-bit types) bit e = fifth bit of column e, per row
 *     f16   d[16], then (Q4_1, Q5_1) m[16]
 *
 * Packing is lossless (lode_r16_unpack restores the GGML bytes exactly) and
 * the kernels compute the scalar reference's integer sums exactly (Q4_K:
 * each 32-column sub-block's integer dot exactly, then scaled by its 6-bit
 * scale in f32 — cvt + fma on the float pipes measured 10-15% faster than
 * vpmulld + add on Zen 5), so results keep lode_vec_dot_q8_ref's contract
 * (1e-5 of sum|w x^|). Without AVX-512
 * VNNI (or with the level lowered, as tests do) every entry point unpacks a
 * group at a time into a per-thread buffer and runs the plain kernels.
 */
#include <pthread.h>
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

#define R16 16
/* Q4_K software prefetch distance in records (2,304 bytes each): one for
 * the multi-token tiles (compute-bound), two for the one-token matvec, which
 * walks one 16-row group at a time (RB = 1). Measured with 2 threads on
 * 1408 x 2048 matrices in pool runs of 64 rows, the decode pattern: kernel
 * time / plain-read time of the same bytes went from 0.82-0.90 (RB = 2, one
 * record ahead) to 1.04-1.06, and from 0.62 to 0.86 on one thread; three or
 * four records ahead, or two groups at a time, measured worse. */
#define Q4K_PF_TILE 1
#define Q4K_PF_VEC 2
#ifndef Q5_PF
#define Q5_PF 1408 /* Q4_1/Q5_0/Q5_1: 4-4.4 records ahead (measured 20 -> 29-30 GB/s, one core) */
#endif

typedef struct r16_q8_0 {
    uint8_t q[8][64];
    uint16_t d[R16];
} r16_q8_0;
LODE_STATIC_ASSERT(sizeof(r16_q8_0) == R16 * sizeof(lode_block_q8_0), "r16 q8_0 record size");

typedef struct r16_q4_k {
    uint8_t q[32][64];
    uint32_t sc[3][R16];
    uint16_t d[R16], dmin[R16];
} r16_q4_k;
LODE_STATIC_ASSERT(sizeof(r16_q4_k) == R16 * sizeof(lode_block_q4_k), "r16 q4_k record size");

/* The Q4_1/Q5_0/Q5_1 records: fifth bits and mins are optional parts. */
static bool q5_five(lode_type t) { return t == LODE_TYPE_Q5_0 || t == LODE_TYPE_Q5_1; }
static bool q5_min(lode_type t) { return t == LODE_TYPE_Q4_1 || t == LODE_TYPE_Q5_1; }
static bool is_q5(lode_type t) { return t == LODE_TYPE_Q4_1 || t == LODE_TYPE_Q5_0 || t == LODE_TYPE_Q5_1; }
#define Q5_QH 256 /* offsets in a record */
static size_t q5_d_off(lode_type t) { return q5_five(t) ? Q5_QH + 64 : Q5_QH; }

bool lode_r16_supported(lode_type t, int64_t rows, int64_t cols) {
    if (rows <= 0 || rows % R16 || cols <= 0) return false;
    if (t == LODE_TYPE_Q8_0 || is_q5(t)) return cols % 32 == 0;
    if (t == LODE_TYPE_Q4_K) return cols % LODE_QK_K == 0;
    return false;
}

/* ---- packing (portable, lossless) ---------------------------------------- */

static void q4k_encode_scales(const uint8_t sc[8], const uint8_t m[8], uint8_t out[12]) {
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        out[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        out[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
    }
}

static inline uint32_t rd32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* 16 plain rows (rs bytes apart) -> one group of records, 32 bits at a
 * time (the load-time cost: a few instructions per 4 weights). */
/* A Q4_1/Q5_0/Q5_1 block's fields: d, m (or none), qh (or none), qs. */
static void q5_fields(lode_type t, const uint8_t *blk, const uint8_t **qs, const uint8_t **qh) {
    const size_t off = q5_min(t) ? 4 : 2;
    *qh = q5_five(t) ? blk + off : NULL;
    *qs = blk + off + (q5_five(t) ? 4 : 0);
}

static void pack_group_q5(lode_type t, const char *src, size_t rs, int64_t nb, char *dst) {
    const size_t bs = lode_type_get(t)->type_size, rb = R16 * bs, doff = q5_d_off(t);
    for (int r = 0; r < R16; r++)
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = (const uint8_t *)src + (size_t)r * rs + (size_t)b * bs, *qs, *qh;
            uint8_t *o = (uint8_t *)dst + (size_t)b * rb;
            q5_fields(t, blk, &qs, &qh);
            for (int u = 0; u < 4; u++)
                for (int k = 0; k < 4; k++)
                    o[64 * u + 4 * r + k] = (uint8_t)((lode_q5_value(qs, NULL, 8 * u + k)) |
                                                      lode_q5_value(qs, NULL, 8 * u + 4 + k) << 4);
            if (qh) memcpy(o + Q5_QH + 4 * r, qh, 4);
            memcpy(o + doff + 2 * r, blk, 2);
            if (q5_min(t)) memcpy(o + doff + 32 + 2 * r, blk + 2, 2);
        }
}

static void unpack_group_q5(lode_type t, const char *src, int64_t nb, char *dst, size_t rs) {
    const size_t bs = lode_type_get(t)->type_size, rb = R16 * bs, doff = q5_d_off(t);
    for (int r = 0; r < R16; r++)
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *g = (const uint8_t *)src + (size_t)b * rb;
            uint8_t *blk = (uint8_t *)dst + (size_t)r * rs + (size_t)b * bs;
            const uint8_t *cqs, *cqh;
            q5_fields(t, blk, &cqs, &cqh);
            uint8_t *qs = (uint8_t *)cqs, *qh = (uint8_t *)cqh;
            memcpy(blk, g + doff + 2 * r, 2);
            if (q5_min(t)) memcpy(blk + 2, g + doff + 32 + 2 * r, 2);
            if (qh) memcpy(qh, g + Q5_QH + 4 * r, 4);
            for (int u = 0; u < 4; u++)
                for (int k = 0; k < 4; k++) {
                    const uint8_t v = g[64 * u + 4 * r + k];
                    const int e0 = 8 * u + k, e1 = e0 + 4; /* columns; qs holds e (< 16) low, e - 16 high */
                    if (e0 < 16) qs[e0] = (uint8_t)((qs[e0] & 0xF0) | (v & 15));
                    else qs[e0 - 16] = (uint8_t)((qs[e0 - 16] & 0x0F) | (v & 15) << 4);
                    if (e1 < 16) qs[e1] = (uint8_t)((qs[e1] & 0xF0) | (v >> 4));
                    else qs[e1 - 16] = (uint8_t)((qs[e1 - 16] & 0x0F) | (v >> 4) << 4);
                }
        }
}

static void pack_group(lode_type t, const char *src, size_t rs, int64_t nb, char *dst) {
    if (is_q5(t)) {
        pack_group_q5(t, src, rs, nb, dst);
        return;
    }
    if (t == LODE_TYPE_Q8_0) {
        r16_q8_0 *o = (r16_q8_0 *)dst;
        for (int r = 0; r < R16; r++) {
            const lode_block_q8_0 *w = (const lode_block_q8_0 *)(src + (size_t)r * rs);
            for (int64_t b = 0; b < nb; b++) {
                o[b].d[r] = w[b].d;
                for (int s = 0; s < 8; s++) {
                    const uint32_t v = rd32(w[b].qs + 4 * s) ^ 0x80808080u; /* + 128 per byte */
                    memcpy(&o[b].q[s][4 * r], &v, 4);
                }
            }
        }
        return;
    }
    r16_q4_k *o = (r16_q4_k *)dst;
    for (int r = 0; r < R16; r++) {
        const lode_block_q4_k *w = (const lode_block_q4_k *)(src + (size_t)r * rs);
        for (int64_t b = 0; b < nb; b++) {
            uint32_t s0 = 0, s1 = 0, s2 = 0;
            for (int j = 0; j < 8; j++) {
                uint8_t sc, m;
                lode_q4k_scale_min(j, w[b].scales, &sc, &m);
                s0 |= (uint32_t)(sc & 15) << (4 * j);
                s1 |= (uint32_t)(m & 15) << (4 * j);
                s2 |= (uint32_t)(sc >> 4) << (2 * j) | (uint32_t)(m >> 4) << (16 + 2 * j);
                /* sub-block j: nibble j & 1 of qs[32 (j / 2) + l] */
                const uint8_t *qs = w[b].qs + 32 * (j / 2);
                for (int u = 0; u < 4; u++) {
                    const uint32_t a = rd32(qs + 8 * u), c = rd32(qs + 8 * u + 4);
                    const uint32_t v = j & 1 ? ((a >> 4) & 0x0F0F0F0Fu) | (c & 0xF0F0F0F0u)
                                             : (a & 0x0F0F0F0Fu) | ((c & 0x0F0F0F0Fu) << 4);
                    memcpy(&o[b].q[4 * j + u][4 * r], &v, 4);
                }
            }
            o[b].sc[0][r] = s0, o[b].sc[1][r] = s1, o[b].sc[2][r] = s2;
            o[b].d[r] = w[b].d, o[b].dmin[r] = w[b].dmin;
        }
    }
}

/* One group of records -> 16 plain rows. */
static void unpack_group(lode_type t, const char *src, int64_t nb, char *dst, size_t rs) {
    if (is_q5(t)) {
        unpack_group_q5(t, src, nb, dst, rs);
        return;
    }
    if (t == LODE_TYPE_Q8_0) {
        const r16_q8_0 *g = (const r16_q8_0 *)src;
        for (int64_t b = 0; b < nb; b++)
            for (int r = 0; r < R16; r++) {
                lode_block_q8_0 *w = (lode_block_q8_0 *)(dst + (size_t)r * rs) + b;
                w->d = g[b].d[r];
                for (int e = 0; e < 32; e++) w->qs[e] = (int8_t)(g[b].q[e / 4][4 * r + e % 4] - 128);
            }
        return;
    }
    const r16_q4_k *g = (const r16_q4_k *)src;
    for (int64_t b = 0; b < nb; b++)
        for (int r = 0; r < R16; r++) {
            lode_block_q4_k *w = (lode_block_q4_k *)(dst + (size_t)r * rs) + b;
            uint8_t sc[8], m[8];
            for (int j = 0; j < 8; j++) {
                sc[j] = (uint8_t)((g[b].sc[0][r] >> (4 * j) & 15) | (g[b].sc[2][r] >> (2 * j) & 3) << 4);
                m[j] = (uint8_t)((g[b].sc[1][r] >> (4 * j) & 15) | (g[b].sc[2][r] >> (16 + 2 * j) & 3) << 4);
                for (int u = 0; u < 4; u++)
                    for (int k = 0; k < 4; k++) {
                        const int l = 8 * u + k;
                        const uint8_t v = g[b].q[4 * j + u][4 * r + k];
                        uint8_t *qs = w->qs + 32 * (j / 2);
                        if (j & 1) {
                            qs[l] = (uint8_t)((qs[l] & 15) | (v & 15) << 4);
                            qs[l + 4] = (uint8_t)((qs[l + 4] & 15) | (v >> 4) << 4);
                        } else {
                            qs[l] = (uint8_t)((qs[l] & 0xF0) | (v & 15));
                            qs[l + 4] = (uint8_t)((qs[l + 4] & 0xF0) | (v >> 4));
                        }
                    }
            }
            q4k_encode_scales(sc, m, w->scales);
            w->d = g[b].d[r], w->dmin = g[b].dmin[r];
        }
}

static int64_t n_blocks(lode_type t, int64_t cols) { return cols / (t == LODE_TYPE_Q4_K ? LODE_QK_K : 32); }

void lode_r16_pack_groups(lode_type t, void *W, int64_t cols, int64_t g0, int64_t g1) {
    LODE_ASSERT(lode_r16_supported(t, R16, cols));
    const size_t rs = lode_row_size(t, cols), gb = R16 * rs;
    char *tmp = lode_xmalloc(gb);
    for (int64_t g = g0; g < g1; g++) {
        char *p = (char *)W + (size_t)g * gb;
        memcpy(tmp, p, gb);
        pack_group(t, tmp, rs, n_blocks(t, cols), p);
    }
    lode_free(tmp);
}

void lode_r16_unpack(lode_type t, const void *W, int64_t rows, int64_t cols, void *out) {
    LODE_ASSERT(lode_r16_supported(t, rows, cols));
    const size_t rs = lode_row_size(t, cols), gb = R16 * rs;
    for (int64_t g = 0; g < rows / R16; g++)
        unpack_group(t, (const char *)W + (size_t)g * gb, n_blocks(t, cols), (char *)out + (size_t)g * gb, rs);
}

/* ---- fallback: a group unpacked into a per-thread buffer ------------------ */

static _Thread_local char *tl_rows;
static _Thread_local size_t tl_cap;
static pthread_key_t g_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void key_init(void) {
    if (pthread_key_create(&g_key, lode_free) != 0) LODE_ASSERT(!"pthread_key_create failed");
}

static const char *group_rows(lode_type t, const void *W, int64_t cols, int64_t g) {
    const size_t rs = lode_row_size(t, cols), gb = R16 * rs;
    if (tl_cap < gb) {
        pthread_once(&g_once, key_init);
        lode_free(tl_rows);
        tl_rows = lode_xmalloc(gb);
        tl_cap = gb;
        pthread_setspecific(g_key, tl_rows);
    }
    unpack_group(t, (const char *)W + (size_t)g * gb, n_blocks(t, cols), tl_rows, rs);
    return tl_rows;
}

/* ---- AVX-512 VNNI kernels --------------------------------------------------- */
#if LODE_X86
#define TGT512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define AI512 static inline __attribute__((always_inline)) TGT512

static inline int32_t ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The f32 sums of RB groups x TB tokens every kernel keeps in registers:
 * cleared at the start, stored as 16 consecutive outputs per group. */
AI512 void res_zero(__m512 res[4][4], const int RB, const int TB) {
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int k = 0; k < TB; k++) res[r][k] = _mm512_setzero_ps();
}

AI512 void res_store(__m512 res[4][4], float *Y, int64_t ldy, const int RB, const int TB) {
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int k = 0; k < TB; k++) _mm512_storeu_ps(Y + k * ldy + 16 * r, res[r][k]);
}

/* Q8_0: RB groups (16 rows each, gb bytes apart) x TB tokens over nb
 * blocks; the accumulators start at -128 * (activation block sum). */
AI512 void k_q8_0(const char *G, size_t gb, int64_t nb, const lode_block_q8a *x, int64_t xstride, float *Y,
                  int64_t ldy, const int RB, const int TB) {
    __m512 res[4][4];
    res_zero(res, RB, TB);
    for (int64_t b = 0; b < nb; b++) {
        __m512i acc[4][4];
#pragma GCC unroll 4
        for (int k = 0; k < TB; k++) {
            const __m512i init = _mm512_set1_epi32(-128 * (int32_t)x[k * xstride + b].s);
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) acc[r][k] = init;
        }
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            __m512i w[4];
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) w[r] = _mm512_loadu_si512(((const r16_q8_0 *)(G + r * gb))[b].q[s]);
#pragma GCC unroll 4
            for (int k = 0; k < TB; k++) {
                const __m512i xb = _mm512_set1_epi32(ld32(x[k * xstride + b].qs + 4 * s));
#pragma GCC unroll 4
                for (int r = 0; r < RB; r++) acc[r][k] = _mm512_dpbusd_epi32(acc[r][k], w[r], xb);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const r16_q8_0 *)(G + r * gb))[b].d));
#pragma GCC unroll 4
            for (int k = 0; k < TB; k++)
                res[r][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][k]), _mm512_mul_ps(dw, _mm512_set1_ps(x[k * xstride + b].d)),
                                            res[r][k]);
        }
    }
    res_store(res, Y, ldy, RB, TB);
}

/* acc[r][k] += the low-nibble values of group r dotted with activation
 * bytes xs[0..3] of token k, and the high ones with xs[4..7] (xs points into
 * token 0's block; token k's bytes are k * tstride further). */
AI512 void dp_nibbles(__m512i acc[4][4], const __m512i *lo, const __m512i *hi, const int8_t *xs, size_t tstride,
                       const int RB, const int TB) {
#pragma GCC unroll 4
    for (int k = 0; k < TB; k++) {
        const int8_t *p = xs + (size_t)k * tstride;
        const __m512i xa = _mm512_set1_epi32(ld32(p)), xb = _mm512_set1_epi32(ld32(p + 4));
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            acc[r][k] = _mm512_dpbusd_epi32(acc[r][k], lo[r], xa);
            acc[r][k] = _mm512_dpbusd_epi32(acc[r][k], hi[r], xb);
        }
    }
}
/* Q4_1/Q5_0/Q5_1: RB groups x TB tokens over nb blocks of rb bytes. The
 * fifth bits: byte u of each row's qh word spread over the lane's 4 bytes
 * (vpshufb), tested per byte (bit k: low nibble, bit 4 + k: high nibble)
 * and or'ed in as 16. */
AI512 void k_q5(const char *G, size_t gb, int64_t nb, size_t rb, size_t doff, const lode_block_q8a *x,
                int64_t xstride, float *Y, int64_t ldy, const bool FIVE, const bool MIN, const int RB, const int TB) {
    const __m512i m4 = _mm512_set1_epi8(15), c16 = _mm512_set1_epi8(16);
    const __m512i tlo = _mm512_set1_epi32(0x08040201), thi = _mm512_set1_epi32((int)0x80402010u);
    __m512i spread[4];
    for (int u = 0; u < 4; u++) {
        const __m128i c = _mm_setr_epi8((char)u, (char)u, (char)u, (char)u, (char)(4 + u), (char)(4 + u), (char)(4 + u),
                                        (char)(4 + u), (char)(8 + u), (char)(8 + u), (char)(8 + u), (char)(8 + u),
                                        (char)(12 + u), (char)(12 + u), (char)(12 + u), (char)(12 + u));
        spread[u] = _mm512_broadcast_i32x4(c);
    }
    __m512 res[4][4];
    res_zero(res, RB, TB);
    for (int64_t b = 0; b < nb; b++) {
        __m512i acc[4][4], H[4];
#pragma GCC unroll 4
        for (int k = 0; k < TB; k++) {
            const __m512i init = FIVE && !MIN ? _mm512_set1_epi32(-16 * (int32_t)x[k * xstride + b].s) : _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) acc[r][k] = init;
        }
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++)
            if (FIVE) H[r] = _mm512_loadu_si512(G + r * gb + (size_t)b * rb + Q5_QH);
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) {
            __m512i lo[4], hi[4];
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) {
                const __m512i w = _mm512_loadu_si512(G + r * gb + (size_t)b * rb + 64 * u);
                /* each record's lines a few records ahead: the hardware
                 * prefetcher alone left one core at 20 GB/s from memory */
                _mm_prefetch(G + r * gb + (size_t)b * rb + Q5_PF + 64 * u, _MM_HINT_T0);
                if (u < 2) _mm_prefetch(G + r * gb + (size_t)b * rb + Q5_PF + 256 + 64 * u, _MM_HINT_T0);
                lo[r] = _mm512_and_si512(w, m4);
                hi[r] = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
                if (FIVE) {
                    const __m512i hb = _mm512_shuffle_epi8(H[r], spread[u]);
                    lo[r] = _mm512_mask_add_epi8(lo[r], _mm512_test_epi8_mask(hb, tlo), lo[r], c16);
                    hi[r] = _mm512_mask_add_epi8(hi[r], _mm512_test_epi8_mask(hb, thi), hi[r], c16);
                }
            }
            dp_nibbles(acc, lo, hi, x[b].qs + 8 * u, (size_t)xstride * sizeof *x, RB, TB);
        }
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const char *rec = G + r * gb + (size_t)b * rb;
            const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(rec + doff)));
            const __m512 m = MIN ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(rec + doff + 32))) : d;
#pragma GCC unroll 4
            for (int k = 0; k < TB; k++) {
                const lode_block_q8a *xb = &x[k * xstride + b];
                const __m512 dx = _mm512_set1_ps(xb->d);
                res[r][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][k]), _mm512_mul_ps(d, dx), res[r][k]);
                if (MIN) res[r][k] = _mm512_fmadd_ps(m, _mm512_set1_ps(xb->d * (float)xb->s), res[r][k]);
            }
        }
    }
    res_store(res, Y, ldy, RB, TB);
}

/* The four (sum of 32 activations) pairs of a Q8_K block as int16 pairs:
 * pair p = (bs32[2p], bs32[2p+1]), bs32[j] = bsums[2j] + bsums[2j+1]. */
AI512 __m128i bs_pairs(const lode_block_q8k *xb) {
    const __m256i s = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)xb->bsums), _mm256_set1_epi16(1));
    const __m256i p = _mm256_packs_epi32(s, s); /* 32-bit lanes: (0,1) (2,3) (0,1) (2,3) | (4,5) (6,7) ... */
    return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 1, 4, 5, 0, 1, 4, 5)));
}

/* 6-bit value j of 16 rows: low nibble j of lo, 2 bits at hb + 2j of hi. */
AI512 __m512i six_bits(__m512i lo, __m512i hi, int j, int hb) {
    const int sh = hb + 2 * j - 4; /* moves the 2 bits to bits 4-5 */
    const __m512i h = sh >= 0 ? _mm512_srli_epi32(hi, (unsigned)sh) : _mm512_slli_epi32(hi, (unsigned)-sh);
    return _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(lo, 4 * j), _mm512_set1_epi32(15)),
                           _mm512_and_si512(h, _mm512_set1_epi32(0x30)));
}

/* Q4_K: RB groups x TB tokens over nsb super-blocks. */
AI512 void k_q4_k(const char *G, size_t gb, int64_t nsb, const lode_block_q8k *x, int64_t xstride, float *Y,
                  int64_t ldy, const int RB, const int TB) {
    const __m512i m4 = _mm512_set1_epi8(15);
    const size_t pfd = (RB == 1 && TB == 1 ? Q4K_PF_VEC : Q4K_PF_TILE) * sizeof(r16_q4_k);
    __m512 res[4][4];
    res_zero(res, RB, TB);
    for (int64_t i = 0; i < nsb; i++) {
        __m512 fsum[4][4];
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
            for (int k = 0; k < TB; k++) fsum[r][k] = _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __m512i acc[4][4];
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
                for (int k = 0; k < TB; k++) acc[r][k] = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++) {
                __m512i lo[4], hi[4];
#pragma GCC unroll 4
                for (int r = 0; r < RB; r++) {
                    const __m512i w = _mm512_loadu_si512(((const r16_q4_k *)(G + r * gb))[i].q[4 * j + u]);
                    const char *rec = (const char *)&((const r16_q4_k *)(G + r * gb))[i];
                    _mm_prefetch(rec + pfd + 64 * (4 * j + u), _MM_HINT_T0);
                    if (u == 0 && j < 4) _mm_prefetch(rec + pfd + 2048 + 64 * j, _MM_HINT_T0);
                    lo[r] = _mm512_and_si512(w, m4);
                    hi[r] = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
                }
                dp_nibbles(acc, lo, hi, x[i].qs + 32 * j + 8 * u, (size_t)xstride * sizeof *x, RB, TB);
            }
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) {
                const r16_q4_k *g = &((const r16_q4_k *)(G + r * gb))[i];
                const __m512i scj = six_bits(_mm512_loadu_si512(g->sc[0]), _mm512_loadu_si512(g->sc[2]), j, 0);
                const __m512 fs = _mm512_cvtepi32_ps(scj);
#pragma GCC unroll 4
                for (int k = 0; k < TB; k++) fsum[r][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][k]), fs, fsum[r][k]);
            }
        }
        /* mins: pair p of a row = (min 2p, min 2p+1) as int16, dotted with
         * the activation sums of those sub-blocks (vpdpwssd) */
        __m128i bp[4];
#pragma GCC unroll 4
        for (int k = 0; k < TB; k++) bp[k] = bs_pairs(&x[k * xstride + i]);
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const r16_q4_k *g = &((const r16_q4_k *)(G + r * gb))[i];
            const __m512i s1 = _mm512_loadu_si512(g->sc[1]), s2 = _mm512_loadu_si512(g->sc[2]);
            __m512i mp[4];
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++)
                mp[p] = _mm512_or_si512(six_bits(s1, s2, 2 * p, 16), _mm512_slli_epi32(six_bits(s1, s2, 2 * p + 1, 16), 16));
            const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g->d)),
                         dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g->dmin));
#pragma GCC unroll 4
            for (int k = 0; k < TB; k++) {
                __m512i msum = _mm512_dpwssd_epi32(_mm512_setzero_si512(), mp[0], _mm512_broadcastd_epi32(bp[k]));
                msum = _mm512_dpwssd_epi32(msum, mp[1], _mm512_broadcastd_epi32(_mm_srli_si128(bp[k], 4)));
                msum = _mm512_dpwssd_epi32(msum, mp[2], _mm512_broadcastd_epi32(_mm_srli_si128(bp[k], 8)));
                msum = _mm512_dpwssd_epi32(msum, mp[3], _mm512_broadcastd_epi32(_mm_srli_si128(bp[k], 12)));
                const __m512 dx = _mm512_set1_ps(x[k * xstride + i].d);
                res[r][k] = _mm512_fmadd_ps(fsum[r][k], _mm512_mul_ps(d, dx), res[r][k]);
                res[r][k] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(dm, dx), res[r][k]);
            }
        }
    }
    res_store(res, Y, ldy, RB, TB);
}

/* Groups [g0, g1) x ntok tokens: RB groups at a time, TB tokens at a time.
 * One token: 4 groups for Q8_0 and Q4_1/Q5_x (four vpdpbusd chains in
 * flight), 1 for Q4_K (its 8 sub-blocks give independent chains already, and
 * one stream prefetched two records ahead reads memory faster than two
 * streams: see Q4K_PF_VEC). More tokens: 2. */
static TGT512 void r16_vnni(lode_type t, const void *W, int64_t ncols, const void *Xq, int64_t ntok, float *Y,
                            int64_t ldy, int64_t g0, int64_t g1) {
    const size_t gb = R16 * lode_row_size(t, ncols);
    const int64_t nb = n_blocks(t, ncols);
    const bool q8 = t == LODE_TYPE_Q8_0;
    const int rb_max = ntok == 1 ? (t == LODE_TYPE_Q4_K ? 1 : 4) : 2;
    for (int64_t g = g0; g < g1; g += rb_max) {
        const int rb = g1 - g < rb_max ? (int)(g1 - g) : rb_max;
        const char *G = (const char *)W + (size_t)g * gb;
        for (int64_t t0 = 0; t0 < ntok; t0 += 4) {
            const int tb = ntok - t0 < 4 ? (int)(ntok - t0) : 4;
            float *Yt = Y + g * R16 + t0 * ldy;
            const int key = 10 * rb + tb;
            if (is_q5(t)) {
                const lode_block_q8a *x = (const lode_block_q8a *)Xq + t0 * nb;
                const size_t recb = gb / (size_t)nb, doff = q5_d_off(t);
#define C(R_, T_)                                                                                     \
    case 10 * R_ + T_:                                                                                \
        if (t == LODE_TYPE_Q5_0) k_q5(G, gb, nb, recb, doff, x, nb, Yt, ldy, true, false, R_, T_);     \
        else if (t == LODE_TYPE_Q5_1) k_q5(G, gb, nb, recb, doff, x, nb, Yt, ldy, true, true, R_, T_); \
        else k_q5(G, gb, nb, recb, doff, x, nb, Yt, ldy, false, true, R_, T_);                         \
        break;
                switch (key) { C(1, 1) C(1, 2) C(1, 3) C(1, 4) C(2, 1) C(2, 2) C(2, 3) C(2, 4) C(3, 1) C(4, 1) }
#undef C
            } else if (q8) {
                const lode_block_q8a *x = (const lode_block_q8a *)Xq + t0 * nb;
                switch (key) {
#define C(R_, T_) \
    case 10 * R_ + T_: k_q8_0(G, gb, nb, x, nb, Yt, ldy, R_, T_); break;
                    C(1, 1) C(1, 2) C(1, 3) C(1, 4) C(2, 1) C(2, 2) C(2, 3) C(2, 4) C(3, 1) C(4, 1)
#undef C
                }
            } else {
                const lode_block_q8k *x = (const lode_block_q8k *)Xq + t0 * nb;
                switch (key) {
#define C(R_, T_) \
    case 10 * R_ + T_: k_q4_k(G, gb, nb, x, nb, Yt, ldy, R_, T_); break;
                    C(1, 1) C(1, 2) C(1, 3) C(1, 4) C(2, 1) C(2, 2) C(2, 3) C(2, 4) C(3, 1) C(4, 1)
#undef C
                }
            }
        }
    }
}
#endif

static bool vnni_now(void) {
#if LODE_X86
    return lode_quant_cpu_level() >= LODE_CPU_AVX512 && lode__cpu_vnni();
#else
    return false;
#endif
}

bool lode_r16_fast(lode_type t) { return (t == LODE_TYPE_Q8_0 || t == LODE_TYPE_Q4_K || is_q5(t)) && vnni_now(); }

/* ---- entry points ------------------------------------------------------------ */

static void check_range(lode_type t, int64_t ncols, int64_t r0, int64_t r1) {
    LODE_ASSERT(r0 % R16 == 0 && r1 % R16 == 0 && r0 <= r1 && lode_r16_supported(t, R16, ncols));
}

void lode_r16_matmul_q8(lode_type t, const void *W, int64_t ncols, const void *Xq, int64_t ntok, float *Y,
                        int64_t ldy, int64_t r0, int64_t r1) {
    if (ntok <= 0 || r1 <= r0) return;
    check_range(t, ncols, r0, r1);
#if LODE_X86
    if (vnni_now()) {
        r16_vnni(t, W, ncols, Xq, ntok, Y, ldy, r0 / R16, r1 / R16);
        return;
    }
#endif
    for (int64_t g = r0 / R16; g < r1 / R16; g++)
        lode_matmul_q8_rows(t, group_rows(t, W, ncols, g), ncols, Xq, ntok, Y + g * R16, ldy, 0, R16);
}

void lode_r16_matmul_f32(lode_type t, const void *W, int64_t ncols, const float *X, int64_t ldx, int64_t ntok,
                         float *Y, int64_t ldy, int64_t r0, int64_t r1) {
    if (ntok <= 0 || r1 <= r0) return;
    check_range(t, ncols, r0, r1);
    for (int64_t g = r0 / R16; g < r1 / R16; g++) {
        const char *rows = group_rows(t, W, ncols, g);
        if (ntok == 1) lode_matvec_rows(t, rows, ncols, X, Y + g * R16, 0, R16);
        else lode_matmul_rows(t, rows, ncols, X, ldx, ntok, Y + g * R16, ldy, 0, R16);
    }
}
