/*
 * lode_quant.h — element types: block layouts, conversion to and from f32,
 * and the scalar reference dot products that every SIMD/CUDA path is tested
 * against.
 *
 * Block layouts are bit-for-bit GGML's (ggml-common.h semantics), so GGUF
 * files written by lode load in llama.cpp and vice versa.
 *
 * Supported for loading/compute: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0,
 * Q5_1, Q4_K, Q5_K, Q6_K. Supported for writing (from_f32): the same set.
 */
#ifndef LODE_QUANT_H
#define LODE_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lode_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lode_type_traits {
    const char *name;      /* "f32", "q8_0", "q4_k" ... (lower case) */
    int64_t block_size;    /* elements per block (1 for float types) */
    size_t type_size;      /* bytes per block */
    bool is_quantized;
    /* Convert n elements (n multiple of block_size). */
    void (*to_f32)(const void *src, float *dst, int64_t n);
    /* Reference quantizer: n multiple of block_size. */
    void (*from_f32)(const float *src, void *dst, int64_t n);
} lode_type_traits;

/* Traits for a supported type, or NULL when lode cannot compute with it. */
const lode_type_traits *lode_type_get(lode_type t);
/* Name for any id ("q5_1", "unknown(77)" ...); never NULL. */
const char *lode_type_name(lode_type t);
/* Parse "f32", "bf16", "q8_0", "q4_k" (case-insensitive); -1 if unknown. */
int lode_type_from_name(const char *name);
/* Bytes for a row of n elements; 0 if n is not a multiple of the block size
 * or the type is unsupported. */
size_t lode_row_size(lode_type t, int64_t n);

/* Scalar conversions. */
float lode_f16_to_f32(uint16_t h);
uint16_t lode_f32_to_f16(float f);
float lode_bf16_to_f32(uint16_t h);
uint16_t lode_f32_to_bf16(float f); /* round to nearest even, NaN kept */

/* Reference dot product of a row of type t (n elements) with f32 x:
 * dequantize-then-dot in f32 (exactly the dequantized weights). */
float lode_vec_dot_f32_ref(lode_type t, const void *row, const float *x, int64_t n);

/* ---- fast row kernels (engine/quant.c) --------------------------------
 * Both are pure functions of their arguments, thread-safe, and meant to be
 * called concurrently from worker threads on disjoint row ranges. They never
 * allocate in steady state: lode_matmul_rows keeps one fixed-size (256 KiB)
 * dequantization tile per calling thread, allocated on the thread's first
 * multi-token call and freed when the thread exits.
 *
 * y[r] = dot(row r of W, x) for r in [r0, r1); W has `ncols` columns of type
 * t, rows contiguous (row stride = lode_row_size(t, ncols)). x is f32[ncols].
 * Results agree with lode_vec_dot_f32_ref to within 1e-5 of sum|w_i*x_i|
 * (summation order differs, so not bit-exact). */
void lode_matvec_rows(lode_type t, const void *W, int64_t ncols, const float *x, float *y, int64_t r0,
                      int64_t r1);
/* Multi-token: Y[i*ldy + r] = dot(row r of W, X + i*ldx) for i < ntok and r
 * in [r0, r1). Same accuracy contract as lode_matvec_rows. */
void lode_matmul_rows(lode_type t, const void *W, int64_t ncols, const float *X, int64_t ldx, int64_t ntok,
                      float *Y, int64_t ldy, int64_t r0, int64_t r1);

/* Strided f32 product at the current level (the matmul tile kernel):
 * Y[t*ldy + r] = dot(W + r*ldw, X + t*ldx, k) for r < nr, t < nt, added to
 * Y when accumulate. Same accuracy contract as lode_matvec_rows; no
 * allocation. For attention (scores and weighted values as GEMMs). */
void lode_gemm_f32(const float *W, int64_t ldw, int64_t nr, const float *X, int64_t ldx, int64_t nt, float *Y,
                   int64_t ldy, int64_t k, bool accumulate);

/* C[i*ldc + j] = sum_p A[i*lda + p] * B[p*ldb + j] for i < m, j < n (B in
 * its own row-major layout, not transposed), added to C when accumulate; at
 * the current level, the accuracy contract of lode_matvec_rows, no
 * allocation. For prefill attention: K = C W (the latent times attn_k_b as
 * stored) and O = P V without transposing either. */
void lode_gemm_nn_f32(const float *A, int64_t lda, int64_t m, const float *B, int64_t ldb, int64_t n, float *C,
                      int64_t ldc, int64_t k, bool accumulate);

/* y[i] += a * x[i] for i < n at the current level (attention's weighted
 * values). */
void lode_axpy_f32(int64_t n, float a, const float *x, float *y);
/* Weighted sums of rows at the current level (attention's P V):
 * Y[h*ldy + d] += sum_{j<n} P[h*ldp + j] * X[j*ldx + d] for h < nh, d < k.
 * Per element the products of lode_axpy_f32 row by row, summed in row
 * order; AVX-512 keeps 8 heads x 32 columns in registers across the rows
 * (accuracy: lode_matvec_rows's contract). */
void lode_wsum_f32(const float *P, int64_t ldp, int64_t nh, const float *X, int64_t ldx, int64_t n, float *Y,
                   int64_t ldy, int64_t k);

/* Softmax and SwiGLU pieces at the current level. The SIMD levels compute
 * exp as 2^n * p(r), r = x - n ln 2 in [-ln2/2, ln2/2], p of degree 7 (within
 * 2 ulp of expf; results below 1.2e-38 flush to 0).
 * lode_scale_max_f32: x[i] *= scale; returns max(m0, max_i x[i]).
 * lode_exp_sub_f32:   x[i] = exp(x[i] - m); returns the sum of the new x.
 * lode_swiglu_f32:    out[i] = silu(g[i]) * u[i], silu(v) = v / (1 + exp(-v));
 *                     out may be g or u. */
float lode_scale_max_f32(float *x, int64_t n, float scale, float m0);
double lode_exp_sub_f32(float *x, int64_t n, float m);
void lode_swiglu_f32(const float *g, const float *u, float *out, int64_t n);

/* Instruction-set level of the kernels above. Chosen once from the CPU
 * (__builtin_cpu_supports) and the LODE_CPU environment variable
 * (scalar|avx2|avx512), which can only lower it. */
typedef enum lode_cpu_level {
    LODE_CPU_SCALAR = 0,
    LODE_CPU_AVX2 = 1,   /* AVX2 + FMA + F16C */
    LODE_CPU_AVX512 = 2  /* AVX-512 F/BW/VL/DQ */
} lode_cpu_level;

lode_cpu_level lode_quant_cpu_level(void);
/* Force a level (clamped to what the CPU supports) and return the level now
 * in effect; a negative level re-runs detection (CPU + LODE_CPU). For tests
 * and start-up: do not call while kernels run. */
lode_cpu_level lode_quant_set_cpu_level(lode_cpu_level level);
/* "scalar", "avx2", "avx512". */
const char *lode_cpu_level_name(lode_cpu_level level);

/* ---- int8-activation kernels (engine/quant_int8.c) ----------------------
 * The llama.cpp-style fast path for quantized weights: each activation row
 * is quantized once to int8 blocks (lode_block_q8a for Q8_0/Q4_0 weights,
 * lode_block_q8k for Q4_K/Q5_K/Q6_K), and rows are multiplied with integer
 * dot products (AVX2 vpmaddubsw/vpmaddwd) and f32 block scales. This is a
 * different, approximate algorithm from lode_matvec_rows: the activation
 * rounding error is |x_i - x^_i| <= d_x / 2 per block (d_x = max|x| / 127 of
 * the block), so
 *   |int8 dot - sum w_i x_i| <= sum_blocks (d_x / 2) sum|w_i| + 1e-5 sum|w_i x_i|.
 * Every SIMD level agrees with the scalar reference lode_vec_dot_q8_ref to
 * within 1e-5 of sum|w_i x^_i| (integer sums are exact; only the order of the
 * f32 block-scale accumulation differs). Enabled by default for those types
 * (lode_quant_int8_enabled); LODE_INT8=0 in the environment, or
 * lode_quant_set_int8(0), keeps the exact-f32 kernels everywhere (the
 * exactness suites run that way: they compare with the dequantized weights).
 * Levels: scalar reference; AVX2 (vpmaddubsw); at the AVX-512 level with
 * avx512vnni, vpdpbusd tile kernels for two or more tokens. */

/* Bytes of one quantized activation row of n elements for weights of type
 * t, or 0 when t has no int8 path (float types) or n does not tile. */
size_t lode_act_row_size(lode_type t, int64_t n);
/* Quantize one activation row x[n] for weights of type t into dst
 * (lode_act_row_size(t, n) bytes). Same result at every CPU level. */
void lode_act_quantize(lode_type t, const float *x, void *dst, int64_t n);
/* Scalar reference: dot(row of W (type t, n columns), quantized row xq). */
float lode_vec_dot_q8_ref(lode_type t, const void *row, const void *xq, int64_t n);
/* Y[i*ldy + r] = dot(row r of W, activation row i) for i < ntok, r in
 * [r0, r1); Xq holds ntok rows of lode_act_row_size(t, ncols) bytes. Pure,
 * thread-safe; a per-thread 256 KiB scratch as lode_matmul_rows. */
void lode_matmul_q8_rows(lode_type t, const void *W, int64_t ncols, const void *Xq, int64_t ntok, float *Y,
                         int64_t ldy, int64_t r0, int64_t r1);
/* Whether the engine uses the int8 path for types that have one: on unless
 * LODE_INT8=0 (or off/no); lode_quant_set_int8(0/1) overrides (-1: re-read
 * the env). */
bool lode_quant_int8_enabled(void);
void lode_quant_set_int8(int on);

/* ---- 16-row interleaved weights (engine/quant_r16.c) --------------------
 * The int8 path's load-time layout for Q8_0, Q4_K and llama.cpp's fallback
 * types Q4_1/Q5_0/Q5_1: every 16 rows are
 * interleaved in place into records that feed vpdpbusd directly (layout in
 * quant_r16.c), same byte size, lossless. A packed matrix is addressed in
 * groups of 16 rows only (r0, r1 multiples of 16). The kernels keep the
 * int8 contract above (lode_vec_dot_q8_ref on the unpacked rows); below the
 * AVX-512 VNNI level they unpack a group at a time and run the plain
 * kernels, so every level stays correct. */
/* Q8_0, Q4_1, Q5_0, Q5_1 (cols % 32 == 0) or Q4_K (cols % 256 == 0), with
 * rows % 16 == 0. */
bool lode_r16_supported(lode_type t, int64_t rows, int64_t cols);
/* Whether the r16 kernels run natively at the current level (AVX-512 VNNI);
 * packing pays off only then. */
bool lode_r16_fast(lode_type t);
/* Pack groups [g0, g1) (rows 16*g0 .. 16*g1-1) of W in place. */
void lode_r16_pack_groups(lode_type t, void *W, int64_t cols, int64_t g0, int64_t g1);
/* The plain GGML rows of a packed matrix, into out (the same byte size). */
void lode_r16_unpack(lode_type t, const void *W, int64_t rows, int64_t cols, void *out);
/* lode_matmul_q8_rows on a packed W. */
void lode_r16_matmul_q8(lode_type t, const void *W, int64_t ncols, const void *Xq, int64_t ntok, float *Y,
                        int64_t ldy, int64_t r0, int64_t r1);
/* lode_matmul_rows (ntok == 1: lode_matvec_rows) on a packed W: the exact
 * f32 path, through unpacked groups. */
void lode_r16_matmul_f32(lode_type t, const void *W, int64_t ncols, const float *X, int64_t ldx, int64_t ntok,
                         float *Y, int64_t ldy, int64_t r0, int64_t r1);

#ifdef __cplusplus
}
#endif
#endif
