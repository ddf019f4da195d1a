/*
 * lode_cuda.h — the CUDA backend's thin C interface (no CUDA types). Built
 * from the kernels/ .cu files when nvcc is present; otherwise kernels/cuda_none.c
 * provides the same functions reporting that CUDA is not compiled in.
 *
 * The backend mirrors the CPU engine (the reference): the engine's loader
 * binds and (optionally) quantizes the weights as usual, then
 * lode_cuda_model_new uploads them; lode_model_eval hands the planned batch
 * (positions, KV cells, f32 embeddings) to lode_cuda_eval, which runs every
 * layer, the final norm and the output head on the device and copies the
 * wanted logits back. The latent KV cache lives on the device (one f32 row
 * per layer and cell, the same layout as the host cache); the host lode_kv
 * keeps the cell/sequence bookkeeping. See docs/cuda.md.
 *
 * A binary built with CUDA must still run on machines with no GPU or driver:
 * every CUDA runtime error becomes a lode_status plus a message, never an
 * abort.
 */
#ifndef LODE_CUDA_H
#define LODE_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__cplusplus) && !defined(_Noreturn)
#define _Noreturn [[noreturn]] /* lode_base.h is C11 */
#endif
#include "lode_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices (0 when none, no driver, or not built);
 * `why` (may be NULL) receives a message the user can act on when 0. */
int lode_cuda_device_count(char *why, size_t why_len);
/* Name of device i, or "" when unavailable. */
const char *lode_cuda_device_name(int i);
/* 1 when the binary was built with the CUDA backend. */
int lode_cuda_compiled(void);

struct lode_model;
struct lode_kv;
struct lode_eval_plan;
typedef struct lode_cuda_model lode_cuda_model;

/* Upload the bound weights of `m` to device 0. Float matrices become bf16
 * (f32 when the environment has LODE_CUDA_F32=1: tests), Q8_0/Q4_K/Q6_K
 * stay quantized, other block types are dequantized to bf16. Fails with a
 * message (LODE_ERR_BACKEND / LODE_ERR_NOMEM / LODE_ERR_UNSUPPORTED), never
 * aborts. */
lode_status lode_cuda_model_new(struct lode_model *m, lode_cuda_model **out, lode_error *err);
void lode_cuda_model_free(lode_cuda_model *cm); /* NULL ok */
/* "cuda:0 (NVIDIA H100 80GB HBM3), bf16 weights, 31.4 GB on the device" */
const char *lode_cuda_model_describe(const lode_cuda_model *cm);
/* Free the device half of a KV cache (kv->cuda); NULL ok. */
void lode_cuda_kv_free(void *dev_kv);
/* Run the layers and head for a planned batch: x is the batch's f32
 * embeddings [n][H] (host), want as in lode_batch, logits packed like the
 * CPU engine's. The host KV bookkeeping is already updated by the caller,
 * which rolls it back on failure. */
lode_status lode_cuda_eval(struct lode_model *m, struct lode_kv *kv, const struct lode_eval_plan *p,
                           const float *x, const bool *want, float *logits, lode_error *err);

/* ---- kernel test hooks (tests/unit/test_cuda.c) ----------------------
 * Each runs one device kernel path on host data and copies the result back.
 * f32: keep float weights f32 on the device (else bf16). */
/* Y[t][r] = row r of W (type, rows x cols, host bytes) · X[t], t < n.
 * n <= 8 takes the dequantizing matvec path, larger n the GEMM path. */
lode_status lode_cuda_test_matmul(int type, const void *W, int64_t rows, int64_t cols, const float *X, int64_t n,
                                  float *Y, bool f32, lode_error *err);
/* y[t] = RMSNorm(x[t]) * w for n rows of H. */
lode_status lode_cuda_test_rmsnorm(const float *x, const float *w, int64_t n, int64_t H, float eps, float *y,
                                   lode_error *err);
/* In-place RoPE of n vectors of 2*n_pairs values at positions pos[i]
 * (pairs (2i, 2i+1), or (i, i+n_pairs) when neox), like lode__rope. */
lode_status lode_cuda_test_rope(float *x, int64_t n, int64_t n_pairs, const float *theta, const int64_t *pos,
                                bool neox, float mag, lode_error *err);

/* Runs WITHOUT a GPU: the device kernels' dequantization (compiled for the
 * host too) of one row of type f32 (as stored on the device), q8_0, q4_k or
 * q6_k into out[cols]; LODE_ERR_UNSUPPORTED for other types or builds
 * without CUDA. bf16 rows: type LODE_TYPE_BF16 (raw bf16 pairs). */
lode_status lode_cuda_selftest_dequant(int type, const void *row, int64_t cols, float *out, lode_error *err);
/* Runs WITHOUT a GPU: the long-prefill attention's GEMM/softmax sequence
 * (strides, batching, the shared rope key, causal masking, query blocks of
 * q_block, 0 = automatic) executed by a host emulation of cuBLAS, against a
 * direct causal attention; *max_err = the largest absolute difference.
 * shared_rope_key: the MLA shape, else GQA with interleaved K/V rows. */
lode_status lode_cuda_selftest_attention(bool shared_rope_key, int64_t q_block, double *max_err, lode_error *err);
/* Runs WITHOUT a GPU: the MLA matrices uploaded for a deepseek2 model
 * (W_UKᵀ, W_UK, W_UV built from attn_k_b/attn_v_b or kv_b_proj), applied on
 * the host to random vectors, against the CPU engine's own products on the
 * bound tensors; *max_err = the largest absolute difference. */
lode_status lode_cuda_selftest_mla_weights(struct lode_model *m, double *max_err, lode_error *err);
/* Runs WITHOUT a GPU: plan a device pass for an evaluation plan `p` (as
 * eval.c builds it) and check its invariants; an error names the first
 * property that fails. */
lode_status lode_cuda_selftest_plan(struct lode_model *m, struct lode_kv *kv, const struct lode_eval_plan *p,
                                    const bool *want, lode_error *err);
/* Device 0's sustained HBM read bandwidth (GB/s, 1e9 bytes), measured by
 * a streaming read kernel over a 4 GiB buffer: the decode roofline. */
lode_status lode_cuda_measure_bandwidth(double *read_gbps, lode_error *err);

#ifdef __cplusplus
}
#endif
#endif
