// cuda_impl.cuh — private declarations shared by the CUDA backend's .cu
// files: device matrices, the per-model context, the kernel launchers.
// Not a public header (the C side sees kernels/lode_cuda.h only).
#ifndef LODE_CUDA_IMPL_CUH
#define LODE_CUDA_IMPL_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <vector>

#include "lode_cuda.h" // first: C++ spelling of _Noreturn for lode_base.h
#include "lode_engine.h"
extern "C" {
#include "lode_pool.h"
}
// Not model_impl.h: the kernels (cuda_kernels.cu, the slow nvcc object) do
// not depend on the engine's private structures; cuda_backend.cu does.
struct lode_mat;
#include "quant_blocks.h"

namespace lcu {

// Device element types. Float matrices are stored bf16 (or f32 in the test
// mode); Q8_0/Q4_K/Q6_K keep their GGML blocks byte for byte.
enum dtype { DT_F32 = 0, DT_BF16 = 1, DT_Q8_0 = 2, DT_Q4_K = 3, DT_Q6_K = 4 };

// Rows of `rb` bytes. Float rows are padded with zeros to a multiple of 8
// elements so every 8-element chunk is one aligned vector load.
struct dmat {
    int dt = DT_BF16;
    int64_t rows = 0, cols = 0;
    size_t rb = 0;
    uint8_t *d = nullptr;
    bool ok() const { return d != nullptr; }
    dmat view(int64_t r0, int64_t n) const {
        dmat v = *this;
        v.d = d + (size_t)r0 * rb;
        v.rows = n;
        return v;
    }
};

struct dlayer {
    float *attn_norm = nullptr, *ffn_norm = nullptr, *q_a_norm = nullptr, *kv_a_norm = nullptr,
          *exp_bias = nullptr;
    dmat wq, wq_a, wq_b, wkv_a;
    dmat wukT; // [nh*dc][dn]: row h*dc+c = W_UK_h[:, c]   (absorbed q̃ = W_UKᵀ q_nope)
    dmat wuk;  // [nh*dn][dc]: rows of W_UK_h            (decompressed K_nope = C · W_UKᵀ)
    dmat wuv;  // [nh*dv][dc]: rows of W_UV_h
    dmat wk, wv, wo;
    dmat ffn_gate, ffn_up, ffn_down;
    bool is_moe = false;
    dmat gate_inp;                    // f32 always (routing ties)
    dmat exp_gate, exp_up, exp_down;  // E stacked: [E*I][H], [E*I][H], [E*H][I]
    dmat sh_gate, sh_up, sh_down;
};

struct ctx {
    int device = 0;
    cudaStream_t st = nullptr;
    cublasHandle_t blas = nullptr;
    bool f32 = false;          // float weights kept f32 (LODE_CUDA_F32=1)
    int sms = 0;
    size_t smem_optin = 0;
    // first error of the current eval (sticky until reported)
    cudaError_t cerr = cudaSuccess;
    cublasStatus_t berr = CUBLAS_STATUS_SUCCESS;
    const char *where = "";
    bool oom = false;
    size_t oom_bytes = 0;
    // per-eval bump arena of device chunks (grown on demand, kept)
    struct chunk {
        char *p;
        size_t cap, used;
    };
    std::vector<chunk> chunks;
    size_t cur = 0;
    // dequantization scratch for the GEMM path of quantized matrices
    void *dq = nullptr;
    size_t dq_bytes = 0;
    // pinned host staging
    char *pin = nullptr;
    size_t pin_bytes = 0;
    // owned device allocations (weights)
    std::vector<void *> allocs;
    size_t weight_bytes = 0;
};

// ---- context helpers (cuda_backend.cu) ----
bool ctx_init(ctx *c, lode_error *err);
void ctx_free(ctx *c);
void *arena(ctx *c, size_t bytes);
void arena_reset(ctx *c);
bool check(ctx *c, cudaError_t e, const char *where);
void *pinned(ctx *c, size_t bytes);
// Upload one host matrix (any lode type) as a device matrix.
bool upload_mat(ctx *c, lode_pool *pool, const struct lode_mat *src, int n_src, bool force_f32, dmat *out,
                lode_error *err);
bool upload_f32_rows(ctx *c, const float *host, int64_t rows, int64_t cols, bool force_f32, dmat *out,
                     lode_error *err);
float *upload_vec(ctx *c, const float *host, size_t n, lode_error *err);

// ---- kernel launchers (cuda_kernels.cu) ----
// Y[t*ldy + r] (+)= W[r] · X[t*ldx ...] for t < n: matvec (n <= 8) or GEMM.
void mm(ctx *c, const dmat &W, const float *X, int64_t ldx, int64_t n, float *Y, int64_t ldy, bool acc);
// Grouped matvec: for pair p < np: e = ids ? ids[p] : p % emod;
// Y[p*ldy + r] = W_e[r] · X[(p / xdiv) * ldx ...], W_e = W.view(e * rows, rows).
void mv_grouped(ctx *c, const dmat &W, int64_t rows, const int32_t *ids, int64_t emod, const float *X,
                int64_t ldx, int64_t xdiv, int64_t np, float *Y, int64_t ldy);
void rmsnorm(ctx *c, const float *x, int64_t ldx, const float *w, float *y, int64_t ldy, int64_t n, int64_t H,
             float eps, const int32_t *rows);
void rope(ctx *c, float *x, int64_t ld, int64_t nvec_per_tok, int64_t vstride, int64_t n, int64_t n_pairs,
          const float *theta, const int32_t *pos, bool neox, float mag);
void silu_mul(ctx *c, float *g, const float *u, int64_t n);
void add(ctx *c, float *y, const float *x, int64_t n);
void mla_kv_store(ctx *c, const float *ckv, const float *norm_w, float *kvl, int64_t width, const int32_t *cell,
                  int64_t n, int64_t dc, int64_t dr, float eps);
void llama_kv_store(ctx *c, const float *k, const float *v, float *kvl, int64_t width, const int32_t *cell, int64_t n,
                    int64_t kvd);
void gather_rows(ctx *c, const float *kvl, int64_t width, const int32_t *cells, int64_t nk, int64_t off, int64_t len,
                 float *out, int64_t ldo);
void build_kfull(ctx *c, const float *knope, const float *kvl, int64_t width, const int32_t *cells, int64_t nk,
                 int64_t nh, int64_t dn, int64_t dr, int64_t dc, float *out);
void route(ctx *c, float *logits, int64_t n, int64_t E, int64_t k, int64_t G, int64_t topk_group, int method,
           int scoring, bool norm_topk, float scaling, bool v3_weights, const float *bias, float *scratch,
           int32_t *ids, float *w);
void moe_combine(ctx *c, float *x, const float *yp, const float *w, const int32_t *invp, int64_t n, int64_t k,
                 int64_t H);
void gather_tok_rows(ctx *c, const float *a, int64_t H, const int32_t *perm, int64_t k, int64_t np, float *out);
// MLA absorbed attention over the device latent cache (split-KV):
// qf [n][nh][dc+dr], per token t: keys kc[koff[t] .. koff[t]+nk[t]).
// lat [n][nh][dc] receives the softmax-weighted latent.
bool mla_attend(ctx *c, const float *qf, int64_t n, int64_t nh, int64_t dc, int64_t dr, const float *kvl,
                int64_t width, const int32_t *kc, const int32_t *koff, const int32_t *nk, int64_t nk_max,
                float scale, float *lat);
// Causal flash attention for one sequence: queries q0..q0+nq-1 (local token
// rows, ascending positions pos[]), keys 0..nk-1 contiguous.
bool flash(ctx *c, const float *Q, int64_t ldq, int64_t hsq, const float *K, int64_t ldk, int64_t hsk,
           const float *V, int64_t ldv, int64_t hsv, int64_t nq, int64_t nh, int64_t nkvh, int64_t dqk, int64_t dv,
           const int32_t *pos, int64_t nk, float scale, float *O, int64_t ldo, int64_t hso);
// Causal attention by cuBLAS (S = scale·Q·Kᵀ [+ scale·Q_pe·K_rᵀ with one
// key shared by all heads], softmax, O = P·V) for one sequence's queries;
// Q/K/Kr/V are f32 (f32) or bf16 element arrays; pos_host gives the host
// copy of the queries' positions (ascending).
bool attn_gemm(ctx *c, bool f32, const void *Q, int64_t ldq, int64_t hsq, int64_t d1, const void *K, int64_t ldk,
               int64_t hsk, const void *Kr, int64_t d2, const void *V, int64_t ldv, int64_t hsv, int64_t dv, int64_t nq,
               int64_t nh, int64_t nkvh, const int32_t *pos_dev, const int32_t *pos_host, float scale, float *O,
               int64_t ldo, int64_t hso);
void to_bf16(ctx *c, const float *X, int64_t ldx, int64_t n, int64_t cols, void *out, int64_t ld);
bool kernels_init(ctx *c, lode_error *err);
bool dequant_row_host(int dt, const void *row, int64_t cols, float *out);
double attn_selftest(bool shared_rope, int64_t bq_max);
// Stream-read n float4 (sum into out[block]) — bandwidth probe.
void read_probe(ctx *c, const float4 *src, int64_t n, float *out, int blocks);

} // namespace lcu

#endif
