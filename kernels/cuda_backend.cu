// cuda_backend.cu — the CUDA backend: device context, weight upload, the
// device KV cache and the forward pass for deepseek2 (MLA + DeepSeekMoE) and
// llama, mirroring engine/arch_deepseek2.c and engine/arch_llama.c.
//
// Every CUDA/cuBLAS failure becomes a lode_status with a message (never an
// abort); docs/cuda.md describes the design and what has been verified.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <new>
#include <vector>

#include "lode_cuda.h" // first: C++ spelling of _Noreturn for lode_base.h
extern "C" {
#include "model_impl.h"
}
#include "cuda_impl.cuh"

namespace lcu {
size_t mla_smem_bytes(int64_t dc, int64_t dr);
size_t flash_smem_bytes(int64_t dqk, int64_t dv);
int mla_dc_max(void);
int flash_dv_max(void);

bool check(ctx *c, cudaError_t e, const char *where) {
    if (e == cudaSuccess) return true;
    if (c->cerr == cudaSuccess) {
        c->cerr = e;
        c->where = where;
    }
    cudaGetLastError();
    return false;
}

static lode_status report(ctx *c, lode_error *err, const char *what) {
    if (c->oom) {
        c->oom = false;
        return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of GPU memory (needed %zu MiB more)", what,
                              c->oom_bytes >> 20);
    }
    if (c->cerr != cudaSuccess) {
        cudaError_t e = c->cerr;
        c->cerr = cudaSuccess;
        return lode_error_set(err, e == cudaErrorMemoryAllocation ? LODE_ERR_NOMEM : LODE_ERR_BACKEND,
                              "%s: CUDA error in %s: %s (%s)", what, c->where, cudaGetErrorString(e),
                              cudaGetErrorName(e));
    }
    if (c->berr != CUBLAS_STATUS_SUCCESS) {
        cublasStatus_t s = c->berr;
        c->berr = CUBLAS_STATUS_SUCCESS;
        return lode_error_set(err, LODE_ERR_BACKEND, "%s: cuBLAS error in %s: %s", what, c->where,
                              cublasGetStatusString(s));
    }
    return LODE_OK;
}

static bool failed(const ctx *c) { return c->oom || c->cerr != cudaSuccess || c->berr != CUBLAS_STATUS_SUCCESS; }

bool ctx_init(ctx *c, lode_error *err) {
    cudaError_t e = cudaSetDevice(c->device);
    // A blocking stream: ordered after the legacy-stream cudaMemcpy/cudaMemset of uploads.
    if (e == cudaSuccess) e = cudaStreamCreate(&c->st);
    if (e != cudaSuccess) {
        cudaGetLastError();
        lode_error_set(err, LODE_ERR_BACKEND, "cannot start CUDA on device %d: %s (%s)", c->device,
                       cudaGetErrorString(e), cudaGetErrorName(e));
        return false;
    }
    cublasStatus_t s = cublasCreate(&c->blas);
    if (s != CUBLAS_STATUS_SUCCESS) {
        c->blas = nullptr;
        lode_error_set(err, LODE_ERR_BACKEND, "cannot start cuBLAS: %s", cublasGetStatusString(s));
        return false;
    }
    cublasSetStream(c->blas, c->st);
    // fp32 accumulation, no TF32 for fp32 inputs (the f32 test mode stays f32).
    cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH);
    int v = 0;
    cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, c->device);
    c->sms = v > 0 ? v : 1;
    v = 0;
    cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, c->device);
    c->smem_optin = v > 0 ? (size_t)v : 48 * 1024;
    const char *f = getenv("LODE_CUDA_F32");
    c->f32 = f && *f && strcmp(f, "0") != 0;
    if (!kernels_init(c, err)) {
        report(c, err, "CUDA setup");
        return false;
    }
    return true;
}

void ctx_free(ctx *c) {
    if (c->st) cudaStreamSynchronize(c->st);
    for (void *p : c->allocs) cudaFree(p);
    c->allocs.clear();
    for (auto &k : c->chunks) cudaFree(k.p);
    c->chunks.clear();
    if (c->dq) cudaFree(c->dq);
    if (c->pin) cudaFreeHost(c->pin);
    if (c->blas) cublasDestroy(c->blas);
    if (c->st) cudaStreamDestroy(c->st);
    cudaGetLastError();
    c->dq = nullptr, c->pin = nullptr, c->blas = nullptr, c->st = nullptr;
}

void arena_reset(ctx *c) {
    for (auto &k : c->chunks) k.used = 0;
    c->cur = 0;
}

void *arena(ctx *c, size_t bytes) {
    bytes = (bytes + 255) & ~(size_t)255;
    if (bytes == 0) bytes = 256;
    while (c->cur < c->chunks.size()) {
        auto &k = c->chunks[c->cur];
        if (k.cap - k.used >= bytes) {
            void *p = k.p + k.used;
            k.used += bytes;
            return p;
        }
        c->cur++;
    }
    size_t last = c->chunks.empty() ? 0 : c->chunks.back().cap;
    size_t want = std::max(bytes, std::max((size_t)64 << 20, 2 * last));
    char *p = nullptr;
    if (cudaMalloc(&p, want) != cudaSuccess) {
        cudaGetLastError();
        want = bytes;
        if (cudaMalloc(&p, want) != cudaSuccess) {
            cudaGetLastError();
            if (!c->oom) c->oom_bytes = bytes;
            c->oom = true;
            return nullptr;
        }
    }
    c->chunks.push_back({p, want, bytes});
    c->cur = c->chunks.size() - 1;
    return p;
}

void *pinned(ctx *c, size_t bytes) {
    if (bytes <= c->pin_bytes) return c->pin;
    if (c->st) cudaStreamSynchronize(c->st); // copies from the old buffer may be in flight
    if (c->pin) cudaFreeHost(c->pin);
    c->pin = nullptr;
    c->pin_bytes = 0;
    size_t want = std::max(bytes, (size_t)1 << 20);
    if (!check(c, cudaHostAlloc((void **)&c->pin, want, cudaHostAllocDefault), "pinned host buffer")) {
        c->pin = nullptr;
        return nullptr;
    }
    c->pin_bytes = want;
    return c->pin;
}

static void *dalloc(ctx *c, size_t bytes, lode_error *err, const char *what) {
    void *p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        cudaGetLastError();
        lode_error_set(err, LODE_ERR_NOMEM,
                       "out of GPU memory uploading %s (%zu MiB; %zu MiB free of %zu, %zu MiB already used by "
                       "lode): use a quantized model or --device cpu",
                       what, bytes >> 20, fr >> 20, tot >> 20, c->weight_bytes >> 20);
        return nullptr;
    }
    c->allocs.push_back(p);
    c->weight_bytes += bytes;
    return p;
}

float *upload_vec(ctx *c, const float *host, size_t n, lode_error *err) {
    if (!host) return nullptr;
    float *d = (float *)dalloc(c, n * sizeof(float), err, "a norm vector");
    if (!d) return nullptr;
    if (!check(c, cudaMemcpy(d, host, n * sizeof(float), cudaMemcpyHostToDevice), "upload")) {
        report(c, err, "upload");
        return nullptr;
    }
    return d;
}

static size_t round8(int64_t n) { return (size_t)((n + 7) & ~(int64_t)7); }

// Row conversion of float-type sources on the pool.
struct conv_task {
    const lode_mat *src;
    int n_src;
    int64_t r0; // first global row of this staging batch
    int64_t nrows;
    bool f32;
    size_t rb;
    uint8_t *dst;
    float *tmp; // [threads][cols]
};

static void conv_rows(void *ctx_, int64_t i) {
    conv_task *t = (conv_task *)ctx_;
    const int64_t chunk = 64, a = i * chunk, b = std::min(t->nrows, a + chunk);
    const int64_t cols = t->src[0].cols, per = t->src[0].rows;
    float *tmp = t->tmp + (size_t)lode_pool_thread_index() * (size_t)cols;
    for (int64_t r = a; r < b; r++) {
        const int64_t g = t->r0 + r, e = g / per, rr = g % per;
        const lode_mat *m = &t->src[e];
        lode_type_get(m->type)->to_f32((const char *)m->data + (size_t)rr * m->row_bytes, tmp, cols);
        uint8_t *o = t->dst + (size_t)r * t->rb;
        memset(o, 0, t->rb);
        if (t->f32) {
            memcpy(o, tmp, (size_t)cols * 4);
        } else {
            uint16_t *ob = (uint16_t *)o;
            for (int64_t k = 0; k < cols; k++) ob[k] = lode_f32_to_bf16(tmp[k]);
        }
    }
}

static int dt_of(lode_type t) {
    switch (t) {
    case LODE_TYPE_Q8_0: return DT_Q8_0;
    case LODE_TYPE_Q4_K: return DT_Q4_K;
    case LODE_TYPE_Q6_K: return DT_Q6_K;
    default: return -1;
    }
}

// n_src matrices of identical shape stacked into one device matrix.
bool upload_mat(ctx *c, lode_pool *pool, const lode_mat *src, int n_src, bool force_f32, dmat *out, lode_error *err) {
    *out = dmat();
    if (!src || !src[0].data || n_src <= 0) return true; // absent optional tensor
    const int64_t rows1 = src[0].rows, cols = src[0].cols, rows = rows1 * n_src;
    int qdt = force_f32 ? -1 : dt_of(src[0].type);
    for (int e = 1; e < n_src; e++)
        if (src[e].type != src[0].type) qdt = -1;
    out->rows = rows, out->cols = cols;
    if (qdt >= 0) {
        out->dt = qdt;
        out->rb = src[0].row_bytes;
        const size_t bytes = out->rb * (size_t)rows;
        out->d = (uint8_t *)dalloc(c, bytes, err, src[0].name ? src[0].name : "a weight");
        if (!out->d) return false;
        bool contiguous = true;
        for (int e = 1; e < n_src; e++)
            if ((const char *)src[e].data != (const char *)src[0].data + (size_t)e * rows1 * out->rb) contiguous = false;
        if (contiguous) {
            if (!check(c, cudaMemcpy(out->d, src[0].data, bytes, cudaMemcpyHostToDevice), "weight upload")) {
                report(c, err, "upload");
                return false;
            }
        } else {
            for (int e = 0; e < n_src; e++)
                if (!check(c, cudaMemcpy(out->d + (size_t)e * rows1 * out->rb, src[e].data, rows1 * out->rb,
                                         cudaMemcpyHostToDevice),
                           "weight upload")) {
                    report(c, err, "upload");
                    return false;
                }
        }
        return true;
    }
    const bool f32 = force_f32 || c->f32;
    out->dt = f32 ? DT_F32 : DT_BF16;
    out->rb = round8(cols) * (f32 ? 4 : 2);
    out->d = (uint8_t *)dalloc(c, out->rb * (size_t)rows, err, src[0].name ? src[0].name : "a weight");
    if (!out->d) return false;
    // Stage batches of rows (<= 64 MiB) through pinned memory.
    int64_t batch = (int64_t)(((size_t)64 << 20) / out->rb);
    if (batch < 1) batch = 1;
    if (batch > rows) batch = rows;
    uint8_t *stage = (uint8_t *)pinned(c, (size_t)batch * out->rb);
    int nt = lode_pool_size(pool);
    float *tmp = (float *)malloc((size_t)nt * (size_t)cols * sizeof(float));
    if (!stage || !tmp) {
        free(tmp);
        if (!stage) report(c, err, "upload");
        else lode_error_set(err, LODE_ERR_NOMEM, "out of host memory staging a weight upload");
        return false;
    }
    for (int64_t r0 = 0; r0 < rows; r0 += batch) {
        const int64_t nr = std::min(batch, rows - r0);
        conv_task t = {src, n_src, r0, nr, f32, out->rb, stage, tmp};
        lode_pool_run(pool, (nr + 63) / 64, conv_rows, &t);
        if (!check(c, cudaMemcpy(out->d + (size_t)r0 * out->rb, stage, (size_t)nr * out->rb, cudaMemcpyHostToDevice),
                   "weight upload")) {
            free(tmp);
            report(c, err, "upload");
            return false;
        }
    }
    free(tmp);
    return true;
}

bool upload_f32_rows(ctx *c, const float *host, int64_t rows, int64_t cols, bool force_f32, dmat *out,
                     lode_error *err) {
    lode_mat m = {};
    m.type = LODE_TYPE_F32;
    m.rows = rows, m.cols = cols;
    m.data = host;
    m.row_bytes = (size_t)cols * 4;
    m.name = "MLA absorbed weights";
    lode_pool *pool = lode_pool_new(1);
    bool ok = upload_mat(c, pool, &m, 1, force_f32, out, err);
    lode_pool_free(pool);
    return ok;
}

static void mat_row_f32(const lode_mat &m, int64_t r, float *dst) {
    lode_type_get(m.type)->to_f32((const char *)m.data + (size_t)r * m.row_bytes, dst, m.cols);
}

} // namespace lcu

using namespace lcu;

struct lode_cuda_model {
    ctx c;
    std::vector<dlayer> L;
    dmat output;
    float *output_norm = nullptr;
    float *theta = nullptr;
    void *graphs = nullptr; // std::vector<graph_ent> (decode CUDA graphs)
    char desc[512];
};
static void graphs_free(lode_cuda_model *cm);

struct dev_kv {
    float *d = nullptr;
    int64_t n_layer = 0, n_cells = 0, width = 0;
};

// The three MLA matrices of one layer (see dlayer), f32 on the host.
static void mla_host_mats(const lode_model *m, const lode_layer *Ls, std::vector<float> &ukT, std::vector<float> &uk,
                          std::vector<float> &uv) {
    const lode_config *cf = &m->cfg;
    const int64_t nh = cf->n_head, dc = cf->kv_lora_rank, dn = cf->qk_nope_dim, dv = cf->v_head_dim;
    ukT.assign((size_t)(nh * dc * dn), 0.f), uk.assign((size_t)(nh * dn * dc), 0.f), uv.assign((size_t)(nh * dv * dc), 0.f);
    std::vector<float> row((size_t)std::max(dc, dn));
    for (int64_t h = 0; h < nh; h++) {
        if (Ls->split_kvb) {
            // wk_b [nh*dc][dn]: row h*dc+c = W_UK_h[:, c]
            for (int64_t cc = 0; cc < dc; cc++) {
                mat_row_f32(Ls->wk_b, h * dc + cc, row.data());
                for (int64_t i = 0; i < dn; i++) {
                    ukT[(size_t)((h * dc + cc) * dn + i)] = row[(size_t)i];
                    uk[(size_t)((h * dn + i) * dc + cc)] = row[(size_t)i];
                }
            }
            for (int64_t j = 0; j < dv; j++) mat_row_f32(Ls->wv_b, h * dv + j, &uv[(size_t)((h * dv + j) * dc)]);
        } else {
            // wkv_b [nh*(dn+dv)][dc]: rows h*(dn+dv)+i (i<dn) = W_UK_h[i, :], then W_UV_h rows
            for (int64_t i = 0; i < dn; i++) {
                mat_row_f32(Ls->wkv_b, h * (dn + dv) + i, &uk[(size_t)((h * dn + i) * dc)]);
                for (int64_t cc = 0; cc < dc; cc++) ukT[(size_t)((h * dc + cc) * dn + i)] = uk[(size_t)((h * dn + i) * dc + cc)];
            }
            for (int64_t j = 0; j < dv; j++)
                mat_row_f32(Ls->wkv_b, h * (dn + dv) + dn + j, &uv[(size_t)((h * dv + j) * dc)]);
        }
    }
}

static bool upload_mla(lode_cuda_model *cm, const lode_model *m, const lode_layer *Ls, dlayer *D, lode_error *err) {
    const lode_config *cf = &m->cfg;
    const int64_t nh = cf->n_head, dc = cf->kv_lora_rank, dn = cf->qk_nope_dim, dv = cf->v_head_dim;
    std::vector<float> ukT, uk, uv;
    mla_host_mats(m, Ls, ukT, uk, uv);
    return upload_f32_rows(&cm->c, ukT.data(), nh * dc, dn, false, &D->wukT, err) &&
           upload_f32_rows(&cm->c, uk.data(), nh * dn, dc, false, &D->wuk, err) &&
           upload_f32_rows(&cm->c, uv.data(), nh * dv, dc, false, &D->wuv, err);
}

static lode_status cuda_model_new(lode_model *m, lode_cuda_model **out, lode_error *err) {
    *out = nullptr;
    const lode_config *cf = &m->cfg;
    const bool ds = cf->arch == LODE_ARCH_DEEPSEEK2;
    // Shapes the kernels support (else the CPU engine runs).
    if (ds && cf->kv_lora_rank > mla_dc_max())
        return lode_error_set(err, LODE_ERR_UNSUPPORTED, "kv_lora_rank %lld > %d is not supported by the CUDA kernels",
                              (long long)cf->kv_lora_rank, mla_dc_max());
    const int64_t dqk = ds ? cf->qk_nope_dim + cf->qk_rope_dim : cf->head_dim, dv = ds ? cf->v_head_dim : cf->head_dim;
    if (dv > flash_dv_max() || dqk > 320)
        return lode_error_set(err, LODE_ERR_UNSUPPORTED, "head dimensions %lld/%lld are not supported by the CUDA kernels",
                              (long long)dqk, (long long)dv);
    if (ds && cf->n_expert > 0 && cf->n_group > 64)
        return lode_error_set(err, LODE_ERR_UNSUPPORTED, "n_group %lld > 64 is not supported by the CUDA kernels",
                              (long long)cf->n_group);
    lode_cuda_model *cm = new (std::nothrow) lode_cuda_model();
    if (!cm) return lode_error_set(err, LODE_ERR_NOMEM, "out of memory");
    ctx *c = &cm->c;
    if (!ctx_init(c, err)) {
        ctx_free(c);
        delete cm;
        return err && err->status ? err->status : LODE_ERR_BACKEND;
    }
    const size_t need_smem = std::max(ds ? mla_smem_bytes(cf->kv_lora_rank, cf->qk_rope_dim) : 0,
                                      flash_smem_bytes(dqk, dv));
    if (need_smem > c->smem_optin) {
        const size_t have = c->smem_optin;
        ctx_free(c);
        delete cm;
        return lode_error_set(err, LODE_ERR_UNSUPPORTED,
                              "the attention kernels need %zu KiB of shared memory per block, the device allows %zu KiB",
                              need_smem >> 10, have >> 10);
    }
    lode_pool *pool = m->pool;
    bool ok = true;
    cm->L.resize((size_t)cf->n_layer);
    ok = ok && upload_mat(c, pool, &m->output, 1, false, &cm->output, err);
    ok = ok && (cm->output_norm = upload_vec(c, m->output_norm, (size_t)cf->n_embd, err)) != nullptr;
    const int64_t np = (ds ? cf->qk_rope_dim : cf->head_dim) / 2;
    ok = ok && (cm->theta = upload_vec(c, m->rope_theta_i, (size_t)np, err)) != nullptr;
    for (int64_t l = 0; ok && l < cf->n_layer; l++) {
        const lode_layer *S = &m->layers[l];
        dlayer *D = &cm->L[(size_t)l];
        const int64_t H = cf->n_embd;
        ok = (D->attn_norm = upload_vec(c, S->attn_norm, (size_t)H, err)) && (D->ffn_norm = upload_vec(c, S->ffn_norm, (size_t)H, err));
        if (!ok) break;
        D->is_moe = S->is_moe;
        ok = upload_mat(c, pool, &S->wo, 1, false, &D->wo, err);
        if (ds) {
            ok = ok && upload_mat(c, pool, &S->wq, 1, false, &D->wq, err) &&
                 upload_mat(c, pool, &S->wq_a, 1, false, &D->wq_a, err) &&
                 upload_mat(c, pool, &S->wq_b, 1, false, &D->wq_b, err) &&
                 upload_mat(c, pool, &S->wkv_a, 1, false, &D->wkv_a, err) && upload_mla(cm, m, S, D, err);
            if (ok && S->q_a_norm) ok = (D->q_a_norm = upload_vec(c, S->q_a_norm, (size_t)cf->q_lora_rank, err)) != nullptr;
            if (ok) ok = (D->kv_a_norm = upload_vec(c, S->kv_a_norm, (size_t)cf->kv_lora_rank, err)) != nullptr;
        } else {
            ok = ok && upload_mat(c, pool, &S->wq, 1, false, &D->wq, err) &&
                 upload_mat(c, pool, &S->wk, 1, false, &D->wk, err) && upload_mat(c, pool, &S->wv, 1, false, &D->wv, err);
        }
        if (!ok) break;
        if (!S->is_moe) {
            ok = upload_mat(c, pool, &S->ffn_gate, 1, false, &D->ffn_gate, err) &&
                 upload_mat(c, pool, &S->ffn_up, 1, false, &D->ffn_up, err) &&
                 upload_mat(c, pool, &S->ffn_down, 1, false, &D->ffn_down, err);
            continue;
        }
        const int E = (int)cf->n_expert;
        ok = upload_mat(c, pool, &S->gate_inp, 1, true, &D->gate_inp, err) &&
             upload_mat(c, pool, S->exp_gate, E, false, &D->exp_gate, err) &&
             upload_mat(c, pool, S->exp_up, E, false, &D->exp_up, err) &&
             upload_mat(c, pool, S->exp_down, E, false, &D->exp_down, err);
        if (ok && S->exp_bias) ok = (D->exp_bias = upload_vec(c, S->exp_bias, (size_t)E, err)) != nullptr;
        if (ok && cf->n_expert_shared > 0)
            ok = upload_mat(c, pool, &S->sh_gate, 1, false, &D->sh_gate, err) &&
                 upload_mat(c, pool, &S->sh_up, 1, false, &D->sh_up, err) &&
                 upload_mat(c, pool, &S->sh_down, 1, false, &D->sh_down, err);
    }
    if (!ok) {
        ctx_free(c);
        delete cm;
        return err && err->status ? err->status : LODE_ERR_BACKEND;
    }
    if (!check(c, cudaDeviceSynchronize(), "weight upload")) {
        report(c, err, "upload");
        ctx_free(c);
        delete cm;
        return err && err->status ? err->status : LODE_ERR_BACKEND;
    }
    cudaDeviceProp prop;
    char name[128] = "?";
    if (cudaGetDeviceProperties(&prop, c->device) == cudaSuccess) snprintf(name, sizeof name, "%.100s", prop.name);
    cudaGetLastError();
    snprintf(cm->desc, sizeof cm->desc, "cuda:%d (%s), %s weights, %.2f GB on the device", c->device, name,
             c->f32 ? "f32" : "bf16/quantized", (double)c->weight_bytes / 1e9);
    *out = cm;
    return LODE_OK;
}

extern "C" lode_status lode_cuda_model_new(lode_model *m, lode_cuda_model **out, lode_error *err) {
    try {
        return cuda_model_new(m, out, err);
    } catch (const std::bad_alloc &) {
        *out = nullptr;
        return lode_error_set(err, LODE_ERR_NOMEM, "out of host memory preparing the CUDA weights");
    }
}

extern "C" void lode_cuda_model_free(lode_cuda_model *cm) {
    if (!cm) return;
    graphs_free(cm);
    ctx_free(&cm->c);
    delete cm;
}

extern "C" const char *lode_cuda_model_describe(const lode_cuda_model *cm) { return cm ? cm->desc : "cpu"; }

extern "C" void lode_cuda_kv_free(void *p) {
    dev_kv *k = (dev_kv *)p;
    if (!k) return;
    if (k->d) cudaFree(k->d);
    cudaGetLastError();
    delete k;
}

// ---- evaluation ---------------------------------------------------------------
namespace {

struct chunk_plan {
    int64_t n = 0;
    std::vector<int64_t> perm;     // local -> batch index
    std::vector<int32_t> pos, cell;
    struct grp {
        int64_t first, count, nk;
        int32_t seq;
        bool decompress;
        int64_t koff; // into kc
    };
    std::vector<grp> groups;
    std::vector<int32_t> kc, koff, nk;
    std::vector<int32_t> orow; // local rows whose logits are wanted, in batch order
    int64_t n_abs = 0, nk_max = 0;
    int64_t nk_split = 0; // key bound the split-KV grid is sized by (nk_max, or the cache size for graphs)
};

// Group the chunk's tokens by sequence (absorbed groups first), so that every
// group is a contiguous range of local rows and the absorbed ones form the
// prefix [0, n_abs).
void plan_chunk(const lode_model *m, const lode_kv *kv, const lode_eval_plan *p, const bool *want, int64_t c0,
                int64_t c1, chunk_plan *cp) {
    const int64_t n = c1 - c0;
    cp->n = n;
    struct g0 {
        int32_t seq;
        std::vector<int64_t> toks;
    };
    std::vector<g0> gs;
    for (int64_t i = c0; i < c1; i++) {
        size_t g;
        for (g = 0; g < gs.size(); g++)
            if (gs[g].seq == p->seq[i]) break;
        if (g == gs.size()) gs.push_back({p->seq[i], {}});
        gs[g].toks.push_back(i);
    }
    const bool ds = m->cfg.arch == LODE_ARCH_DEEPSEEK2;
    std::vector<bool> dec(gs.size());
    for (size_t g = 0; g < gs.size(); g++) {
        const int64_t nq = (int64_t)gs[g].toks.size();
        dec[g] = !ds || m->mla_mode == LODE_MLA_DECOMPRESSED || (m->mla_mode == LODE_MLA_AUTO && nq >= 64);
    }
    cp->perm.clear(), cp->pos.clear(), cp->cell.clear(), cp->groups.clear(), cp->kc.clear(), cp->koff.clear(),
        cp->nk.clear(), cp->orow.clear();
    cp->n_abs = 0, cp->nk_max = 0;
    std::vector<int64_t> local((size_t)n);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t g = 0; g < gs.size(); g++) {
            if (dec[g] != (pass == 1)) continue;
            chunk_plan::grp G;
            G.first = (int64_t)cp->perm.size();
            G.count = (int64_t)gs[g].toks.size();
            G.seq = gs[g].seq;
            G.decompress = dec[g];
            G.nk = p->pos[gs[g].toks.back()] + 1;
            G.koff = (int64_t)cp->kc.size();
            const int32_t *cells = kv->seqs[G.seq].cells;
            cp->kc.insert(cp->kc.end(), cells, cells + G.nk);
            for (int64_t i : gs[g].toks) {
                local[(size_t)(i - c0)] = (int64_t)cp->perm.size();
                cp->perm.push_back(i);
                cp->pos.push_back((int32_t)p->pos[i]);
                cp->cell.push_back(p->cell[i]);
                cp->koff.push_back((int32_t)G.koff);
                cp->nk.push_back((int32_t)(p->pos[i] + 1));
            }
            if (!dec[g]) cp->n_abs += G.count;
            cp->nk_max = std::max(cp->nk_max, G.nk);
            cp->groups.push_back(G);
        }
    }
    for (int64_t i = c0; i < c1; i++)
        if (!want || want[i]) cp->orow.push_back((int32_t)local[(size_t)(i - c0)]);
    cp->nk_split = cp->nk_max;
}

struct dev_plan {
    int32_t *pos, *cell, *kc, *koff, *nk, *orow;
};

} // namespace

#define A(T, count) ((T *)arena(c, sizeof(T) * (size_t)(count)))

static lode_status ds_layer(lode_cuda_model *cm, const lode_model *m, float *kvl, int64_t width, const dlayer &L,
                            const chunk_plan &cp, const dev_plan &dp, float *x, lode_error *err);
// Long prefills use the tensor-core (cuBLAS) attention, short ones k_flash:
// LODE_CUDA_ATTN=gemm|flash forces one (tests), auto picks by query count.
static bool use_attn_gemm(int64_t nq) {
    const char *s = getenv("LODE_CUDA_ATTN");
    if (s && !strcmp(s, "gemm")) return true;
    if (s && !strcmp(s, "flash")) return false;
    return nq >= 128;
}
static lode_status llama_layer(lode_cuda_model *cm, const lode_model *m, float *kvl, int64_t width, const dlayer &L,
                               const chunk_plan &cp, const dev_plan &dp, float *x, lode_error *err);
static lode_status ffn(lode_cuda_model *cm, const lode_model *m, const dlayer &L, int64_t n, const float *a, float *x,
                       lode_error *err);

static void swiglu(ctx *c, const dmat &g, const dmat &u, const dmat &d, const float *a, int64_t n, float *x) {
    const int64_t I = g.rows, H = g.cols;
    float *gb = A(float, n * I), *ub = A(float, n * I);
    if (!gb || !ub) return;
    mm(c, g, a, H, n, gb, I, false);
    mm(c, u, a, H, n, ub, I, false);
    silu_mul(c, gb, ub, n * I);
    mm(c, d, gb, I, n, x, H, true);
}

static lode_status ffn(lode_cuda_model *cm, const lode_model *m, const dlayer &L, int64_t n, const float *a, float *x,
                       lode_error *err) {
    ctx *c = &cm->c;
    const lode_config *cf = &m->cfg;
    const int64_t H = cf->n_embd;
    if (!L.is_moe) {
        swiglu(c, L.ffn_gate, L.ffn_up, L.ffn_down, a, n, x);
        return failed(c) ? report(c, err, "FFN") : LODE_OK;
    }
    const int64_t E = cf->n_expert, k = cf->n_expert_used, I = cf->n_ff_exp, np = n * k;
    float *lg = A(float, n * E), *scr = A(float, n * (E + cf->n_group)), *w = A(float, np);
    int32_t *ids = A(int32_t, np);
    if (!lg || !scr || !w || !ids) return report(c, err, "MoE");
    mm(c, L.gate_inp, a, H, n, lg, E, false);
    route(c, lg, n, E, k, cf->n_group, cf->topk_group, (int)cf->topk_method, (int)cf->scoring, cf->norm_topk_prob,
          cf->routed_scaling, m->moe_v3_weights, L.exp_bias, scr, ids, w);
    float *g = A(float, np * I), *u = A(float, np * I), *yp = A(float, np * H);
    if (!g || !u || !yp) return report(c, err, "MoE");
    if (n <= 8) {
        // Decode: one grouped matvec launch per matrix over all (token, slot)
        // pairs; the expert id is read on the device (no host round trip).
        mv_grouped(c, L.exp_gate, I, ids, 1, a, H, k, np, g, I);
        mv_grouped(c, L.exp_up, I, ids, 1, a, H, k, np, u, I);
        silu_mul(c, g, u, np * I);
        mv_grouped(c, L.exp_down, H, ids, 1, g, I, 1, np, yp, H);
        moe_combine(c, x, yp, w, nullptr, n, k, H);
    } else {
        // Prefill: expert-grouped GEMMs over the gathered rows of each expert.
        int32_t *hid = (int32_t *)pinned(c, sizeof(int32_t) * (size_t)np * 3);
        if (!hid) return report(c, err, "MoE");
        check(c, cudaMemcpyAsync(hid, ids, sizeof(int32_t) * (size_t)np, cudaMemcpyDeviceToHost, c->st), "ids");
        check(c, cudaStreamSynchronize(c->st), "MoE routing");
        if (failed(c)) return report(c, err, "MoE");
        std::vector<int64_t> cnt((size_t)E + 1, 0);
        for (int64_t i = 0; i < np; i++) {
            if (hid[i] < 0 || hid[i] >= E) return lode_error_set(err, LODE_ERR_BACKEND, "MoE routing produced expert %d", hid[i]);
            cnt[(size_t)hid[i] + 1]++;
        }
        for (int64_t e = 0; e < E; e++) cnt[(size_t)e + 1] += cnt[(size_t)e];
        int32_t *perm = hid + np, *invp = hid + 2 * np;
        std::vector<int64_t> fill(cnt.begin(), cnt.end() - 1);
        for (int64_t i = 0; i < np; i++) {
            const int64_t r = fill[(size_t)hid[i]]++;
            perm[r] = (int32_t)i;
            invp[i] = (int32_t)r;
        }
        int32_t *dperm = A(int32_t, 2 * np);
        float *xe = A(float, np * H);
        if (!dperm || !xe) return report(c, err, "MoE");
        check(c, cudaMemcpyAsync(dperm, perm, sizeof(int32_t) * 2 * (size_t)np, cudaMemcpyHostToDevice, c->st), "perm");
        gather_tok_rows(c, a, H, dperm, k, np, xe);
        for (int64_t e = 0; e < E; e++) {
            const int64_t o = cnt[(size_t)e], ne = cnt[(size_t)e + 1] - o;
            if (!ne) continue;
            mm(c, L.exp_gate.view(e * I, I), xe + o * H, H, ne, g + o * I, I, false);
            mm(c, L.exp_up.view(e * I, I), xe + o * H, H, ne, u + o * I, I, false);
        }
        silu_mul(c, g, u, np * I);
        for (int64_t e = 0; e < E; e++) {
            const int64_t o = cnt[(size_t)e], ne = cnt[(size_t)e + 1] - o;
            if (!ne) continue;
            mm(c, L.exp_down.view(e * H, H), g + o * I, I, ne, yp + o * H, H, false);
        }
        moe_combine(c, x, yp, w, dperm + np, n, k, H);
        // the pinned buffer is reused by later uploads: wait for the copy
        check(c, cudaStreamSynchronize(c->st), "MoE");
    }
    if (cf->n_expert_shared > 0) swiglu(c, L.sh_gate, L.sh_up, L.sh_down, a, n, x);
    return failed(c) ? report(c, err, "MoE") : LODE_OK;
}

static lode_status ds_layer(lode_cuda_model *cm, const lode_model *m, float *kvl, int64_t width, const dlayer &L,
                            const chunk_plan &cp, const dev_plan &dp, float *x, lode_error *err) {
    ctx *c = &cm->c;
    const lode_config *cf = &m->cfg;
    const int64_t n = cp.n, H = cf->n_embd, nh = cf->n_head, dn = cf->qk_nope_dim, dr = cf->qk_rope_dim;
    const int64_t dqk = dn + dr, dc = cf->kv_lora_rank, dv = cf->v_head_dim, R = cf->q_lora_rank;
    float *a = A(float, n * H), *q = A(float, n * nh * dqk), *ckv = A(float, n * (dc + dr)), *att = A(float, n * nh * dv);
    if (!a || !q || !ckv || !att) return report(c, err, "attention");
    rmsnorm(c, x, H, L.attn_norm, a, H, n, H, cf->rms_eps, nullptr);
    if (R > 0) {
        float *qa = A(float, n * R), *qan = A(float, n * R);
        if (!qa || !qan) return report(c, err, "attention");
        mm(c, L.wq_a, a, H, n, qa, R, false);
        rmsnorm(c, qa, R, L.q_a_norm, qan, R, n, R, cf->rms_eps, nullptr);
        mm(c, L.wq_b, qan, R, n, q, nh * dqk, false);
    } else {
        mm(c, L.wq, a, H, n, q, nh * dqk, false);
    }
    mm(c, L.wkv_a, a, H, n, ckv, dc + dr, false);
    // RoPE (pairs 2i, 2i+1 as the CPU engine) on k_pe, then the cache row; q_pe of every head.
    rope(c, ckv + dc, dc + dr, 1, 0, n, dr / 2, cm->theta, dp.pos, false, m->rope_mag);
    mla_kv_store(c, ckv, L.kv_a_norm, kvl, width, dp.cell, n, dc, dr, cf->rms_eps);
    rope(c, q + dn, nh * dqk, nh, dqk, n, dr / 2, cm->theta, dp.pos, false, m->rope_mag);
    if (cp.n_abs > 0) {
        // Absorbed: q̃ = W_UKᵀ q_nope per (token, head) ‖ q_pe, attend over the latent rows, W_UV.
        const int64_t na = cp.n_abs, D = dc + dr;
        float *qf = A(float, na * nh * D), *lat = A(float, na * nh * dc);
        if (!qf || !lat) return report(c, err, "attention");
        mv_grouped(c, L.wukT, dc, nullptr, nh, q, dqk, 1, na * nh, qf, D);
        check(c, cudaMemcpy2DAsync(qf + dc, (size_t)D * 4, q + dn, (size_t)dqk * 4, (size_t)dr * 4, (size_t)(na * nh),
                                   cudaMemcpyDeviceToDevice, c->st),
              "q_pe copy");
        if (!mla_attend(c, qf, na, nh, dc, dr, kvl, width, dp.kc, dp.koff, dp.nk, cp.nk_split, m->attn_scale, lat))
            return report(c, err, "attention");
        mv_grouped(c, L.wuv, dv, nullptr, nh, lat, dc, 1, na * nh, att, dv);
    }
    for (const auto &G : cp.groups) {
        if (!G.decompress) continue;
        // Decompressed: K_nope, V for every key from the latent rows, causal flash attention.
        const int64_t nk = G.nk;
        float *C = A(float, nk * dc), *kn = A(float, nk * nh * dn), *V = A(float, nk * nh * dv);
        if (!C || !kn || !V) return report(c, err, "attention");
        const int32_t *cells = dp.kc + G.koff;
        gather_rows(c, kvl, width, cells, nk, 0, dc, C, dc);
        mm(c, L.wuk, C, dc, nk, kn, nh * dn, false);
        mm(c, L.wuv, C, dc, nk, V, nh * dv, false);
        if (use_attn_gemm(G.count)) {
            // Tensor cores: S = Q_nope·K_noperᵀ + Q_pe·k_peᵀ (k_pe shared by the heads), softmax, P·V.
            float *kpe = A(float, nk * dr);
            if (!kpe) return report(c, err, "attention");
            gather_rows(c, kvl, width, cells, nk, dc, dr, kpe, dr);
            const void *Qp = q + G.first * nh * dqk, *Kp = kn, *Rp = kpe, *Vp = V;
            if (!c->f32) {
                void *qb = arena(c, (size_t)(G.count * nh * dqk) * 2), *kb = arena(c, (size_t)(nk * nh * dn) * 2),
                     *rb = arena(c, (size_t)(nk * dr) * 2), *vb = arena(c, (size_t)(nk * nh * dv) * 2);
                if (!qb || !kb || !rb || !vb) return report(c, err, "attention");
                to_bf16(c, q + G.first * nh * dqk, nh * dqk, G.count, nh * dqk, qb, nh * dqk);
                to_bf16(c, kn, nh * dn, nk, nh * dn, kb, nh * dn);
                to_bf16(c, kpe, dr, nk, dr, rb, dr);
                to_bf16(c, V, nh * dv, nk, nh * dv, vb, nh * dv);
                Qp = qb, Kp = kb, Rp = rb, Vp = vb;
            }
            if (!attn_gemm(c, c->f32, Qp, nh * dqk, dqk, dn, Kp, nh * dn, dn, Rp, dr, Vp, nh * dv, dv, dv, G.count, nh, nh,
                           dp.pos + G.first, cp.pos.data() + G.first, m->attn_scale, att + G.first * nh * dv, nh * dv,
                           dv))
                return report(c, err, "attention");
            continue;
        }
        float *K = A(float, nk * nh * dqk);
        if (!K) return report(c, err, "attention");
        build_kfull(c, kn, kvl, width, cells, nk, nh, dn, dr, dc, K);
        if (!flash(c, q + G.first * nh * dqk, nh * dqk, dqk, K, nh * dqk, dqk, V, nh * dv, dv, G.count, nh, nh, dqk, dv,
                   dp.pos + G.first, nk, m->attn_scale, att + G.first * nh * dv, nh * dv, dv))
            return report(c, err, "attention");
    }
    mm(c, L.wo, att, nh * dv, n, x, H, true);
    rmsnorm(c, x, H, L.ffn_norm, a, H, n, H, cf->rms_eps, nullptr);
    if (failed(c)) return report(c, err, "attention");
    return ffn(cm, m, L, n, a, x, err);
}

static lode_status llama_layer(lode_cuda_model *cm, const lode_model *m, float *kvl, int64_t width, const dlayer &L,
                               const chunk_plan &cp, const dev_plan &dp, float *x, lode_error *err) {
    ctx *c = &cm->c;
    const lode_config *cf = &m->cfg;
    const int64_t n = cp.n, H = cf->n_embd, hd = cf->head_dim, nh = cf->n_head, nkv = cf->n_head_kv;
    float *a = A(float, n * H), *q = A(float, n * nh * hd), *k = A(float, n * nkv * hd), *v = A(float, n * nkv * hd),
          *att = A(float, n * nh * hd);
    if (!a || !q || !k || !v || !att) return report(c, err, "attention");
    rmsnorm(c, x, H, L.attn_norm, a, H, n, H, cf->rms_eps, nullptr);
    mm(c, L.wq, a, H, n, q, nh * hd, false);
    mm(c, L.wk, a, H, n, k, nkv * hd, false);
    mm(c, L.wv, a, H, n, v, nkv * hd, false);
    rope(c, q, nh * hd, nh, hd, n, hd / 2, cm->theta, dp.pos, m->rope_neox, 1.0f);
    rope(c, k, nkv * hd, nkv, hd, n, hd / 2, cm->theta, dp.pos, m->rope_neox, 1.0f);
    llama_kv_store(c, k, v, kvl, width, dp.cell, n, nkv * hd);
    for (const auto &G : cp.groups) {
        float *KV = A(float, G.nk * width);
        if (!KV) return report(c, err, "attention");
        gather_rows(c, kvl, width, dp.kc + G.koff, G.nk, 0, width, KV, width);
        if (use_attn_gemm(G.count)) {
            const void *Qp = q + G.first * nh * hd, *Kp = KV;
            if (!c->f32) {
                void *qb = arena(c, (size_t)(G.count * nh * hd) * 2), *kb = arena(c, (size_t)(G.nk * width) * 2);
                if (!qb || !kb) return report(c, err, "attention");
                to_bf16(c, q + G.first * nh * hd, nh * hd, G.count, nh * hd, qb, nh * hd);
                to_bf16(c, KV, width, G.nk, width, kb, width);
                Qp = qb, Kp = kb;
            }
            const void *Vp = (const char *)Kp + (size_t)(nkv * hd) * (c->f32 ? 4 : 2);
            if (!attn_gemm(c, c->f32, Qp, nh * hd, hd, hd, Kp, width, hd, nullptr, 0, Vp, width, hd, hd, G.count, nh, nkv,
                           dp.pos + G.first, cp.pos.data() + G.first, m->attn_scale, att + G.first * nh * hd, nh * hd,
                           hd))
                return report(c, err, "attention");
            continue;
        }
        if (!flash(c, q + G.first * nh * hd, nh * hd, hd, KV, width, hd, KV + nkv * hd, width, hd, G.count, nh, nkv, hd,
                   hd, dp.pos + G.first, G.nk, m->attn_scale, att + G.first * nh * hd, nh * hd, hd))
            return report(c, err, "attention");
    }
    mm(c, L.wo, att, nh * hd, n, x, H, true);
    rmsnorm(c, x, H, L.ffn_norm, a, H, n, H, cf->rms_eps, nullptr);
    if (failed(c)) return report(c, err, "attention");
    return ffn(cm, m, L, n, a, x, err);
}

static int64_t chunk_limit(void) {
    const char *s = getenv("LODE_CUDA_CHUNK");
    long v = s ? strtol(s, nullptr, 10) : 0;
    return v > 0 ? v : 4096;
}

// CUDA graphs for decode: a pass of <= 8 tokens of deepseek2, all in the
// absorbed form, has no host synchronization and, when its scratch and plan
// buffers are sized by bounds (not by the context length), the same kernels
// with the same arguments every step: the per-step data (embeddings,
// positions, cells, key lists) is copied into the same device buffers
// before the graph is launched. A shape is captured the second time it is
// seen (the first pass grows the arena, which capture cannot do).
struct graph_key {
    int64_t n, no;
    const float *kv;
    int64_t n_cells, nk_split;
    bool operator==(const graph_key &o) const {
        return n == o.n && no == o.no && kv == o.kv && n_cells == o.n_cells && nk_split == o.nk_split;
    }
};
struct graph_ent {
    graph_key k;
    int seen = 0; // uncaptured passes of this shape; 100: capture failed, never again
    cudaGraphExec_t exec = nullptr;
    float *lg = nullptr;
};
static std::vector<graph_ent> &graphs_of(lode_cuda_model *cm) { return *(std::vector<graph_ent> *)cm->graphs; }

static void graphs_free(lode_cuda_model *cm) {
    auto *v = (std::vector<graph_ent> *)cm->graphs;
    if (!v) return;
    for (auto &g : *v)
        if (g.exec) cudaGraphExecDestroy(g.exec);
    delete v;
    cm->graphs = nullptr;
}

static bool graphs_enabled(void) {
    const char *s = getenv("LODE_CUDA_GRAPHS");
    return !(s && !strcmp(s, "0"));
}

// Layers plus head of one device pass; *lg_out = device logits [no][V].
static lode_status run_pass(lode_cuda_model *cm, lode_model *m, dev_kv *dk, const chunk_plan &cp, const dev_plan &dp,
                            float *x, bool check_cancel, float **lg_out, lode_error *err) {
    ctx *c = &cm->c;
    const lode_config *cf = &m->cfg;
    const int64_t H = cf->n_embd, V = cf->n_vocab, width = dk->width;
    for (int64_t l = 0; l < cf->n_layer; l++) {
        if (check_cancel && m->cancel && *m->cancel) return lode_error_set(err, LODE_ERR_CANCELLED, "evaluation cancelled");
        const size_t mk_cur = c->cur, mk_used = c->chunks.empty() ? 0 : c->chunks[c->cur].used;
        float *kvl = dk->d + (size_t)l * (size_t)dk->n_cells * (size_t)width;
        lode_status s = cf->arch == LODE_ARCH_DEEPSEEK2 ? ds_layer(cm, m, kvl, width, cm->L[(size_t)l], cp, dp, x, err)
                                                         : llama_layer(cm, m, kvl, width, cm->L[(size_t)l], cp, dp, x, err);
        if (s) return s;
        // Release the layer's scratch (stream order makes reuse safe).
        for (size_t i = mk_cur + 1; i < c->chunks.size(); i++) c->chunks[i].used = 0;
        if (!c->chunks.empty()) c->chunks[mk_cur].used = mk_used;
        c->cur = mk_cur;
    }
    *lg_out = nullptr;
    const int64_t no = (int64_t)cp.orow.size();
    if (no > 0) {
        float *xn = A(float, no * H), *lg = A(float, no * V);
        if (!xn || !lg) return report(c, err, "output head");
        rmsnorm(c, x, H, cm->output_norm, xn, H, no, H, cf->rms_eps, dp.orow);
        mm(c, cm->output, xn, H, no, lg, V, false);
        *lg_out = lg;
    }
    return failed(c) ? report(c, err, "eval") : LODE_OK;
}

static lode_status cuda_eval(lode_model *m, lode_kv *kv, const lode_eval_plan *p, const float *xh, const bool *want,
                             float *logits, lode_error *err) {
    lode_cuda_model *cm = m->cuda;
    ctx *c = &cm->c;
    const lode_config *cf = &m->cfg;
    const int64_t H = cf->n_embd, V = cf->n_vocab;
    if (failed(c)) return report(c, err, "CUDA backend (earlier failure)");
    if (!check(c, cudaSetDevice(c->device), "cudaSetDevice")) return report(c, err, "eval");
    dev_kv *dk = (dev_kv *)kv->cuda;
    if (!dk) {
        dk = new (std::nothrow) dev_kv();
        if (!dk) return lode_error_set(err, LODE_ERR_NOMEM, "out of memory");
        dk->n_layer = kv->n_layer, dk->n_cells = kv->n_cells, dk->width = kv->width;
        const size_t bytes = (size_t)dk->n_layer * (size_t)dk->n_cells * (size_t)dk->width * sizeof(float);
        if (cudaMalloc(&dk->d, bytes) != cudaSuccess) {
            cudaGetLastError();
            delete dk;
            return lode_error_set(err, LODE_ERR_NOMEM,
                                  "cannot allocate the device KV cache of %lld tokens (%zu MiB): lower the context size",
                                  (long long)kv->n_cells, bytes >> 20);
        }
        if (!check(c, cudaMemsetAsync(dk->d, 0, bytes, c->st), "KV cache clear")) {
            cudaFree(dk->d);
            delete dk;
            return report(c, err, "eval");
        }
        kv->cuda = dk;
    }
    const int64_t CH = chunk_limit();
    chunk_plan cp;
    float *lout = logits;
    for (int64_t c0 = 0; c0 < p->n; c0 += CH) {
        const int64_t c1 = std::min(p->n, c0 + CH), n = c1 - c0;
        arena_reset(c);
        plan_chunk(m, kv, p, want, c0, c1, &cp);
        const bool graphable = graphs_enabled() && p->n == n && n <= 8 && cf->arch == LODE_ARCH_DEEPSEEK2 &&
                               cp.n_abs == n && n * dk->n_cells < ((int64_t)1 << 28);
        // Graph-stable shapes: the key list buffer sized by the cache, the split-KV grid by the
        // context rounded up to a power of two (>= 256), which is part of the graph's key.
        if (graphable) {
            int64_t b = 256;
            while (b < cp.nk_max) b *= 2;
            cp.nk_split = b;
        }
        // Upload embeddings (permuted) and the plan through pinned memory.
        const size_t kc_cap = graphable ? (size_t)(n * dk->n_cells) : cp.kc.size();
        const size_t nint = (size_t)(4 * n) + kc_cap + (size_t)n + 8;
        const size_t hbytes = (size_t)n * (size_t)H * 4 + nint * 4;
        char *hp = (char *)pinned(c, hbytes);
        float *x = A(float, n * H);
        int32_t *ib = A(int32_t, nint);
        if (!hp || !x || !ib) return report(c, err, "eval");
        float *hx = (float *)hp;
        for (int64_t i = 0; i < n; i++) memcpy(hx + i * H, xh + cp.perm[(size_t)i] * H, (size_t)H * 4);
        int32_t *hi = (int32_t *)(hp + (size_t)n * (size_t)H * 4);
        dev_plan dp;
        // fixed offsets: pos, cell, koff, nk (n each), orow (n), then kc
        const size_t N = (size_t)n;
        memcpy(hi, cp.pos.data(), N * 4), memcpy(hi + N, cp.cell.data(), N * 4), memcpy(hi + 2 * N, cp.koff.data(), N * 4);
        memcpy(hi + 3 * N, cp.nk.data(), N * 4);
        if (!cp.orow.empty()) memcpy(hi + 4 * N, cp.orow.data(), cp.orow.size() * 4);
        if (!cp.kc.empty()) memcpy(hi + 5 * N, cp.kc.data(), cp.kc.size() * 4);
        dp.pos = ib, dp.cell = ib + N, dp.koff = ib + 2 * N, dp.nk = ib + 3 * N, dp.orow = ib + 4 * N, dp.kc = ib + 5 * N;
        check(c, cudaMemcpyAsync(x, hx, N * (size_t)H * 4, cudaMemcpyHostToDevice, c->st), "upload x");
        check(c, cudaMemcpyAsync(ib, hi, (5 * N + cp.kc.size()) * 4, cudaMemcpyHostToDevice, c->st), "upload plan");
        const int64_t no = (int64_t)cp.orow.size();
        float *lg = nullptr;
        lode_status s = LODE_OK;
        graph_ent *ge = nullptr;
        if (graphable) {
            if (m->cancel && *m->cancel) return lode_error_set(err, LODE_ERR_CANCELLED, "evaluation cancelled");
            if (!cm->graphs) cm->graphs = new std::vector<graph_ent>();
            auto &gs = graphs_of(cm);
            const graph_key key = {n, no, dk->d, dk->n_cells, cp.nk_split};
            for (auto &g : gs)
                if (g.k == key) ge = &g;
            if (!ge) {
                if (gs.size() >= 32) {
                    for (auto &g : gs)
                        if (g.exec) cudaGraphExecDestroy(g.exec);
                    gs.clear();
                }
                gs.push_back(graph_ent());
                ge = &gs.back();
                ge->k = key;
            }
        }
        if (ge && !ge->exec && ge->seen >= 1 && ge->seen < 100) {
            // Capture this pass (nothing runs while capturing), then launch it.
            cudaGraph_t graph = nullptr;
            bool ok = check(c, cudaStreamBeginCapture(c->st, cudaStreamCaptureModeThreadLocal), "graph capture");
            if (ok) {
                s = run_pass(cm, m, dk, cp, dp, x, false, &lg, err);
                cudaError_t ee = cudaStreamEndCapture(c->st, &graph);
                ok = s == LODE_OK && ee == cudaSuccess && graph;
                if (ok && cudaGraphInstantiate(&ge->exec, graph, 0) != cudaSuccess) ok = false, ge->exec = nullptr;
                ge->lg = lg;
                if (graph) cudaGraphDestroy(graph);
            }
            if (!ok) {
                // Capture is an optimization: forget it for this shape and run the pass directly.
                cudaGetLastError();
                c->cerr = cudaSuccess, c->berr = CUBLAS_STATUS_SUCCESS, c->oom = false;
                if (err) err->status = LODE_OK, err->text[0] = 0;
                ge->seen = 100; // never again
                ge->exec = nullptr;
                s = LODE_OK;
            }
        }
        if (ge && ge->exec) {
            check(c, cudaGraphLaunch(ge->exec, c->st), "graph launch");
            lg = ge->lg; // the head's output, at the address it had while capturing
        } else {
            s = run_pass(cm, m, dk, cp, dp, x, true, &lg, err);
            if (ge && ge->seen < 100) ge->seen++;
        }
        if (s) {
            cudaStreamSynchronize(c->st);
            cudaGetLastError();
            return s;
        }
        if (no > 0) {
            check(c, cudaMemcpyAsync(lout, lg, (size_t)no * (size_t)V * 4, cudaMemcpyDeviceToHost, c->st), "logits");
            lout += no * V;
        }
        check(c, cudaStreamSynchronize(c->st), "eval");
        if (failed(c)) return report(c, err, "eval");
    }
    return LODE_OK;
}

// Host-side containers may throw std::bad_alloc: never let it escape to C.
extern "C" lode_status lode_cuda_eval(lode_model *m, lode_kv *kv, const lode_eval_plan *p, const float *xh,
                                      const bool *want, float *logits, lode_error *err) {
    try {
        return cuda_eval(m, kv, p, xh, want, logits, err);
    } catch (const std::bad_alloc &) {
        cudaStreamSynchronize(m->cuda->c.st);
        cudaGetLastError();
        return lode_error_set(err, LODE_ERR_NOMEM, "out of host memory planning a CUDA evaluation");
    }
}

// ---- test hooks -------------------------------------------------------------------
namespace {
struct test_ctx {
    ctx c;
    bool ok = false;
    test_ctx(lode_error *err) {
        char why[256];
        if (lode_cuda_device_count(why, sizeof why) <= 0) {
            lode_error_set(err, LODE_ERR_UNSUPPORTED, "%s", why);
            return;
        }
        ok = ctx_init(&c, err);
    }
    ~test_ctx() { ctx_free(&c); }
};
} // namespace

extern "C" lode_status lode_cuda_test_matmul(int type, const void *W, int64_t rows, int64_t cols, const float *X,
                                             int64_t n, float *Y, bool f32, lode_error *err) {
    test_ctx t(err);
    if (!t.ok) return err->status;
    ctx *c = &t.c;
    c->f32 = f32;
    lode_mat w = {};
    w.type = (lode_type)type;
    w.rows = rows, w.cols = cols, w.data = W, w.row_bytes = lode_row_size((lode_type)type, cols);
    w.name = "test matrix";
    if (!w.row_bytes) return lode_error_set(err, LODE_ERR_INVALID_ARG, "bad type/shape");
    lode_pool *pool = lode_pool_new(1);
    dmat d;
    bool ok = upload_mat(c, pool, &w, 1, false, &d, err);
    lode_pool_free(pool);
    if (!ok) return err->status;
    float *dx = A(float, n * cols), *dy = A(float, n * rows);
    if (!dx || !dy) return report(c, err, "test");
    check(c, cudaMemcpy(dx, X, sizeof(float) * (size_t)(n * cols), cudaMemcpyHostToDevice), "copy");
    mm(c, d, dx, cols, n, dy, rows, false);
    check(c, cudaStreamSynchronize(c->st), "matmul");
    check(c, cudaMemcpy(Y, dy, sizeof(float) * (size_t)(n * rows), cudaMemcpyDeviceToHost), "copy");
    return report(c, err, "test matmul");
}

extern "C" lode_status lode_cuda_test_rmsnorm(const float *x, const float *w, int64_t n, int64_t H, float eps, float *y,
                                              lode_error *err) {
    test_ctx t(err);
    if (!t.ok) return err->status;
    ctx *c = &t.c;
    float *dx = A(float, n * H), *dw = A(float, H), *dy = A(float, n * H);
    if (!dx || !dw || !dy) return report(c, err, "test");
    check(c, cudaMemcpy(dx, x, sizeof(float) * (size_t)(n * H), cudaMemcpyHostToDevice), "copy");
    check(c, cudaMemcpy(dw, w, sizeof(float) * (size_t)H, cudaMemcpyHostToDevice), "copy");
    rmsnorm(c, dx, H, dw, dy, H, n, H, eps, nullptr);
    check(c, cudaStreamSynchronize(c->st), "rmsnorm");
    check(c, cudaMemcpy(y, dy, sizeof(float) * (size_t)(n * H), cudaMemcpyDeviceToHost), "copy");
    return report(c, err, "test rmsnorm");
}

extern "C" lode_status lode_cuda_test_rope(float *x, int64_t n, int64_t n_pairs, const float *theta, const int64_t *pos,
                                           bool neox, float mag, lode_error *err) {
    test_ctx t(err);
    if (!t.ok) return err->status;
    ctx *c = &t.c;
    const int64_t d = 2 * n_pairs;
    float *dx = A(float, n * d), *dt = A(float, n_pairs);
    int32_t *dpos = A(int32_t, n);
    if (!dx || !dt || !dpos) return report(c, err, "test");
    std::vector<int32_t> p32((size_t)n);
    for (int64_t i = 0; i < n; i++) p32[(size_t)i] = (int32_t)pos[i];
    check(c, cudaMemcpy(dx, x, sizeof(float) * (size_t)(n * d), cudaMemcpyHostToDevice), "copy");
    check(c, cudaMemcpy(dt, theta, sizeof(float) * (size_t)n_pairs, cudaMemcpyHostToDevice), "copy");
    check(c, cudaMemcpy(dpos, p32.data(), sizeof(int32_t) * (size_t)n, cudaMemcpyHostToDevice), "copy");
    rope(c, dx, d, 1, 0, n, n_pairs, dt, dpos, neox, mag);
    check(c, cudaStreamSynchronize(c->st), "rope");
    check(c, cudaMemcpy(x, dx, sizeof(float) * (size_t)(n * d), cudaMemcpyDeviceToHost), "copy");
    return report(c, err, "test rope");
}

extern "C" lode_status lode_cuda_measure_bandwidth(double *gbps, lode_error *err) {
    *gbps = 0;
    test_ctx t(err);
    if (!t.ok) return err->status;
    ctx *c = &t.c;
    const size_t bytes = (size_t)4 << 30;
    const int blocks = c->sms * 8;
    float4 *buf = (float4 *)arena(c, bytes);
    float *out = A(float, blocks);
    if (!buf || !out) return report(c, err, "bandwidth probe");
    check(c, cudaMemsetAsync(buf, 0, bytes, c->st), "memset");
    check(c, cudaMemsetAsync(out, 0, sizeof(float) * (size_t)blocks, c->st), "memset");
    cudaEvent_t e0, e1;
    check(c, cudaEventCreate(&e0), "event");
    check(c, cudaEventCreate(&e1), "event");
    read_probe(c, buf, (int64_t)(bytes / 16), out, blocks); // warm-up
    const int reps = 10;
    check(c, cudaEventRecord(e0, c->st), "event");
    for (int i = 0; i < reps; i++) read_probe(c, buf, (int64_t)(bytes / 16), out, blocks);
    check(c, cudaEventRecord(e1, c->st), "event");
    check(c, cudaEventSynchronize(e1), "event");
    float ms = 0;
    check(c, cudaEventElapsedTime(&ms, e0, e1), "event");
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    lode_status s = report(c, err, "bandwidth probe");
    if (s) return s;
    *gbps = ms > 0 ? (double)bytes * reps / (ms * 1e-3) / 1e9 : 0;
    return LODE_OK;
}

extern "C" lode_status lode_cuda_selftest_dequant(int type, const void *row, int64_t cols, float *out, lode_error *err) {
    int dt = type == LODE_TYPE_F32 ? DT_F32 : type == LODE_TYPE_BF16 ? DT_BF16 : dt_of((lode_type)type);
    if (dt < 0 || !dequant_row_host(dt, row, cols, out))
        return lode_error_set(err, LODE_ERR_UNSUPPORTED, "type %s is not dequantized by the CUDA kernels",
                              lode_type_name((lode_type)type));
    return LODE_OK;
}

extern "C" lode_status lode_cuda_selftest_attention(bool shared_rope_key, int64_t q_block, double *max_err,
                                                    lode_error *err) {
    try {
        *max_err = attn_selftest(shared_rope_key, q_block);
    } catch (const std::bad_alloc &) {
        return lode_error_set(err, LODE_ERR_NOMEM, "out of memory");
    }
    return LODE_OK;
}

// Without a GPU: the MLA matrices the device gets, applied on the host, against
// the CPU engine's own products (arch_deepseek2.c's absorbed and decompressed
// forms use lode_matvec_rows / lode__matmul / lode__matmul_t on the bound tensors).
extern "C" lode_status lode_cuda_selftest_mla_weights(struct lode_model *m, double *max_err, lode_error *err) {
    *max_err = 0;
    const lode_config *cf = &m->cfg;
    if (cf->arch != LODE_ARCH_DEEPSEEK2) return lode_error_set(err, LODE_ERR_INVALID_ARG, "not a deepseek2 model");
    const int64_t nh = cf->n_head, dc = cf->kv_lora_rank, dn = cf->qk_nope_dim, dv = cf->v_head_dim;
    try {
        std::vector<float> ukT, uk, uv, q((size_t)dn), lat((size_t)dc), a((size_t)std::max(dc, dn * nh)),
            b((size_t)std::max(dc, dn * nh));
        uint64_t r = 777;
        auto rnd = [&]() {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            return (float)((r >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
        };
        double worst = 0;
        for (int64_t l = 0; l < cf->n_layer; l++) {
            const lode_layer *L = &m->layers[l];
            mla_host_mats(m, L, ukT, uk, uv);
            for (auto &v : q) v = rnd();
            for (auto &v : lat) v = rnd();
            for (int64_t h = 0; h < nh; h++) {
                // absorbed query: q~ = W_UK_h^T q_nope
                if (L->split_kvb) {
                    lode_mat v = lode_mat_rows(L->wk_b, h * dc, dc);
                    lode_matvec_rows(v.type, v.data, v.cols, q.data(), b.data(), 0, dc);
                } else {
                    lode_mat v = lode_mat_rows(L->wkv_b, h * (dn + dv), dn);
                    lode__matmul_t(m, &v, q.data(), dn, 1, b.data(), dc);
                }
                for (int64_t c = 0; c < dc; c++) {
                    double s = 0;
                    for (int64_t i = 0; i < dn; i++) s += (double)ukT[(size_t)((h * dc + c) * dn + i)] * q[(size_t)i];
                    worst = std::max(worst, fabs(s - b[(size_t)c]));
                }
                // output: o = W_UV_h lat
                lode_mat w = L->split_kvb ? lode_mat_rows(L->wv_b, h * dv, dv) : lode_mat_rows(L->wkv_b, h * (dn + dv) + dn, dv);
                lode_matvec_rows(w.type, w.data, w.cols, lat.data(), b.data(), 0, dv);
                for (int64_t j = 0; j < dv; j++) {
                    double s = 0;
                    for (int64_t c = 0; c < dc; c++) s += (double)uv[(size_t)((h * dv + j) * dc + c)] * lat[(size_t)c];
                    worst = std::max(worst, fabs(s - b[(size_t)j]));
                }
            }
            // decompressed keys of one latent row: K_nope[h*dn+i]
            if (L->split_kvb) {
                for (int64_t h = 0; h < nh; h++) {
                    lode_mat v = lode_mat_rows(L->wk_b, h * dc, dc);
                    lode__matmul_t(m, &v, lat.data(), dc, 1, a.data() + h * dn, nh * dn);
                }
            } else {
                lode_mat v = L->wkv_b;
                std::vector<float> kv((size_t)(nh * (dn + dv)));
                lode_matvec_rows(v.type, v.data, v.cols, lat.data(), kv.data(), 0, v.rows);
                for (int64_t h = 0; h < nh; h++)
                    for (int64_t i = 0; i < dn; i++) a[(size_t)(h * dn + i)] = kv[(size_t)(h * (dn + dv) + i)];
            }
            for (int64_t k = 0; k < nh * dn; k++) {
                double s = 0;
                for (int64_t c = 0; c < dc; c++) s += (double)uk[(size_t)(k * dc + c)] * lat[(size_t)c];
                worst = std::max(worst, fabs(s - a[(size_t)k]));
            }
        }
        *max_err = worst;
    } catch (const std::bad_alloc &) {
        return lode_error_set(err, LODE_ERR_NOMEM, "out of memory");
    }
    return LODE_OK;
}

// Without a GPU: the host planning of one device pass for a batch (token
// reordering by sequence with absorbed groups first, per-token key lists,
// output rows back in batch order). Returns the first violated property.
extern "C" lode_status lode_cuda_selftest_plan(struct lode_model *m, struct lode_kv *kv,
                                               const struct lode_eval_plan *p, const bool *want, lode_error *err) {
    chunk_plan cp;
    try {
        plan_chunk(m, kv, p, want, 0, p->n, &cp);
    } catch (const std::bad_alloc &) {
        return lode_error_set(err, LODE_ERR_NOMEM, "out of memory");
    }
    const int64_t n = p->n;
    std::vector<int> seen((size_t)n, 0);
    if ((int64_t)cp.perm.size() != n) return lode_error_set(err, LODE_ERR_BACKEND, "perm has %zu entries", cp.perm.size());
    for (int64_t i = 0; i < n; i++) {
        const int64_t b = cp.perm[(size_t)i];
        if (b < 0 || b >= n || seen[(size_t)b]++) return lode_error_set(err, LODE_ERR_BACKEND, "perm is not a permutation");
        if (cp.pos[(size_t)i] != p->pos[b] || cp.cell[(size_t)i] != p->cell[b] || cp.nk[(size_t)i] != p->pos[b] + 1)
            return lode_error_set(err, LODE_ERR_BACKEND, "row %lld: pos/cell/nk do not follow token %lld", (long long)i, (long long)b);
    }
    int64_t next = 0;
    bool dec_seen = false;
    for (const auto &G : cp.groups) {
        if (G.first != next) return lode_error_set(err, LODE_ERR_BACKEND, "groups are not contiguous");
        if (!G.decompress && dec_seen) return lode_error_set(err, LODE_ERR_BACKEND, "an absorbed group after a decompressed one");
        dec_seen |= G.decompress;
        const int32_t *cells = kv->seqs[G.seq].cells;
        for (int64_t i = G.first; i < G.first + G.count; i++) {
            const int64_t b = cp.perm[(size_t)i];
            if (p->seq[b] != G.seq) return lode_error_set(err, LODE_ERR_BACKEND, "row %lld is not of its group's sequence", (long long)i);
            if (i > G.first && cp.pos[(size_t)i] <= cp.pos[(size_t)i - 1])
                return lode_error_set(err, LODE_ERR_BACKEND, "positions not ascending within a group");
            if (cp.koff[(size_t)i] != G.koff) return lode_error_set(err, LODE_ERR_BACKEND, "koff");
            for (int64_t j = 0; j < cp.nk[(size_t)i]; j++)
                if (cp.kc[(size_t)(G.koff + j)] != cells[j]) return lode_error_set(err, LODE_ERR_BACKEND, "key list");
        }
        next += G.count;
    }
    if (next != n) return lode_error_set(err, LODE_ERR_BACKEND, "groups cover %lld of %lld rows", (long long)next, (long long)n);
    int64_t k = 0;
    for (int64_t b = 0; b < n; b++) {
        if (want && !want[b]) continue;
        if (k >= (int64_t)cp.orow.size() || cp.perm[(size_t)cp.orow[(size_t)k]] != b)
            return lode_error_set(err, LODE_ERR_BACKEND, "output row %lld is not batch token %lld", (long long)k, (long long)b);
        k++;
    }
    if (k != (int64_t)cp.orow.size()) return lode_error_set(err, LODE_ERR_BACKEND, "extra output rows");
    int64_t na = 0;
    for (const auto &G : cp.groups)
        if (!G.decompress) na += G.count;
    if (na != cp.n_abs) return lode_error_set(err, LODE_ERR_BACKEND, "n_abs");
    return LODE_OK;
}
