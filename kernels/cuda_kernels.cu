// cuda_kernels.cu — lode's CUDA kernels and their launchers: dequantizing
// matvec (bf16/f32/Q8_0/Q4_K/Q6_K), dequant + cuBLAS GEMM, RMSNorm, RoPE,
// the MLA latent-cache store and split-KV absorbed attention, causal flash
// attention, MoE routing and combination. Semantics follow the CPU engine
// (engine/ops.c, arch_deepseek2.c, arch_llama.c), which is the reference.
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "cuda_impl.cuh"

namespace lcu {

#define LAUNCH_CHECK(c, what) check((c), cudaGetLastError(), (what))

// ---- element loads: 8 consecutive elements starting at i (i % 8 == 0) ----
// Host and device: the host instantiation backs lode_cuda_selftest_dequant,
// which checks the block indexing against the engine without a GPU.
#define HD __host__ __device__ __forceinline__
#ifdef __CUDA_ARCH__
#define HD_UNROLL _Pragma("unroll")
#else
#define HD_UNROLL
#endif
HD float h2f(uint16_t u) { return __half2float(__ushort_as_half(u)); }
HD float bf2f(uint32_t u16) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u16 << 16);
#else
    const uint32_t b = u16 << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
#endif
}

template <int TY> HD void load8(const uint8_t *row, int i, float w[8]);

template <> HD void load8<DT_F32>(const uint8_t *row, int i, float w[8]) {
    const float4 a = *(const float4 *)(row + (size_t)i * 4), b = *(const float4 *)(row + (size_t)i * 4 + 16);
    w[0] = a.x, w[1] = a.y, w[2] = a.z, w[3] = a.w, w[4] = b.x, w[5] = b.y, w[6] = b.z, w[7] = b.w;
}
template <> HD void load8<DT_BF16>(const uint8_t *row, int i, float w[8]) {
    const uint4 v = *(const uint4 *)(row + (size_t)i * 2);
    w[0] = bf2f(v.x & 0xffff), w[1] = bf2f(v.x >> 16), w[2] = bf2f(v.y & 0xffff), w[3] = bf2f(v.y >> 16);
    w[4] = bf2f(v.z & 0xffff), w[5] = bf2f(v.z >> 16), w[6] = bf2f(v.w & 0xffff), w[7] = bf2f(v.w >> 16);
}
template <> HD void load8<DT_Q8_0>(const uint8_t *row, int i, float w[8]) {
    const uint8_t *b = row + (size_t)(i >> 5) * sizeof(lode_block_q8_0);
    const float d = h2f((uint16_t)(b[0] | (b[1] << 8)));
    const int8_t *q = (const int8_t *)(b + 2 + (i & 31));
HD_UNROLL
    for (int k = 0; k < 8; k++) w[k] = d * (float)q[k];
}
template <> HD void load8<DT_Q4_K>(const uint8_t *row, int i, float w[8]) {
    const uint8_t *b = row + (size_t)(i >> 8) * sizeof(lode_block_q4_k);
    const int n = i & 255;
    const float d = h2f((uint16_t)(b[0] | (b[1] << 8))), dmin = h2f((uint16_t)(b[2] | (b[3] << 8)));
    uint8_t sc, mn;
    lode_q4k_scale_min(n >> 5, b + 4, &sc, &mn);
    const float ds = d * (float)sc, dm = dmin * (float)mn;
    const uint2 qq = *(const uint2 *)(b + 16 + 32 * (n >> 6) + (n & 31));
    const int sh = (n & 32) ? 4 : 0;
HD_UNROLL
    for (int k = 0; k < 8; k++) {
        const uint32_t word = k < 4 ? qq.x : qq.y;
        const int q = (int)((word >> (8 * (k & 3) + sh)) & 15);
        w[k] = ds * (float)q - dm;
    }
}
template <> HD void load8<DT_Q6_K>(const uint8_t *row, int i, float w[8]) {
    const uint8_t *b = row + (size_t)(i >> 8) * sizeof(lode_block_q6_k);
    const int n = i & 255, h = n >> 7, r = n & 127, qtr = r >> 5, l0 = r & 31;
    const uint8_t *ql = b + 64 * h + l0 + ((qtr & 1) ? 32 : 0);
    const uint8_t *qh = b + 128 + 32 * h + l0;
    const float d = h2f((uint16_t)(b[208] | (b[209] << 8))) * (float)(int8_t)b[192 + (n >> 4)];
HD_UNROLL
    for (int k = 0; k < 8; k++) {
        const int lo = qtr >= 2 ? (ql[k] >> 4) : (ql[k] & 15);
        const int hb = (qh[k] >> (2 * qtr)) & 3;
        w[k] = d * (float)((lo | (hb << 4)) - 32);
    }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// One warp: dot products of one weight row with n <= 8 vectors.
template <int TY>
__device__ __forceinline__ void row_dots(const uint8_t *row, int cols, const float *X, int64_t ldx, int n,
                                         int lane, float s[8]) {
    for (int i = lane * 8; i < cols; i += 256) {
        float w[8];
        load8<TY>(row, i, w);
        const int lim = cols - i < 8 ? cols - i : 8;
#pragma unroll
        for (int t = 0; t < 8; t++) {
            if (t >= n) break;
            const float *x = X + (int64_t)t * ldx + i;
            float a = 0.f;
            if (lim == 8) {
#pragma unroll
                for (int k = 0; k < 8; k++) a = fmaf(w[k], __ldg(x + k), a);
            } else {
                for (int k = 0; k < lim; k++) a = fmaf(w[k], __ldg(x + k), a);
            }
            s[t] += a;
        }
    }
}

template <int TY>
__global__ void k_mv(const uint8_t *__restrict__ W, size_t rb, int rows, int cols, const float *__restrict__ X,
                     int64_t ldx, int n, float *__restrict__ Y, int64_t ldy, int acc) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int r = blockIdx.x * 8 + warp;
    if (r >= rows) return;
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    row_dots<TY>(W + (size_t)r * rb, cols, X, ldx, n, lane, s);
#pragma unroll
    for (int t = 0; t < 8; t++) {
        if (t >= n) break;
        const float v = warp_sum(s[t]);
        if (lane == 0) {
            float *y = Y + (int64_t)t * ldy + r;
            *y = acc ? *y + v : v;
        }
    }
}

template <int TY>
__global__ void k_mv_grouped(const uint8_t *__restrict__ W, size_t rb, int rows, int cols, const int32_t *ids,
                             int emod, const float *__restrict__ X, int64_t ldx, int xdiv, float *__restrict__ Y,
                             int64_t ldy) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int r = blockIdx.x * 8 + warp, p = blockIdx.y;
    if (r >= rows) return;
    const int e = ids ? ids[p] : p % emod;
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    row_dots<TY>(W + ((size_t)e * rows + r) * rb, cols, X + (int64_t)(p / xdiv) * ldx, 0, 1, lane, s);
    const float v = warp_sum(s[0]);
    if (lane == 0) Y[(int64_t)p * ldy + r] = v;
}

// Dequantize a matrix into a dense bf16 (or f32) [rows][ld] buffer.
template <int TY, bool F32OUT>
__global__ void k_dequant(const uint8_t *__restrict__ W, size_t rb, int64_t rows, int cols, void *out, int64_t ld) {
    const int64_t per_row = (cols + 7) / 8, total = rows * per_row;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = idx / per_row;
        const int i = (int)(idx % per_row) * 8;
        float w[8];
        load8<TY>(W + (size_t)r * rb, i, w);
        const int lim = cols - i < 8 ? cols - i : 8;
        if (F32OUT) {
            float *o = (float *)out + r * ld + i;
            for (int k = 0; k < lim; k++) o[k] = w[k];
        } else {
            __nv_bfloat16 *o = (__nv_bfloat16 *)out + r * ld + i;
            for (int k = 0; k < lim; k++) o[k] = __float2bfloat16_rn(w[k]);
        }
    }
}

__global__ void k_to_bf16(const float *__restrict__ X, int64_t ldx, int64_t n, int cols, __nv_bfloat16 *out,
                          int64_t ld) {
    const int64_t total = n * cols;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = idx / cols, i = idx % cols;
        out[t * ld + i] = __float2bfloat16_rn(X[t * ldx + i]);
    }
}

static int grid_for(int64_t total, int per_block) {
    int64_t g = (total + per_block - 1) / per_block;
    if (g > 65535LL * 16) g = 65535LL * 16;
    return (int)(g < 1 ? 1 : g);
}

#define DISPATCH_TY(dt, KERNEL_CALL)                                                                             \
    switch (dt) {                                                                                                \
    case DT_F32: { constexpr int TY_ = DT_F32; KERNEL_CALL; } break;                                             \
    case DT_BF16: { constexpr int TY_ = DT_BF16; KERNEL_CALL; } break;                                           \
    case DT_Q8_0: { constexpr int TY_ = DT_Q8_0; KERNEL_CALL; } break;                                           \
    case DT_Q4_K: { constexpr int TY_ = DT_Q4_K; KERNEL_CALL; } break;                                           \
    default: { constexpr int TY_ = DT_Q6_K; KERNEL_CALL; } break;                                                \
    }

static const int MV_MAX = 8;

void mm(ctx *c, const dmat &W, const float *X, int64_t ldx, int64_t n, float *Y, int64_t ldy, bool acc) {
    if (n <= 0 || W.rows <= 0) return;
    if (n <= MV_MAX) {
        dim3 grid((unsigned)((W.rows + 7) / 8));
        DISPATCH_TY(W.dt, (k_mv<TY_><<<grid, 256, 0, c->st>>>(W.d, W.rb, (int)W.rows, (int)W.cols, X, ldx, (int)n, Y,
                                                             ldy, acc ? 1 : 0)));
        LAUNCH_CHECK(c, "matvec");
        return;
    }
    const void *A;
    cudaDataType_t at;
    int64_t lda;
    const bool f32w = W.dt == DT_F32 || (W.dt != DT_BF16 && c->f32);
    if (W.dt == DT_F32) {
        A = W.d, at = CUDA_R_32F, lda = (int64_t)(W.rb / 4);
    } else if (W.dt == DT_BF16) {
        A = W.d, at = CUDA_R_16BF, lda = (int64_t)(W.rb / 2);
    } else {
        const size_t need = (size_t)W.rows * (size_t)W.cols * (f32w ? 4 : 2);
        if (need > c->dq_bytes) {
            if (c->dq) cudaFree(c->dq);
            c->dq = nullptr;
            c->dq_bytes = 0;
            if (!check(c, cudaMalloc(&c->dq, need), "dequantization scratch")) {
                c->dq = nullptr;
                return;
            }
            c->dq_bytes = need;
        }
        const int g = grid_for(W.rows * ((W.cols + 7) / 8), 256);
        if (f32w) {
            DISPATCH_TY(W.dt, (k_dequant<TY_, true><<<g, 256, 0, c->st>>>(W.d, W.rb, W.rows, (int)W.cols, c->dq, W.cols)));
        } else {
            DISPATCH_TY(W.dt, (k_dequant<TY_, false><<<g, 256, 0, c->st>>>(W.d, W.rb, W.rows, (int)W.cols, c->dq, W.cols)));
        }
        LAUNCH_CHECK(c, "dequantize");
        A = c->dq, at = f32w ? CUDA_R_32F : CUDA_R_16BF, lda = W.cols;
    }
    const void *B;
    cudaDataType_t bt;
    int64_t ldb;
    if (at == CUDA_R_32F) {
        B = X, bt = CUDA_R_32F, ldb = ldx;
    } else {
        ldb = (W.cols + 7) & ~(int64_t)7;
        __nv_bfloat16 *xb = (__nv_bfloat16 *)arena(c, (size_t)(n * ldb) * 2);
        if (!xb) return;
        k_to_bf16<<<grid_for(n * W.cols, 256), 256, 0, c->st>>>(X, ldx, n, (int)W.cols, xb, ldb);
        LAUNCH_CHECK(c, "to bf16");
        B = xb, bt = CUDA_R_16BF;
    }
    const float alpha = 1.f, beta = acc ? 1.f : 0.f;
    cublasStatus_t s = cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)W.rows, (int)n, (int)W.cols, &alpha, A,
                                    at, (int)lda, B, bt, (int)ldb, &beta, Y, CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS && c->berr == CUBLAS_STATUS_SUCCESS) {
        c->berr = s;
        c->where = "cublasGemmEx";
    }
}

void mv_grouped(ctx *c, const dmat &W, int64_t rows, const int32_t *ids, int64_t emod, const float *X, int64_t ldx,
                int64_t xdiv, int64_t np, float *Y, int64_t ldy) {
    if (np <= 0 || rows <= 0) return;
    dim3 grid((unsigned)((rows + 7) / 8), (unsigned)np);
    DISPATCH_TY(W.dt, (k_mv_grouped<TY_><<<grid, 256, 0, c->st>>>(W.d, W.rb, (int)rows, (int)W.cols, ids, (int)emod,
                                                                  X, ldx, (int)xdiv, Y, ldy)));
    LAUNCH_CHECK(c, "grouped matvec");
}

// ---- block reductions ---------------------------------------------------
__device__ float block_sum(float v, float *sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    float t = 0.f;
    for (int i = 0; i < nw; i++) t += sh[i];
    return t;
}

// ---- RMSNorm: y = x / sqrt(mean(x²) + eps) * w -------------------------------
__global__ void k_rmsnorm(const float *x, int64_t ldx, const float *w, float *y, int64_t ldy, int H, float eps,
                          const int32_t *rows) {
    __shared__ float sh[32];
    const int64_t t = blockIdx.x, src = rows ? rows[t] : t;
    const float *xr = x + src * ldx;
    float ss = 0.f;
    for (int i = threadIdx.x; i < H; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, sh);
    const float r = (float)(1.0 / sqrt((double)ss / (double)H + (double)eps));
    float *yr = y + t * ldy;
    for (int i = threadIdx.x; i < H; i += blockDim.x) yr[i] = xr[i] * r * w[i];
}

void rmsnorm(ctx *c, const float *x, int64_t ldx, const float *w, float *y, int64_t ldy, int64_t n, int64_t H,
             float eps, const int32_t *rows) {
    if (n <= 0) return;
    k_rmsnorm<<<(unsigned)n, 256, 0, c->st>>>(x, ldx, w, y, ldy, (int)H, eps, rows);
    LAUNCH_CHECK(c, "rmsnorm");
}

// ---- RoPE (lode__rope): angle in double like the CPU --------------------------
__device__ __forceinline__ void rope_vec(float *x, int n_pairs, const float *theta, double pos, bool neox, float mag,
                                         int tid, int nthr) {
    for (int i = tid; i < n_pairs; i += nthr) {
        double s, co;
        sincos(pos * (double)theta[i], &s, &co);
        const float c = (float)co * mag, sn = (float)s * mag;
        float *a = neox ? &x[i] : &x[2 * i];
        float *b = neox ? &x[i + n_pairs] : &x[2 * i + 1];
        const float x0 = *a, x1 = *b;
        *a = x0 * c - x1 * sn;
        *b = x0 * sn + x1 * c;
    }
}

// Token t: nvec vectors at x + t*ld + v*vstride.
__global__ void k_rope(float *x, int64_t ld, int nvec, int64_t vstride, int n_pairs, const float *theta,
                       const int32_t *pos, int neox, float mag) {
    const int64_t t = blockIdx.x;
    const int total = nvec * n_pairs;
    for (int j = threadIdx.x; j < total; j += blockDim.x) {
        const int v = j / n_pairs, i = j % n_pairs;
        float *xv = x + t * ld + (int64_t)v * vstride;
        // one pair per thread
        double s, co;
        sincos((double)pos[t] * (double)theta[i], &s, &co);
        const float c = (float)co * mag, sn = (float)s * mag;
        float *a = neox ? &xv[i] : &xv[2 * i];
        float *b = neox ? &xv[i + n_pairs] : &xv[2 * i + 1];
        const float x0 = *a, x1 = *b;
        *a = x0 * c - x1 * sn;
        *b = x0 * sn + x1 * c;
    }
}

void rope(ctx *c, float *x, int64_t ld, int64_t nvec, int64_t vstride, int64_t n, int64_t n_pairs, const float *theta,
          const int32_t *pos, bool neox, float mag) {
    if (n <= 0) return;
    k_rope<<<(unsigned)n, 128, 0, c->st>>>(x, ld, (int)nvec, vstride, (int)n_pairs, theta, pos, neox ? 1 : 0, mag);
    LAUNCH_CHECK(c, "rope");
}

// ---- elementwise --------------------------------------------------------------
__global__ void k_silu_mul(float *g, const float *u, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float a = g[i];
        g[i] = a / (1.0f + expf(-a)) * u[i];
    }
}
void silu_mul(ctx *c, float *g, const float *u, int64_t n) {
    if (n <= 0) return;
    k_silu_mul<<<grid_for(n, 256), 256, 0, c->st>>>(g, u, n);
    LAUNCH_CHECK(c, "silu");
}
__global__ void k_add(float *y, const float *x, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}
void add(ctx *c, float *y, const float *x, int64_t n) {
    if (n <= 0) return;
    k_add<<<grid_for(n, 256), 256, 0, c->st>>>(y, x, n);
    LAUNCH_CHECK(c, "add");
}

// ---- MLA cache store: row = [RMSNorm(c_kv) ‖ k_pe] (k_pe roped afterwards) ----
__global__ void k_mla_kv_store(const float *ckv, const float *w, float *kvl, int64_t width, const int32_t *cell,
                               int dc, int dr, float eps) {
    __shared__ float sh[32];
    const int64_t t = blockIdx.x;
    const float *src = ckv + t * (dc + dr);
    float ss = 0.f;
    for (int i = threadIdx.x; i < dc; i += blockDim.x) ss += src[i] * src[i];
    ss = block_sum(ss, sh);
    const float r = (float)(1.0 / sqrt((double)ss / (double)dc + (double)eps));
    float *row = kvl + (int64_t)cell[t] * width;
    for (int i = threadIdx.x; i < dc; i += blockDim.x) row[i] = src[i] * r * w[i];
    for (int i = threadIdx.x; i < dr; i += blockDim.x) row[dc + i] = src[dc + i];
}
void mla_kv_store(ctx *c, const float *ckv, const float *norm_w, float *kvl, int64_t width, const int32_t *cell,
                  int64_t n, int64_t dc, int64_t dr, float eps) {
    if (n <= 0) return;
    k_mla_kv_store<<<(unsigned)n, 256, 0, c->st>>>(ckv, norm_w, kvl, width, cell, (int)dc, (int)dr, eps);
    LAUNCH_CHECK(c, "mla kv store");
}

__global__ void k_llama_kv_store(const float *k, const float *v, float *kvl, int64_t width, const int32_t *cell,
                                 int kvd) {
    const int64_t t = blockIdx.x;
    float *row = kvl + (int64_t)cell[t] * width;
    for (int i = threadIdx.x; i < kvd; i += blockDim.x) {
        row[i] = k[t * kvd + i];
        row[kvd + i] = v[t * kvd + i];
    }
}
void llama_kv_store(ctx *c, const float *k, const float *v, float *kvl, int64_t width, const int32_t *cell, int64_t n,
                    int64_t kvd) {
    if (n <= 0) return;
    k_llama_kv_store<<<(unsigned)n, 256, 0, c->st>>>(k, v, kvl, width, cell, (int)kvd);
    LAUNCH_CHECK(c, "llama kv store");
}

__global__ void k_gather_rows(const float *kvl, int64_t width, const int32_t *cells, int64_t off, int len, float *out,
                              int64_t ldo) {
    const int64_t j = blockIdx.x;
    const float *src = kvl + (int64_t)cells[j] * width + off;
    for (int i = threadIdx.x; i < len; i += blockDim.x) out[j * ldo + i] = src[i];
}
void gather_rows(ctx *c, const float *kvl, int64_t width, const int32_t *cells, int64_t nk, int64_t off, int64_t len,
                 float *out, int64_t ldo) {
    if (nk <= 0) return;
    k_gather_rows<<<(unsigned)nk, 256, 0, c->st>>>(kvl, width, cells, off, (int)len, out, ldo);
    LAUNCH_CHECK(c, "gather");
}

// K_full[j][h] = [K_nope[j][h] ‖ k_pe[j]] (k_pe shared by the heads).
__global__ void k_build_kfull(const float *knope, const float *kvl, int64_t width, const int32_t *cells, int nh, int dn,
                              int dr, int dc, float *out) {
    const int64_t j = blockIdx.x;
    const int dqk = dn + dr;
    const float *kpe = kvl + (int64_t)cells[j] * width + dc;
    for (int i = threadIdx.x; i < nh * dqk; i += blockDim.x) {
        const int h = i / dqk, d = i % dqk;
        out[j * nh * dqk + i] = d < dn ? knope[j * nh * dn + h * dn + d] : kpe[d - dn];
    }
}
void build_kfull(ctx *c, const float *knope, const float *kvl, int64_t width, const int32_t *cells, int64_t nk,
                 int64_t nh, int64_t dn, int64_t dr, int64_t dc, float *out) {
    if (nk <= 0) return;
    k_build_kfull<<<(unsigned)nk, 256, 0, c->st>>>(knope, kvl, width, cells, (int)nh, (int)dn, (int)dr, (int)dc, out);
    LAUNCH_CHECK(c, "build K");
}

// ---- MoE routing: one thread per token, exactly the CPU's route() -------------
__device__ void topk_dev(const float *v, int n, int k, int32_t *idx) {
    for (int a = 0; a < k; a++) {
        int best = -1;
        for (int e = 0; e < n; e++) {
            bool taken = false;
            for (int b = 0; b < a; b++)
                if (idx[b] == e) taken = true;
            if (taken) continue;
            if (best < 0 || v[e] > v[best]) best = e;
        }
        idx[a] = best;
    }
}

__global__ void k_route(float *logits, int n, int E, int k, int G, int topk_group, int method, int scoring,
                        int norm_topk, float scaling, int v3, const float *bias, float *scratch, int32_t *ids,
                        float *wout) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    float *sc = logits + (int64_t)t * E;
    float *selv = scratch + (int64_t)t * (E + G);
    float *gs = selv + E;
    int32_t *id = ids + (int64_t)t * k;
    float *w = wout + (int64_t)t * k;
    if (scoring == LODE_SCORING_SOFTMAX) {
        float mx = sc[0];
        for (int e = 1; e < E; e++) mx = sc[e] > mx ? sc[e] : mx;
        double sum = 0.0;
        for (int e = 0; e < E; e++) {
            sc[e] = expf(sc[e] - mx);
            sum += sc[e];
        }
        const float inv = (float)(1.0 / sum);
        for (int e = 0; e < E; e++) sc[e] *= inv;
    } else {
        for (int e = 0; e < E; e++) sc[e] = 1.0f / (1.0f + expf(-sc[e]));
    }
    for (int e = 0; e < E; e++) selv[e] = sc[e] + (method == LODE_TOPK_NOAUX_TC && bias ? bias[e] : 0.0f);
    if (method != LODE_TOPK_GREEDY && G > 1) {
        const int per = E / G;
        for (int g = 0; g < G; g++) {
            const float *v = selv + g * per;
            if (method == LODE_TOPK_GROUP_LIMITED) {
                float mx = v[0];
                for (int e = 1; e < per; e++) mx = v[e] > mx ? v[e] : mx;
                gs[g] = mx;
            } else {
                int32_t t2[2];
                const int kk = per >= 2 ? 2 : 1;
                topk_dev(v, per, kk, t2);
                gs[g] = v[t2[0]] + (kk == 2 ? v[t2[1]] : 0.0f);
            }
        }
        int32_t keep[64];
        topk_dev(gs, G, topk_group, keep);
        for (int g = 0; g < G; g++) {
            bool kept = false;
            for (int q = 0; q < topk_group; q++)
                if (keep[q] == g) kept = true;
            if (!kept)
                for (int e = 0; e < per; e++) selv[g * per + e] = 0.0f;
        }
    }
    topk_dev(selv, E, k, id);
    double sum = 0;
    for (int q = 0; q < k; q++) {
        w[q] = sc[id[q]];
        sum += w[q];
    }
    if (v3) {
        if (norm_topk)
            for (int q = 0; q < k; q++) w[q] = (float)(w[q] / (sum + 1e-20));
        for (int q = 0; q < k; q++) w[q] *= scaling;
    } else if (k > 1 && norm_topk) {
        for (int q = 0; q < k; q++) w[q] = (float)(w[q] / (sum + 1e-20));
    } else {
        for (int q = 0; q < k; q++) w[q] *= scaling;
    }
}

void route(ctx *c, float *logits, int64_t n, int64_t E, int64_t k, int64_t G, int64_t topk_group, int method,
           int scoring, bool norm_topk, float scaling, bool v3_weights, const float *bias, float *scratch, int32_t *ids,
           float *w) {
    if (n <= 0) return;
    k_route<<<(unsigned)((n + 63) / 64), 64, 0, c->st>>>(logits, (int)n, (int)E, (int)k, (int)G, (int)topk_group,
                                                         method, scoring, norm_topk ? 1 : 0, scaling, v3_weights ? 1 : 0,
                                                         bias, scratch, ids, w);
    LAUNCH_CHECK(c, "route");
}

// x[t] += Σ_q w[t*k+q] · yp[invp ? invp[t*k+q] : t*k+q]
__global__ void k_moe_combine(float *x, const float *yp, const float *w, const int32_t *invp, int k, int H) {
    const int64_t t = blockIdx.x;
    for (int d = threadIdx.x; d < H; d += blockDim.x) {
        float s = 0.f;
        for (int q = 0; q < k; q++) {
            const int64_t p = t * k + q, r = invp ? invp[p] : p;
            s += w[p] * yp[r * H + d];
        }
        x[t * H + d] += s;
    }
}
void moe_combine(ctx *c, float *x, const float *yp, const float *w, const int32_t *invp, int64_t n, int64_t k,
                 int64_t H) {
    if (n <= 0) return;
    k_moe_combine<<<(unsigned)n, 256, 0, c->st>>>(x, yp, w, invp, (int)k, (int)H);
    LAUNCH_CHECK(c, "moe combine");
}

// out[r] = a[perm[r] / k]
__global__ void k_gather_tok(const float *a, int H, const int32_t *perm, int k, float *out) {
    const int64_t r = blockIdx.x, t = perm[r] / k;
    for (int d = threadIdx.x; d < H; d += blockDim.x) out[r * H + d] = a[t * H + d];
}
void gather_tok_rows(ctx *c, const float *a, int64_t H, const int32_t *perm, int64_t k, int64_t np, float *out) {
    if (np <= 0) return;
    k_gather_tok<<<(unsigned)np, 256, 0, c->st>>>(a, (int)H, perm, (int)k, out);
    LAUNCH_CHECK(c, "moe gather");
}

// ---- MLA absorbed attention, split-KV (FlashMLA-style decode) ----------------
// Grid (token, split, head group of HG). Each block streams its key range of
// the latent cache in tiles of KT rows through shared memory, keeping for
// every head of its group an online softmax (max, sum) and the weighted
// latent accumulator; a second kernel merges the splits.
constexpr int MLA_HG = 16, MLA_KT = 16, MLA_THREADS = 256, MLA_DCMAX = 512;

__global__ void __launch_bounds__(MLA_THREADS)
    k_mla_split(const float *__restrict__ qf, int nh, int dc, int dr, const float *__restrict__ kvl, int64_t width,
                const int32_t *__restrict__ kc, const int32_t *__restrict__ koff, const int32_t *__restrict__ nkv,
                int split_len, int nsplit, float scale, float *pm, float *pl, float *pacc) {
    extern __shared__ float smem[];
    const int D = dc + dr, DP = D + 1;
    float *q_s = smem;                  // [HG][D]
    float *k_s = q_s + MLA_HG * D;      // [KT][DP]
    float *p_s = k_s + MLA_KT * DP;     // [HG][KT]
    float *m_s = p_s + MLA_HG * MLA_KT; // [HG]
    float *l_s = m_s + MLA_HG;
    float *a_s = l_s + MLA_HG;
    const int t = blockIdx.x, sp = blockIdx.y, h0 = blockIdx.z * MLA_HG;
    const int hg = nh - h0 < MLA_HG ? nh - h0 : MLA_HG;
    const int tid = threadIdx.x;
    const int nk = nkv[t];
    const int k0 = sp * split_len, k1 = min(nk, k0 + split_len);
    for (int i = tid; i < MLA_HG * D; i += MLA_THREADS) {
        const int hh = i / D, d = i % D;
        q_s[i] = hh < hg ? qf[((int64_t)t * nh + h0 + hh) * D + d] : 0.f;
    }
    if (tid < MLA_HG) {
        m_s[tid] = -INFINITY;
        l_s[tid] = 0.f;
    }
    float acc[2][MLA_HG];
#pragma unroll
    for (int a = 0; a < 2; a++)
#pragma unroll
        for (int hh = 0; hh < MLA_HG; hh++) acc[a][hh] = 0.f;
    const int32_t *cells = kc + koff[t];
    const int sh = tid / MLA_KT, sj = tid % MLA_KT; // score layout: head sh, key sj
    __syncthreads();
    for (int kt = k0; kt < k1; kt += MLA_KT) {
        const int nt = min(MLA_KT, k1 - kt);
        for (int i = tid; i < MLA_KT * D; i += MLA_THREADS) {
            const int j = i / D, d = i % D;
            k_s[j * DP + d] = j < nt ? kvl[(int64_t)cells[kt + j] * width + d] : 0.f;
        }
        __syncthreads();
        float s = -INFINITY;
        if (sh < hg && sj < nt) {
            const float *qq = q_s + sh * D, *kk = k_s + sj * DP;
            float a = 0.f;
            for (int d = 0; d < D; d++) a = fmaf(qq[d], kk[d], a);
            s = a * scale;
        }
        // online softmax across the 16 lanes holding one head's scores
        float mx = s;
#pragma unroll
        for (int o = 8; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o, 16));
        const float m_old = m_s[sh];
        const float m_new = fmaxf(m_old, mx);
        const float p = (s == -INFINITY || m_new == -INFINITY) ? 0.f : __expf(s - m_new);
        float ps = p;
#pragma unroll
        for (int o = 8; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o, 16);
        p_s[sh * MLA_KT + sj] = p;
        __syncthreads(); // everyone has read m_s[sh]
        if (sj == 0) {
            const float alpha = m_old == -INFINITY ? 0.f : __expf(m_old - m_new);
            a_s[sh] = alpha;
            l_s[sh] = l_s[sh] * alpha + ps;
            m_s[sh] = m_new;
        }
        __syncthreads();
#pragma unroll
        for (int a = 0; a < 2; a++) {
            const int cdim = tid + a * MLA_THREADS;
            if (cdim < dc) {
#pragma unroll
                for (int hh = 0; hh < MLA_HG; hh++) {
                    float v = acc[a][hh] * a_s[hh];
                    for (int j = 0; j < nt; j++) v = fmaf(p_s[hh * MLA_KT + j], k_s[j * DP + cdim], v);
                    acc[a][hh] = v;
                }
            }
        }
        __syncthreads();
    }
    const int64_t base = ((int64_t)t * nh + h0) * nsplit + sp; // + hh * nsplit
    if (tid < hg) {
        pm[base + (int64_t)tid * nsplit] = m_s[tid];
        pl[base + (int64_t)tid * nsplit] = l_s[tid];
    }
#pragma unroll
    for (int a = 0; a < 2; a++) {
        const int cdim = tid + a * MLA_THREADS;
        if (cdim < dc)
#pragma unroll
            for (int hh = 0; hh < MLA_HG; hh++)
                if (hh < hg) pacc[(base + (int64_t)hh * nsplit) * dc + cdim] = acc[a][hh];
    }
}

// lat[t][h] = Σ_s e^{m_s - M} acc_s / Σ_s e^{m_s - M} l_s
__global__ void k_mla_merge(const float *pm, const float *pl, const float *pacc, int nsplit, int dc, float *lat) {
    const int64_t th = blockIdx.x; // t*nh + h
    const float *m = pm + th * nsplit, *l = pl + th * nsplit;
    float M = -INFINITY;
    for (int s = 0; s < nsplit; s++) M = fmaxf(M, m[s]);
    float L = 0.f;
    for (int s = 0; s < nsplit; s++)
        if (l[s] > 0.f) L += l[s] * __expf(m[s] - M);
    const float inv = L > 0.f ? 1.f / L : 0.f;
    for (int cdim = threadIdx.x; cdim < dc; cdim += blockDim.x) {
        float v = 0.f;
        for (int s = 0; s < nsplit; s++)
            if (l[s] > 0.f) v += __expf(m[s] - M) * pacc[(th * nsplit + s) * dc + cdim];
        lat[th * dc + cdim] = v * inv;
    }
}

static size_t mla_smem(int64_t dc, int64_t dr) {
    const int64_t D = dc + dr;
    return sizeof(float) * (size_t)(MLA_HG * D + MLA_KT * (D + 1) + MLA_HG * MLA_KT + 3 * MLA_HG);
}

bool mla_attend(ctx *c, const float *qf, int64_t n, int64_t nh, int64_t dc, int64_t dr, const float *kvl,
                int64_t width, const int32_t *kc, const int32_t *koff, const int32_t *nk, int64_t nk_max, float scale,
                float *lat) {
    if (n <= 0) return true;
    const int64_t hgroups = (nh + MLA_HG - 1) / MLA_HG;
    // Enough blocks to fill the device twice; splits of >= 64 keys.
    int64_t want = (2 * (int64_t)c->sms + n * hgroups - 1) / (n * hgroups);
    int64_t max_split = (nk_max + 63) / 64;
    int64_t nsplit = want < max_split ? want : max_split;
    if (nsplit < 1) nsplit = 1;
    int64_t split_len = (nk_max + nsplit - 1) / nsplit;
    split_len = (split_len + MLA_KT - 1) / MLA_KT * MLA_KT;
    nsplit = (nk_max + split_len - 1) / split_len;
    float *pm = (float *)arena(c, sizeof(float) * (size_t)(n * nh * nsplit));
    float *pl = (float *)arena(c, sizeof(float) * (size_t)(n * nh * nsplit));
    float *pacc = (float *)arena(c, sizeof(float) * (size_t)(n * nh * nsplit * dc));
    if (!pm || !pl || !pacc) return false;
    dim3 grid((unsigned)n, (unsigned)nsplit, (unsigned)hgroups);
    k_mla_split<<<grid, MLA_THREADS, mla_smem(dc, dr), c->st>>>(qf, (int)nh, (int)dc, (int)dr, kvl, width, kc, koff, nk,
                                                                (int)split_len, (int)nsplit, scale, pm, pl, pacc);
    LAUNCH_CHECK(c, "mla split attention");
    k_mla_merge<<<(unsigned)(n * nh), 128, 0, c->st>>>(pm, pl, pacc, (int)nsplit, (int)dc, lat);
    LAUNCH_CHECK(c, "mla merge");
    return true;
}

// ---- causal flash attention (prefill; llama decode) ------------------------------
// Block: BQ queries x one head, BK-key tiles through shared memory, online
// softmax. Thread layout: query row = tid / 16; within the 16 lanes of a row,
// scores for keys (lane, lane + 16), output dims lane + 16*i.
constexpr int FA_BQ = 16, FA_BK = 32, FA_THREADS = 256, FA_DVMAX = 256;

__global__ void __launch_bounds__(FA_THREADS)
    k_flash(const float *__restrict__ Q, int64_t ldq, int64_t hsq, const float *__restrict__ K, int64_t ldk,
            int64_t hsk, const float *__restrict__ V, int64_t ldv, int64_t hsv, int nq, int gqa, int dqk, int dv,
            const int32_t *__restrict__ pos, float scale, float *__restrict__ O, int64_t ldo, int64_t hso) {
    extern __shared__ float smem[];
    const int DQP = dqk + 1;
    float *q_s = smem;                 // [BQ][dqk]
    float *k_s = q_s + FA_BQ * dqk;    // [BK][dqk+1]
    float *v_s = k_s + FA_BK * DQP;    // [BK][dv]
    const int h = blockIdx.y, kh = h / gqa, q0 = blockIdx.x * FA_BQ, tid = threadIdx.x;
    const int r = tid / 16, ln = tid % 16, qi = q0 + r;
    const bool live = qi < nq;
    const int qpos = live ? pos[qi] : -1;
    const int qlast = min(nq, q0 + FA_BQ) - 1;
    const int nkeys = pos[qlast] + 1;
    for (int i = tid; i < FA_BQ * dqk; i += FA_THREADS) {
        const int rr = i / dqk, d = i % dqk;
        q_s[i] = q0 + rr < nq ? Q[(int64_t)(q0 + rr) * ldq + (int64_t)h * hsq + d] : 0.f;
    }
    float o[FA_DVMAX / 16];
#pragma unroll
    for (int i = 0; i < FA_DVMAX / 16; i++) o[i] = 0.f;
    float m = -INFINITY, l = 0.f;
    for (int kt = 0; kt < nkeys; kt += FA_BK) {
        const int nt = min(FA_BK, nkeys - kt);
        __syncthreads();
        for (int i = tid; i < FA_BK * dqk; i += FA_THREADS) {
            const int j = i / dqk, d = i % dqk;
            k_s[j * DQP + d] = j < nt ? K[(int64_t)(kt + j) * ldk + (int64_t)kh * hsk + d] : 0.f;
        }
        for (int i = tid; i < FA_BK * dv; i += FA_THREADS) {
            const int j = i / dv, d = i % dv;
            v_s[i] = j < nt ? V[(int64_t)(kt + j) * ldv + (int64_t)kh * hsv + d] : 0.f;
        }
        __syncthreads();
        float s0 = -INFINITY, s1 = -INFINITY;
        {
            const float *qq = q_s + r * dqk;
            const int j0 = ln, j1 = ln + 16;
            if (live && j0 < nt && kt + j0 <= qpos) {
                const float *kk = k_s + j0 * DQP;
                float a = 0.f;
                for (int d = 0; d < dqk; d++) a = fmaf(qq[d], kk[d], a);
                s0 = a * scale;
            }
            if (live && j1 < nt && kt + j1 <= qpos) {
                const float *kk = k_s + j1 * DQP;
                float a = 0.f;
                for (int d = 0; d < dqk; d++) a = fmaf(qq[d], kk[d], a);
                s1 = a * scale;
            }
        }
        float mx = fmaxf(s0, s1);
#pragma unroll
        for (int off = 8; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off, 16));
        const float m_new = fmaxf(m, mx);
        const float p0 = (s0 == -INFINITY) ? 0.f : __expf(s0 - m_new);
        const float p1 = (s1 == -INFINITY) ? 0.f : __expf(s1 - m_new);
        float ps = p0 + p1;
#pragma unroll
        for (int off = 8; off > 0; off >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, off, 16);
        const float alpha = (m == -INFINITY) ? 0.f : __expf(m - m_new);
        l = l * alpha + ps;
        m = m_new;
#pragma unroll
        for (int i = 0; i < FA_DVMAX / 16; i++) o[i] *= alpha;
        for (int j = 0; j < 16; j++) {
            const float pj = __shfl_sync(0xffffffffu, p0, j, 16);
            const float *vr = v_s + j * dv;
#pragma unroll
            for (int i = 0; i < FA_DVMAX / 16; i++) {
                const int d = ln + 16 * i;
                if (d < dv) o[i] = fmaf(pj, vr[d], o[i]);
            }
        }
        for (int j = 0; j < 16; j++) {
            const float pj = __shfl_sync(0xffffffffu, p1, j, 16);
            const float *vr = v_s + (j + 16) * dv;
#pragma unroll
            for (int i = 0; i < FA_DVMAX / 16; i++) {
                const int d = ln + 16 * i;
                if (d < dv) o[i] = fmaf(pj, vr[d], o[i]);
            }
        }
    }
    if (live) {
        const float inv = l > 0.f ? 1.f / l : 0.f;
        float *orow = O + (int64_t)qi * ldo + (int64_t)h * hso;
#pragma unroll
        for (int i = 0; i < FA_DVMAX / 16; i++) {
            const int d = ln + 16 * i;
            if (d < dv) orow[d] = o[i] * inv;
        }
    }
}

static size_t flash_smem(int64_t dqk, int64_t dv) {
    return sizeof(float) * (size_t)(FA_BQ * dqk + FA_BK * (dqk + 1) + FA_BK * dv);
}

bool flash(ctx *c, const float *Q, int64_t ldq, int64_t hsq, const float *K, int64_t ldk, int64_t hsk, const float *V,
           int64_t ldv, int64_t hsv, int64_t nq, int64_t nh, int64_t nkvh, int64_t dqk, int64_t dv, const int32_t *pos,
           int64_t nk, float scale, float *O, int64_t ldo, int64_t hso) {
    (void)nk;
    if (nq <= 0) return true;
    dim3 grid((unsigned)((nq + FA_BQ - 1) / FA_BQ), (unsigned)nh);
    k_flash<<<grid, FA_THREADS, flash_smem(dqk, dv), c->st>>>(Q, ldq, hsq, K, ldk, hsk, V, ldv, hsv, (int)nq,
                                                              (int)(nh / nkvh), (int)dqk, (int)dv, pos, scale, O, ldo,
                                                              hso);
    return LAUNCH_CHECK(c, "flash attention");
}

__global__ void k_read_probe(const float4 *__restrict__ src, int64_t n, float *out) {
    float acc = 0.f;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float4 v = __ldcs(src + i);
        acc += v.x + v.y + v.z + v.w;
    }
    acc = warp_sum(acc);
    if ((threadIdx.x & 31) == 0) atomicAdd(out + blockIdx.x, acc);
}
void read_probe(ctx *c, const float4 *src, int64_t n, float *out, int blocks) {
    k_read_probe<<<blocks, 512, 0, c->st>>>(src, n, out);
    LAUNCH_CHECK(c, "read probe");
}

// ---- attention by tensor-core GEMMs (long prefills) ---------------------------
// Per query block: S = scale·Q·Kᵀ (one strided-batched GEMM over heads, plus
// a second one for a shared rope key, MLA's k_pe), a causal softmax kernel
// writing P, then O = P·V. S is materialized (f32, one block of queries at a
// time), so this trades memory traffic for tensor-core throughput.
__global__ void k_softmax_causal(const float *S, int64_t ldS, int64_t hstride, void *P, int p_f32, const int32_t *pos,
                                 int q0, int nkb) {
    __shared__ float sh[32];
    const int r = blockIdx.x, h = blockIdx.y;
    const float *row = S + (int64_t)h * hstride + (int64_t)r * ldS;
    const int valid = min(nkb, pos[q0 + r] + 1);
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < valid; j += blockDim.x) mx = fmaxf(mx, row[j]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = mx;
    __syncthreads();
    mx = -INFINITY;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) mx = fmaxf(mx, sh[i]);
    float sum = 0.f;
    for (int j = threadIdx.x; j < valid; j += blockDim.x) sum += __expf(row[j] - mx);
    sum = block_sum(sum, sh);
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    const int64_t base = (int64_t)h * hstride + (int64_t)r * ldS;
    for (int j = threadIdx.x; j < nkb; j += blockDim.x) {
        const float v = j < valid ? __expf(row[j] - mx) * inv : 0.f;
        if (p_f32) ((float *)P)[base + j] = v;
        else ((__nv_bfloat16 *)P)[base + j] = __float2bfloat16_rn(v);
    }
}

static bool gemm_sb(ctx *c, cublasOperation_t ta, int m, int n, int k, float alpha, const void *A, int64_t lda,
                    int64_t sa, const void *B, int64_t ldb, int64_t sb, float beta, float *C, int64_t ldc, int64_t sc,
                    int batch, cudaDataType_t t) {
    cublasStatus_t s = cublasGemmStridedBatchedEx(c->blas, ta, CUBLAS_OP_N, m, n, k, &alpha, A, t, (int)lda, sa, B, t,
                                                  (int)ldb, sb, &beta, C, CUDA_R_32F, (int)ldc, sc, batch,
                                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) {
        if (c->berr == CUBLAS_STATUS_SUCCESS) c->berr = s, c->where = "cublasGemmStridedBatchedEx (attention)";
        return false;
    }
    return true;
}

// Element pointers of type t (f32 or bf16).
static inline const void *eoff(const void *p, int64_t e, bool f32) {
    return (const char *)p + (size_t)e * (f32 ? 4 : 2);
}

// The attention's sequence of GEMMs and softmaxes, written once against an
// executor: dev_exec (cuBLAS + the kernel) on the GPU, host_exec (reference
// loops with cuBLAS's column-major semantics) for lode_cuda_selftest_attention,
// which checks the layout arithmetic without a GPU.
struct dev_exec {
    ctx *c;
    bool f32;
    void *alloc(size_t b) { return arena(c, b); }
    bool gemm(cublasOperation_t ta, int m, int n, int k, float alpha, const void *A, int64_t lda, int64_t sa,
              const void *B, int64_t ldb, int64_t sb, float beta, float *C, int64_t ldc, int64_t sc, int batch) {
        return gemm_sb(c, ta, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch,
                       f32 ? CUDA_R_32F : CUDA_R_16BF);
    }
    bool softmax(const float *S, int64_t ldS, int64_t hs, void *P, const int32_t *pos, int q0, int nkb, int nb, int nh) {
        k_softmax_causal<<<dim3((unsigned)nb, (unsigned)nh), 256, 0, c->st>>>(S, ldS, hs, P, f32 ? 1 : 0, pos, q0, nkb);
        return LAUNCH_CHECK(c, "causal softmax");
    }
};

struct host_exec {
    std::vector<std::vector<float>> bufs;
    void *alloc(size_t b) {
        bufs.emplace_back((b + 3) / 4);
        return bufs.back().data();
    }
    bool gemm(cublasOperation_t ta, int m, int n, int k, float alpha, const void *A, int64_t lda, int64_t sa,
              const void *B, int64_t ldb, int64_t sb, float beta, float *C, int64_t ldc, int64_t sc, int batch) {
        for (int b = 0; b < batch; b++) {
            const float *a = (const float *)A + b * sa, *bb = (const float *)B + b * sb;
            float *cc = C + b * sc;
            for (int j = 0; j < n; j++)
                for (int i = 0; i < m; i++) {
                    double acc = 0;
                    for (int l = 0; l < k; l++)
                        acc += (double)(ta == CUBLAS_OP_N ? a[i + (int64_t)l * lda] : a[l + (int64_t)i * lda]) *
                               bb[l + (int64_t)j * ldb];
                    float *o = cc + i + (int64_t)j * ldc;
                    *o = (float)(alpha * acc + (beta != 0.f ? beta * *o : 0.0));
                }
        }
        return true;
    }
    bool softmax(const float *S, int64_t ldS, int64_t hs, void *P, const int32_t *pos, int q0, int nkb, int nb, int nh) {
        for (int h = 0; h < nh; h++)
            for (int r = 0; r < nb; r++) {
                const float *row = S + h * hs + r * ldS;
                float *pr = (float *)P + h * hs + r * ldS;
                const int valid = std::min(nkb, pos[q0 + r] + 1);
                float mx = -INFINITY;
                for (int j = 0; j < valid; j++) mx = fmaxf(mx, row[j]);
                double sum = 0;
                for (int j = 0; j < valid; j++) sum += exp((double)row[j] - mx);
                for (int j = 0; j < nkb; j++) pr[j] = j < valid ? (float)(exp((double)row[j] - mx) / sum) : 0.f;
            }
        return true;
    }
};

template <class X>
static bool attn_gemm_t(X &x, bool f32, const void *Q, int64_t ldq, int64_t hsq, int64_t d1, const void *K, int64_t ldk,
                        int64_t hsk, const void *Kr, int64_t d2, const void *V, int64_t ldv, int64_t hsv, int64_t dv,
                        int64_t nq, int64_t nh, int64_t nkvh, const int32_t *pos_dev, const int32_t *pos_host,
                        float scale, float *O, int64_t ldo, int64_t hso, int64_t bq_max) {
    if (nq <= 0) return true;
    const int64_t gqa = nh / nkvh;
    const int64_t nk_all = pos_host[nq - 1] + 1;
    const int64_t ld_all = (nk_all + 7) & ~(int64_t)7;
    // S (f32) + P per element: keep one query block under ~3 GB.
    int64_t bq = (int64_t)(((size_t)3 << 30) / ((size_t)nh * (size_t)ld_all * (f32 ? 8 : 6)));
    bq = bq >= 64 ? bq / 64 * 64 : (bq < 16 ? 16 : bq);
    if (bq_max > 0 && bq > bq_max) bq = bq_max;
    if (bq > nq) bq = nq;
    float *S = (float *)x.alloc(sizeof(float) * (size_t)(nh * bq * ld_all));
    void *P = x.alloc((size_t)(nh * bq * ld_all) * (f32 ? 4 : 2));
    if (!S || !P) return false;
    for (int64_t q0 = 0; q0 < nq; q0 += bq) {
        const int64_t nb = nq - q0 < bq ? nq - q0 : bq;
        const int64_t nkb = pos_host[q0 + nb - 1] + 1, ldS = (nkb + 7) & ~(int64_t)7, hs = nb * ldS;
        // One batched call per KV head (its gqa query heads share K: stride 0), or one call over
        // all heads when every head has its own K (MLA decompressed).
        const int64_t ncall = gqa == 1 ? 1 : nkvh, nbatch = gqa == 1 ? nh : gqa, ska = gqa == 1 ? hsk : 0;
        for (int64_t g = 0; g < ncall; g++) {
            const int64_t h0 = g * gqa;
            // S_h = scale · K_h(nkb x d1) · Q_h(d1 x nb)   (column-major: nkb x nb, ld ldS)
            if (!x.gemm(CUBLAS_OP_T, (int)nkb, (int)nb, (int)d1, scale, eoff(K, g * hsk, f32), ldk, ska,
                        eoff(Q, q0 * ldq + h0 * hsq, f32), ldq, hsq, 0.f, S + h0 * hs, ldS, hs, (int)nbatch))
                return false;
            if (Kr && d2 > 0 &&
                !x.gemm(CUBLAS_OP_T, (int)nkb, (int)nb, (int)d2, scale, Kr, d2, 0,
                        eoff(Q, q0 * ldq + h0 * hsq + d1, f32), ldq, hsq, 1.f, S + h0 * hs, ldS, hs, (int)nbatch))
                return false;
        }
        if (!x.softmax(S, ldS, hs, P, pos_dev, (int)q0, (int)nkb, (int)nb, (int)nh)) return false;
        const int64_t sva = gqa == 1 ? hsv : 0;
        for (int64_t g = 0; g < ncall; g++) {
            const int64_t h0 = g * gqa;
            // O_h(dv x nb) = V_h(dv x nkb) · P_h(nkb x nb)
            if (!x.gemm(CUBLAS_OP_N, (int)dv, (int)nb, (int)nkb, 1.f, eoff(V, g * hsv, f32), ldv, sva,
                        eoff(P, h0 * hs, f32), ldS, hs, 0.f, O + q0 * ldo + h0 * hso, ldo, hso, (int)nbatch))
                return false;
        }
    }
    return true;
}

bool attn_gemm(ctx *c, bool f32, const void *Q, int64_t ldq, int64_t hsq, int64_t d1, const void *K, int64_t ldk,
               int64_t hsk, const void *Kr, int64_t d2, const void *V, int64_t ldv, int64_t hsv, int64_t dv, int64_t nq,
               int64_t nh, int64_t nkvh, const int32_t *pos_dev, const int32_t *pos_host, float scale, float *O,
               int64_t ldo, int64_t hso) {
    dev_exec x = {c, f32};
    return attn_gemm_t(x, f32, Q, ldq, hsq, d1, K, ldk, hsk, Kr, d2, V, ldv, hsv, dv, nq, nh, nkvh, pos_dev, pos_host,
                       scale, O, ldo, hso, 0);
}

// Host check of attn_gemm's layouts against a direct causal attention.
// shared_rope: MLA shape (per-head K plus one rope key shared by the heads);
// else GQA with K and V interleaved in one row as in the llama cache.
double attn_selftest(bool shared_rope, int64_t bq_max) {
    uint64_t rng = 12345;
    auto rnd = [&]() {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
    };
    const int64_t nh = shared_rope ? 3 : 4, nkvh = shared_rope ? 3 : 2, d1 = shared_rope ? 8 : 6, d2 = shared_rope ? 4 : 0;
    const int64_t dv = shared_rope ? 5 : 6, nk = 37, nq = 20, p0 = 17;
    const int64_t dq = d1 + d2, ldq = nh * dq;
    std::vector<float> Q((size_t)(nq * ldq)), K, Kr((size_t)(nk * (d2 ? d2 : 1))), V, O((size_t)(nq * nh * dv), 0.f);
    int64_t ldk, ldv, hsk = d1, hsv = dv;
    const float *Kp, *Vp;
    std::vector<float> KV;
    if (shared_rope) {
        ldk = nh * d1, ldv = nh * dv;
        K.resize((size_t)(nk * ldk)), V.resize((size_t)(nk * ldv));
        for (auto &v : K) v = rnd();
        for (auto &v : V) v = rnd();
        for (auto &v : Kr) v = rnd();
        Kp = K.data(), Vp = V.data();
    } else {
        const int64_t width = 2 * nkvh * d1;
        ldk = ldv = width;
        KV.resize((size_t)(nk * width));
        for (auto &v : KV) v = rnd();
        Kp = KV.data(), Vp = KV.data() + nkvh * d1;
    }
    for (auto &v : Q) v = rnd();
    std::vector<int32_t> pos((size_t)nq);
    for (int64_t i = 0; i < nq; i++) pos[(size_t)i] = (int32_t)(p0 + i);
    const float scale = 0.37f;
    host_exec x;
    if (!attn_gemm_t(x, true, Q.data(), ldq, dq, d1, Kp, ldk, hsk, d2 ? Kr.data() : nullptr, d2, Vp, ldv, hsv, dv, nq,
                     nh, nkvh, pos.data(), pos.data(), scale, O.data(), nh * dv, dv, bq_max))
        return 1e30;
    double worst = 0;
    const int64_t gqa = nh / nkvh;
    for (int64_t i = 0; i < nq; i++)
        for (int64_t h = 0; h < nh; h++) {
            const int64_t kh = h / gqa, n = pos[(size_t)i] + 1;
            std::vector<double> sc((size_t)n);
            double mx = -1e300;
            for (int64_t j = 0; j < n; j++) {
                double a = 0;
                for (int64_t d = 0; d < d1; d++) a += (double)Q[(size_t)(i * ldq + h * dq + d)] * Kp[j * ldk + kh * hsk + d];
                for (int64_t r = 0; r < d2; r++) a += (double)Q[(size_t)(i * ldq + h * dq + d1 + r)] * Kr[(size_t)(j * d2 + r)];
                sc[(size_t)j] = a * scale;
                mx = std::max(mx, sc[(size_t)j]);
            }
            double sum = 0;
            for (auto &v : sc) sum += (v = exp(v - mx));
            for (int64_t d = 0; d < dv; d++) {
                double o = 0;
                for (int64_t j = 0; j < n; j++) o += sc[(size_t)j] / sum * Vp[j * ldv + kh * hsv + d];
                worst = std::max(worst, fabs(o - O[(size_t)(i * nh * dv + h * dv + d)]));
            }
        }
    return worst;
}

void to_bf16(ctx *c, const float *X, int64_t ldx, int64_t n, int64_t cols, void *out, int64_t ld) {
    if (n <= 0) return;
    k_to_bf16<<<grid_for(n * cols, 256), 256, 0, c->st>>>(X, ldx, n, (int)cols, (__nv_bfloat16 *)out, ld);
    LAUNCH_CHECK(c, "to bf16");
}

// Shared-memory limits: opt in to what the model's shapes need.
bool kernels_init(ctx *c, lode_error *err) {
    (void)err;
    const int opt = (int)c->smem_optin;
    if (!check(c, cudaFuncSetAttribute(k_mla_split, cudaFuncAttributeMaxDynamicSharedMemorySize, opt),
               "shared memory opt-in (mla)"))
        return false;
    if (!check(c, cudaFuncSetAttribute(k_flash, cudaFuncAttributeMaxDynamicSharedMemorySize, opt),
               "shared memory opt-in (flash)"))
        return false;
    return true;
}

// Host run of the device dequantization (load8) over one row.
bool dequant_row_host(int dt, const void *row, int64_t cols, float *out) {
    for (int64_t i = 0; i < cols; i += 8) {
        float w[8];
        switch (dt) {
        case DT_F32: load8<DT_F32>((const uint8_t *)row, (int)i, w); break;
        case DT_BF16: load8<DT_BF16>((const uint8_t *)row, (int)i, w); break;
        case DT_Q8_0: load8<DT_Q8_0>((const uint8_t *)row, (int)i, w); break;
        case DT_Q4_K: load8<DT_Q4_K>((const uint8_t *)row, (int)i, w); break;
        case DT_Q6_K: load8<DT_Q6_K>((const uint8_t *)row, (int)i, w); break;
        default: return false;
        }
        for (int k = 0; k < 8 && i + k < cols; k++) out[i + k] = w[k];
    }
    return true;
}

size_t mla_smem_bytes(int64_t dc, int64_t dr);
size_t mla_smem_bytes(int64_t dc, int64_t dr) { return mla_smem(dc, dr); }
size_t flash_smem_bytes(int64_t dqk, int64_t dv);
size_t flash_smem_bytes(int64_t dqk, int64_t dv) { return flash_smem(dqk, dv); }
int mla_dc_max(void);
int mla_dc_max(void) { return MLA_DCMAX; }
int flash_dv_max(void);
int flash_dv_max(void) { return FA_DVMAX; }

} // namespace lcu
