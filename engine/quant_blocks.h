/*
 * quant_blocks.h — the one definition of lode's quantized block layouts,
 * shared by the C kernels (engine/quant.c) and the CUDA kernels (kernels/).
 *
 * Every layout is byte-for-byte GGML's (ggml-common.h), so a GGUF tensor's
 * bytes can be reinterpreted as an array of these structs. Half-precision
 * fields are raw IEEE binary16 bit patterns (uint16_t), never a compiler
 * half type, so the header means the same thing in C11, C++ and nvcc.
 *
 * Element order inside each block (n = element index within the block):
 *   Q8_0  value = qs[n] * d.
 *   Q4_0  value = (nibble - 8) * d; qs[i] low nibble is element i, high
 *         nibble is element i + 16.
 *   Q4_K  256 elements as 8 sub-blocks of 32 (sub-block = n / 32), value =
 *         d*sc[j]*q - dmin*m[j] with 6-bit sc/m packed in scales[12] (see
 *         lode_q4k_scale_min). For chunk c (64 elements), qs[32c + l] holds
 *         element 64c + l in its low nibble and 64c + 32 + l in its high one.
 *   Q5_K  as Q4_K plus a fifth bit: qh[l] bit 2c is the high bit of element
 *         64c + l, bit 2c + 1 that of element 64c + 32 + l.
 *   Q6_K  16 sub-blocks of 16 (sub-block = n / 16) with int8 scales; value =
 *         d * scales[n / 16] * (q - 32), q six bits. For half h (128
 *         elements) and l < 32, with ql' = ql + 64h and qh' = qh + 32h:
 *           element 128h + l      : ql'[l] low nibble,      qh'[l] bits 0-1
 *           element 128h + l + 32 : ql'[l + 32] low nibble, qh'[l] bits 2-3
 *           element 128h + l + 64 : ql'[l] high nibble,     qh'[l] bits 4-5
 *           element 128h + l + 96 : ql'[l + 32] high nibble, qh'[l] bits 6-7
 */
#ifndef LODE_QUANT_BLOCKS_H
#define LODE_QUANT_BLOCKS_H

#include <stdbool.h>
#include <stdint.h>

#if defined(__cplusplus)
#define LODE_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define LODE_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

/* Helpers below are usable from CUDA device code too. */
#if defined(__CUDACC__)
#define LODE_HOST_DEVICE __host__ __device__
#else
#define LODE_HOST_DEVICE
#endif

#define LODE_QK8_0 32
#define LODE_QK4_0 32
#define LODE_QK_K 256
#define LODE_K_SCALE_SIZE 12

typedef struct lode_block_q8_0 {
    uint16_t d;              /* f16 scale */
    int8_t qs[LODE_QK8_0];   /* (32) signed quants */
} lode_block_q8_0;
LODE_STATIC_ASSERT(sizeof(lode_block_q8_0) == 2 + LODE_QK8_0, "q8_0 block size");

typedef struct lode_block_q4_0 {
    uint16_t d;                  /* f16 scale */
    uint8_t qs[LODE_QK4_0 / 2];  /* (16) nibbles: low = 0..15, high = 16..31 */
} lode_block_q4_0;
LODE_STATIC_ASSERT(sizeof(lode_block_q4_0) == 2 + LODE_QK4_0 / 2, "q4_0 block size");

typedef struct lode_block_q4_1 {
    uint16_t d;                  /* f16 scale */
    uint16_t m;                  /* f16 min: x = d * q + m */
    uint8_t qs[16];              /* nibbles as Q4_0 */
} lode_block_q4_1;
LODE_STATIC_ASSERT(sizeof(lode_block_q4_1) == 20, "q4_1 block size");

typedef struct lode_block_q5_0 {
    uint16_t d;                  /* f16 scale: x = d * (q - 16) */
    uint8_t qh[4];               /* bit j (little-endian u32) = fifth bit of element j */
    uint8_t qs[16];              /* low 4 bits as Q4_0: low nibble element j, high nibble j + 16 */
} lode_block_q5_0;
LODE_STATIC_ASSERT(sizeof(lode_block_q5_0) == 22, "q5_0 block size");

typedef struct lode_block_q5_1 {
    uint16_t d;                  /* f16 scale */
    uint16_t m;                  /* f16 min: x = d * q + m */
    uint8_t qh[4];               /* as Q5_0 */
    uint8_t qs[16];
} lode_block_q5_1;
LODE_STATIC_ASSERT(sizeof(lode_block_q5_1) == 24, "q5_1 block size");

/* The 5- or 4-bit value of element e (0..31) of a Q4_1/Q5_0/Q5_1 block:
 * low 4 bits from qs (low nibble for e < 16), fifth bit from qh. */
static inline LODE_HOST_DEVICE int lode_q5_value(const uint8_t *qs, const uint8_t *qh, int e) {
    const int lo = e < 16 ? qs[e] & 0xF : qs[e - 16] >> 4;
    if (!qh) return lo;
    const uint32_t h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
    return lo | (int)((h >> e) & 1) << 4;
}

typedef struct lode_block_q4_k {
    uint16_t d;                          /* f16 super-block scale for sc */
    uint16_t dmin;                       /* f16 super-block scale for m */
    uint8_t scales[LODE_K_SCALE_SIZE];   /* (12) 8 x 6-bit sc + 8 x 6-bit m */
    uint8_t qs[LODE_QK_K / 2];           /* (128) 4-bit quants */
} lode_block_q4_k;
LODE_STATIC_ASSERT(sizeof(lode_block_q4_k) == 4 + LODE_K_SCALE_SIZE + LODE_QK_K / 2, "q4_k block size");

typedef struct lode_block_q5_k {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[LODE_K_SCALE_SIZE];   /* (12) as Q4_K */
    uint8_t qh[LODE_QK_K / 8];           /* (32) fifth bits */
    uint8_t qs[LODE_QK_K / 2];           /* (128) low 4 bits */
} lode_block_q5_k;
LODE_STATIC_ASSERT(sizeof(lode_block_q5_k) == 4 + LODE_K_SCALE_SIZE + LODE_QK_K / 8 + LODE_QK_K / 2,
                   "q5_k block size");

typedef struct lode_block_q6_k {
    uint8_t ql[LODE_QK_K / 2];       /* (128) low 4 bits */
    uint8_t qh[LODE_QK_K / 4];       /* (64) high 2 bits */
    int8_t scales[LODE_QK_K / 16];   /* (16) 8-bit sub-block scales */
    uint16_t d;                      /* f16 super-block scale */
} lode_block_q6_k;
LODE_STATIC_ASSERT(sizeof(lode_block_q6_k) == LODE_QK_K / 2 + LODE_QK_K / 4 + LODE_QK_K / 16 + 2,
                   "q6_k block size");

/* Unpack the 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K
 * block: j < 4 keep them in the low 6 bits of bytes j and j + 4; j >= 4 keep
 * their low 4 bits in byte j + 4 (scale low nibble, min high nibble) and
 * their top 2 bits in the top bits of bytes j - 4 (scale) and j (min). */
static inline LODE_HOST_DEVICE void lode_q4k_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = (uint8_t)(q[j] & 63);
        *m = (uint8_t)(q[j + 4] & 63);
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* ---- activation blocks of the int8 path (lode-internal, never in files) --
 * Activations are quantized once per row (engine/quant_int8.c): symmetric,
 * d = max|x| / 127, q = round-to-nearest-even(x / d) in [-127, 127].
 *   lode_block_q8a  32 values and their sum (the AVX-512 VNNI kernels take
 *                   unsigned weights and subtract offset * sum), for Q8_0
 *                   and Q4_0 weights.
 *   lode_block_q8k  256 values plus the sums of each 16 (bsums), for the
 *                   K-quants (their mins / offsets need the sums). */
typedef struct lode_block_q8a {
    float d;
    int16_t s;   /* sum of qs */
    int16_t pad; /* 0 */
    int8_t qs[32];
} lode_block_q8a;
LODE_STATIC_ASSERT(sizeof(lode_block_q8a) == 40, "q8a block size");

typedef struct lode_block_q8k {
    float d;
    int16_t bsums[LODE_QK_K / 16];
    int8_t qs[LODE_QK_K];
} lode_block_q8k;
LODE_STATIC_ASSERT(sizeof(lode_block_q8k) == 4 + 2 * (LODE_QK_K / 16) + LODE_QK_K, "q8k block size");

/* Whether the CPU has AVX-512 F/BW/VL/DQ and VNNI (quant_int8.c). */
bool lode__cpu_vnni(void);

#endif /* LODE_QUANT_BLOCKS_H */
