/*
 * model.c — model loading (format detection, config, tensor binding with
 * shape/type checks), RoPE/YaRN tables, and the architecture-independent
 * part of evaluation: batch validation, KV cell reservation, embeddings,
 * final norm and the output head.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lode_cuda.h"
#include "model_config.h"
#include "model_impl.h"
#include "quant_policy.h"

lode_model_params lode_model_default_params(void) {
    lode_model_params p = {0, LODE_MLA_AUTO, -1, LODE_DEVICE_CPU};
    return p;
}

float *lode__model_own_f32(lode_model *m, size_t n) {
    if (m->n_owned == m->cap_owned) {
        m->cap_owned = m->cap_owned ? m->cap_owned * 2 : 64;
        m->owned = lode_xrealloc(m->owned, m->cap_owned * sizeof(void *));
    }
    float *p = lode_try_calloc(n, sizeof(float));
    if (p) m->owned[m->n_owned++] = p;
    return p;
}

/* ---- tensor lookup ---------------------------------------------------- */
static const lode_tensor *find_tensor(lode_model *m, const char *gguf_name, const char *hf_name) {
    if (m->gguf) return gguf_name ? lode_gguf_find_tensor(m->gguf, gguf_name) : NULL;
    return hf_name ? lode_st_find(m->st, hf_name) : NULL;
}

static void shape_str(const lode_tensor *t, char *buf, size_t n) {
    /* Print PyTorch order [outer, ..., inner] for HF, GGML order for GGUF. */
    int off = snprintf(buf, n, "[");
    for (int d = 0; d < t->n_dims; d++)
        off += snprintf(buf + off, n - (size_t)off, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
    snprintf(buf + off, n - (size_t)off, "]");
}

static lode_status check_type(lode_model *m, const lode_tensor *t, lode_error *err) {
    if (!lode_type_get(t->type))
        return lode_error_set(err, LODE_ERR_UNSUPPORTED,
                              "%s: tensor '%s' has type %s, which lode cannot compute with "
                              "(supported: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k)",
                              m->path, t->name, lode_type_name(t->type));
    return LODE_OK;
}

/* ---- in-engine quantization (--quant) --------------------------------- */
typedef struct {
    const lode_mat *src;
    lode_type type;
    char *dst;
    size_t rb;
    float *tmp; /* [n_threads][cols] */
} qload_ctx;

static void qload_rows(void *ctx, int64_t i) {
    qload_ctx *q = ctx;
    const int64_t chunk = 64, r0 = i * chunk;
    int64_t r1 = r0 + chunk > q->src->rows ? q->src->rows : r0 + chunk;
    float *tmp = q->tmp + (size_t)lode_pool_thread_index() * (size_t)q->src->cols;
    const lode_type_traits *from = lode_type_get(q->src->type), *to = lode_type_get(q->type);
    for (int64_t r = r0; r < r1; r++) {
        from->to_f32((const char *)q->src->data + (size_t)r * q->src->row_bytes, tmp, q->src->cols);
        to->from_f32(tmp, q->dst + (size_t)r * q->rb, q->src->cols);
    }
}

/* Quantize a float matrix into an owned buffer (HF bf16 weights without a
 * converter); rows that do not tile into the blocks get the fallback type. */
static lode_status quantize_at_load(lode_model *m, lode_mat *w, lode_error *err) {
    const lode_type target = lode__quant_fallback((lode_type)m->quant_type, w->cols);
    const lode_type_traits *to = lode_type_get(target);
    if (lode_type_get(w->type)->is_quantized || w->type == target) {
        m->weight_bytes += w->row_bytes * (size_t)w->rows;
        return LODE_OK;
    }
    size_t rb = lode_row_size(target, w->cols), bytes;
    if (!lode_mul_ok(rb, (size_t)w->rows, &bytes))
        return lode_error_set(err, LODE_ERR_NOMEM, "tensor '%s' is too large to quantize", w->name);
    char *dst = lode_try_malloc(bytes);
    float *tmp = lode_try_malloc((size_t)lode_pool_size(m->pool) * (size_t)w->cols * sizeof(float));
    if (!dst || !tmp) {
        lode_free(dst);
        lode_free(tmp);
        return lode_error_set(err, LODE_ERR_NOMEM, "out of memory quantizing '%s' to %s (%zu MB)", w->name,
                              to->name, bytes >> 20);
    }
    qload_ctx q = {w, target, dst, rb, tmp};
    lode_pool_run(m->pool, (w->rows + 63) / 64, qload_rows, &q);
    lode_free(tmp);
    if (m->n_owned == m->cap_owned) {
        m->cap_owned = m->cap_owned ? m->cap_owned * 2 : 64;
        m->owned = lode_xrealloc(m->owned, m->cap_owned * sizeof(void *));
    }
    m->owned[m->n_owned++] = dst;
    w->type = target;
    w->data = dst;
    w->row_bytes = rb;
    m->weight_bytes += bytes;
    return LODE_OK;
}

lode_status lode__bind_mat(lode_model *m, lode_mat *out, const char *gguf_name, const char *hf_name,
                           int64_t rows, int64_t cols, bool required, lode_error *err) {
    memset(out, 0, sizeof *out);
    const lode_tensor *t = find_tensor(m, gguf_name, hf_name);
    const char *nm = m->gguf ? gguf_name : hf_name;
    if (!t) {
        if (!required) return LODE_OK;
        return lode_error_set(err, LODE_ERR_FORMAT, "%s: required tensor '%s' is missing", m->path, nm);
    }
    lode_status s = check_type(m, t, err);
    if (s) return s;
    int64_t r = 1;
    for (int d = 1; d < t->n_dims; d++) r *= t->ne[d];
    if (t->ne[0] != cols || r != rows) {
        char sh[96];
        shape_str(t, sh, sizeof sh);
        return lode_error_set(err, LODE_ERR_FORMAT,
                              "%s: tensor '%s' has shape %s (GGML order), expected %lld columns x %lld rows "
                              "from the model config; the file does not match its config",
                              m->path, nm, sh, (long long)cols, (long long)rows);
    }
    size_t rb = lode_row_size(t->type, cols);
    if (rb == 0)
        return lode_error_set(err, LODE_ERR_FORMAT, "%s: tensor '%s': row length %lld is not a multiple of the %s block",
                              m->path, nm, (long long)cols, lode_type_name(t->type));
    out->type = t->type;
    out->rows = rows;
    out->cols = cols;
    out->data = t->data;
    out->row_bytes = rb;
    out->name = t->name;
    if (m->quant_type >= 0 && rows > 1) return quantize_at_load(m, out, err);
    m->weight_bytes += t->nbytes;
    return LODE_OK;
}

lode_status lode__bind_vec(lode_model *m, float **out, const char *gguf_name, const char *hf_name, int64_t n,
                           bool required, lode_error *err) {
    *out = NULL;
    lode_mat v;
    lode_status s = lode__bind_mat(m, &v, gguf_name, hf_name, 1, n, required, err);
    if (s || !v.data) return s;
    float *f = lode__model_own_f32(m, (size_t)n);
    if (!f) return lode_error_set(err, LODE_ERR_NOMEM, "out of memory converting '%s'", v.name);
    lode_type_get(v.type)->to_f32(v.data, f, n);
    *out = f;
    return LODE_OK;
}

lode_status lode__bind_experts(lode_model *m, lode_mat **out, const char *gguf_name, const char *hf_fmt,
                               int64_t n_exp, int64_t rows, int64_t cols, lode_error *err) {
    lode_mat *v = lode_try_calloc((size_t)n_exp, sizeof(lode_mat));
    if (!v) return lode_error_set(err, LODE_ERR_NOMEM, "out of memory for %lld expert views", (long long)n_exp);
    *out = v;
    if (m->gguf) {
        lode_mat all;
        lode_status s = lode__bind_mat(m, &all, gguf_name, NULL, n_exp * rows, cols, true, err);
        if (s) return s;
        const lode_tensor *t = lode_gguf_find_tensor(m->gguf, gguf_name);
        if (t->n_dims != 3 || t->ne[1] != rows || t->ne[2] != n_exp)
            return lode_error_set(err, LODE_ERR_FORMAT, "%s: tensor '%s' must be {%lld, %lld, %lld}", m->path,
                                  gguf_name, (long long)cols, (long long)rows, (long long)n_exp);
        for (int64_t e = 0; e < n_exp; e++) v[e] = lode_mat_rows(all, e * rows, rows);
        return LODE_OK;
    }
    char name[256];
    for (int64_t e = 0; e < n_exp; e++) {
        snprintf(name, sizeof name, hf_fmt, (int)e);
        lode_status s = lode__bind_mat(m, &v[e], NULL, name, rows, cols, true, err);
        if (s) return s;
    }
    return LODE_OK;
}

/* ---- RoPE tables -------------------------------------------------------- */
static double yarn_get_mscale(double s, double mscale) {
    return s <= 1.0 ? 1.0 : 0.1 * mscale * log(s) + 1.0;
}

static lode_status setup_rope(lode_model *m, lode_error *err) {
    const lode_config *c = &m->cfg;
    int64_t d = c->arch == LODE_ARCH_DEEPSEEK2 ? c->qk_rope_dim : c->head_dim;
    int64_t np = d / 2;
    m->rope_theta_i = lode__model_own_f32(m, (size_t)np);
    if (!m->rope_theta_i) return lode_error_set(err, LODE_ERR_NOMEM, "out of memory");
    m->rope_mag = 1.0f;
    const double base = c->rope_theta;
    if (c->rope_scaling == LODE_ROPE_SCALING_YARN) {
        /* spec-model.md §3.1: correction range from the ORIGINAL context. */
        const double s = c->rope_factor, L0 = (double)c->rope_orig_ctx;
        double dlow = (double)d * log(L0 / (c->yarn_beta_fast * 2.0 * M_PI)) / (2.0 * log(base));
        double dhigh = (double)d * log(L0 / (c->yarn_beta_slow * 2.0 * M_PI)) / (2.0 * log(base));
        double low = floor(dlow), high = ceil(dhigh);
        if (low < 0) low = 0;
        if (high > (double)(d - 1)) high = (double)(d - 1);
        if (low == high) high += 0.001;
        for (int64_t i = 0; i < np; i++) {
            /* fp32 like the reference: inv_freq = 1 / base^(2i/d) */
            float extra = (float)(1.0 / pow(base, (double)(2 * i) / (double)d));
            float inter = (float)(extra / s);
            double ramp = ((double)i - low) / (high - low);
            if (ramp < 0) ramp = 0;
            if (ramp > 1) ramp = 1;
            double e = 1.0 - ramp;
            m->rope_theta_i[i] = (float)(inter * (1.0 - e) + extra * e);
        }
        m->rope_mag = (float)(yarn_get_mscale(s, c->yarn_mscale) / yarn_get_mscale(s, c->yarn_mscale_all_dim));
    } else {
        double f = c->rope_scaling == LODE_ROPE_SCALING_LINEAR ? c->rope_factor : 1.0;
        for (int64_t i = 0; i < np; i++)
            m->rope_theta_i[i] = (float)(1.0 / pow(base, (double)(2 * i) / (double)d) / f);
    }
    int64_t dqk = c->arch == LODE_ARCH_DEEPSEEK2 ? c->qk_nope_dim + c->qk_rope_dim : c->head_dim;
    double scale = 1.0 / sqrt((double)dqk);
    if (c->arch == LODE_ARCH_DEEPSEEK2 && c->rope_scaling == LODE_ROPE_SCALING_YARN && c->yarn_mscale_all_dim != 0) {
        double ms = yarn_get_mscale(c->rope_factor, c->yarn_mscale_all_dim);
        scale *= ms * ms; /* spec §3.4: applies to the whole logit */
    }
    m->attn_scale = (float)scale;
    return LODE_OK;
}

/* ---- load ----------------------------------------------------------------- */
static bool is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* --device cuda|auto: upload to the GPU, or say why not (auto: CPU). */
static lode_status select_device(lode_model *m, lode_device dev, lode_error *err) {
    char why[LODE_ERROR_TEXT];
    lode_error e2 = {0};
    if (lode_cuda_device_count(why, sizeof why) > 0 && lode_cuda_model_new(m, &m->cuda, &e2) == LODE_OK)
        return LODE_OK;
    if (e2.status) snprintf(why, sizeof why, "CUDA setup failed: %.400s", e2.text);
    if (dev == LODE_DEVICE_CUDA)
        return lode_error_set(err, e2.status ? e2.status : LODE_ERR_UNSUPPORTED, "--device cuda: %s", why);
    fprintf(stderr, "lode: using the CPU (--device auto): %s\n", why);
    return LODE_OK;
}

/* Map every weight page now (the file is read once, at load): the first
 * requests then pay no page faults, the way llama.cpp's MAP_POPULATE does.
 * MADV_POPULATE_READ (Linux 5.14) populates the page tables; older kernels
 * get the asynchronous MADV_WILLNEED read-ahead. Errors are ignored (the
 * pages still fault in on first use). LODE_NO_PREFAULT=1 skips it. */
static void prefault_range(const void *p, size_t n) {
    if (!p || !n) return;
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)p & ~(pg - 1);
    const size_t len = (size_t)((uintptr_t)p + n - a);
#ifdef MADV_POPULATE_READ
    if (madvise((void *)a, len, MADV_POPULATE_READ) == 0) return;
#endif
    (void)madvise((void *)a, len, MADV_WILLNEED);
}

static void prefault_weights(const lode_model *m) {
    const char *e = getenv("LODE_NO_PREFAULT");
    if (e && strcmp(e, "0") != 0) return;
    if (m->gguf)
        for (int64_t i = 0; i < lode_gguf_n_tensors(m->gguf); i++)
            prefault_range(lode_gguf_tensor(m->gguf, i)->data, lode_gguf_tensor(m->gguf, i)->nbytes);
    if (m->st)
        for (int64_t i = 0; i < lode_st_n_tensors(m->st); i++)
            prefault_range(lode_st_tensor(m->st, i)->data, lode_st_tensor(m->st, i)->nbytes);
}

/* MemAvailable from /proc/meminfo in bytes (0 if unknown). */
static uint64_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb * 1024;
}

/* GGUF weights are read into anonymous memory (lode_gguf_make_resident) when
 * they take under 80 % of the available memory: page-cache pages can be
 * reclaimed or slow to reach (4 KiB mappings; on this project's VMs a
 * streaming read of them ran at 10-21 GB/s against 18-21 from a fresh
 * anonymous copy), and a resident daemon wants its weights in RAM, like
 * llama.cpp's --no-mmap. LODE_MMAP=1 keeps the file mapping (then
 * prefaulted); so do bigger models, which the page cache can still serve. */
static void place_weights(lode_model *m) {
    const char *e = getenv("LODE_MMAP");
    if (m->gguf && !(e && strcmp(e, "0") != 0)) {
        uint64_t n = 0;
        for (int64_t i = 0; i < lode_gguf_n_tensors(m->gguf); i++) n += lode_gguf_tensor(m->gguf, i)->nbytes;
        const uint64_t avail = mem_available();
        lode_error err = {0};
        if (avail && n < avail / 5 * 4) {
            if (lode_gguf_make_resident(m->gguf, &err) == LODE_OK) {
                m->resident = true;
                return;
            }
            lode_log(LODE_LOG_WARN, "%s; using the file mapping", err.text);
        }
    }
    prefault_weights(m);
}

/* ---- load-time interleaving for the int8 kernels (lode_r16_*) ----------- */
typedef struct {
    lode_mat **mats;
    int64_t n, *first; /* task prefix per matrix */
} repack_ctx;

#define REPACK_GROUPS 64 /* 16-row groups per task */

static void repack_task(void *ctx, int64_t i) {
    const repack_ctx *c = ctx;
    int64_t k = 0;
    while (i >= c->first[k + 1]) k++;
    const lode_mat *w = c->mats[k];
    const int64_t g0 = (i - c->first[k]) * REPACK_GROUPS, ng = w->rows / 16;
    lode_r16_pack_groups(w->type, (void *)w->data, w->cols, g0, g0 + REPACK_GROUPS < ng ? g0 + REPACK_GROUPS : ng);
}

static bool owned_data(const lode_model *m, const void *p) {
    for (size_t i = 0; i < m->n_owned; i++)
        if (m->owned[i] == p) return true;
    return false;
}

/* Every matrix the matmuls read (not the embedding, not the MLA k_b/v_b/kv_b
 * that attention slices per head) of a type the r16 kernels run natively,
 * when its data is writable: the GGUF's resident copy, or a buffer the
 * loader quantized. LODE_R16=0 keeps the plain layout. */
void lode__repack_weights(lode_model *m) {
    const char *e = getenv("LODE_R16");
    if ((e && strcmp(e, "0") == 0) || m->cuda || !lode_quant_int8_enabled()) return;
    const bool resident = m->gguf && lode_gguf_resident_writable(m->gguf, true);
    size_t cap = 64, n = 0;
    lode_mat **mats = lode_xmalloc(cap * sizeof *mats);
#define ADD(W)                                                                                               \
    do {                                                                                                     \
        lode_mat *w_ = (W);                                                                                  \
        if (w_->data && !w_->r16 && w_->data != m->tok_embd.data && lode_r16_supported(w_->type, w_->rows, w_->cols) && \
            lode_r16_fast(w_->type) && (resident || owned_data(m, w_->data))) {                              \
            if (n == cap) mats = lode_xrealloc(mats, (cap *= 2) * sizeof *mats);                             \
            mats[n++] = w_;                                                                                  \
        }                                                                                                    \
    } while (0)
    ADD(&m->output);
    for (int64_t l = 0; l < m->cfg.n_layer; l++) {
        lode_layer *L = &m->layers[l];
        lode_mat *ws[] = {&L->wq,       &L->wq_a,   &L->wq_b,     &L->wkv_a,    &L->wk,      &L->wv,    &L->wo,
                          &L->ffn_gate, &L->ffn_up, &L->ffn_down, &L->gate_inp, &L->sh_gate, &L->sh_up, &L->sh_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) ADD(ws[i]);
        if (L->is_moe && L->exp_gate)
            for (int64_t x = 0; x < m->cfg.n_expert; x++) {
                ADD(&L->exp_gate[x]);
                ADD(&L->exp_up[x]);
                ADD(&L->exp_down[x]);
            }
    }
#undef ADD
    int64_t *first = lode_xmalloc((n + 1) * sizeof *first);
    first[0] = 0;
    for (size_t i = 0; i < n; i++) first[i + 1] = first[i] + (mats[i]->rows / 16 + REPACK_GROUPS - 1) / REPACK_GROUPS;
    repack_ctx c = {mats, (int64_t)n, first};
    if (n) lode_pool_run(m->pool, first[n], repack_task, &c);
    for (size_t i = 0; i < n; i++) {
        mats[i]->r16 = true;
        m->r16_bytes += mats[i]->row_bytes * (size_t)mats[i]->rows;
    }
    m->n_r16 = (int64_t)n;
    if (resident) (void)lode_gguf_resident_writable(m->gguf, false);
    lode_free(first);
    lode_free(mats);
}

lode_status lode_model_load(const char *path, const lode_model_params *params, lode_model **out,
                            lode_error *err) {
    *out = NULL;
    lode_model_params dp = lode_model_default_params();
    if (!params) params = &dp;
    lode_model *m = lode_xcalloc(1, sizeof *m);
    m->path = lode_xstrdup(path);
    m->mla_mode = params->mla_mode;
    m->quant_type = -1;
    lode_status s;
    if (params->quant_type >= 0) {
        const lode_type_traits *qt = lode_type_get((lode_type)params->quant_type);
        if (!qt) {
            s = lode_error_set(err, LODE_ERR_INVALID_ARG, "cannot quantize to type %s",
                               lode_type_name((lode_type)params->quant_type));
            goto fail;
        }
        m->quant_type = params->quant_type;
    }
    m->pool = lode_pool_new(params->n_threads);
    if (is_dir(path)) {
        m->format = "hf";
        char cj[4096];
        snprintf(cj, sizeof cj, "%s/config.json", path);
        struct stat sb;
        if (stat(cj, &sb) != 0) {
            s = lode_error_set(err, LODE_ERR_NOT_FOUND,
                               "%s: not a model directory (no config.json); pass a GGUF file or a Hugging Face "
                               "model directory", path);
            goto fail;
        }
        if ((s = lode__config_from_hf(cj, &m->cfg, err))) goto fail;
        if ((s = lode_st_open(path, &m->st, err))) goto fail;
    } else {
        m->format = "gguf";
        if ((s = lode_gguf_open(path, &m->gguf, err))) goto fail;
        if ((s = lode__config_from_gguf(m->gguf, &m->cfg, err))) goto fail;
        place_weights(m);
    }
    /* Vocabulary size from the embedding when the metadata lacks it. */
    if (m->cfg.n_vocab == 0) {
        const lode_tensor *t = find_tensor(m, "token_embd.weight", "model.embed_tokens.weight");
        if (t && t->n_dims == 2) m->cfg.n_vocab = t->ne[1];
    }
    if ((s = lode__config_validate(&m->cfg, path, err))) goto fail;
    if ((s = lode__bind_mat(m, &m->tok_embd, "token_embd.weight", "model.embed_tokens.weight", m->cfg.n_vocab,
                            m->cfg.n_embd, true, err)))
        goto fail;
    if ((s = lode__bind_mat(m, &m->output, "output.weight", "lm_head.weight", m->cfg.n_vocab, m->cfg.n_embd,
                            false, err)))
        goto fail;
    if (!m->output.data) {
        m->output = m->tok_embd; /* tied embeddings */
        m->cfg.tie_embeddings = true;
    }
    if ((s = lode__bind_vec(m, &m->output_norm, "output_norm.weight", "model.norm.weight", m->cfg.n_embd, true,
                            err)))
        goto fail;
    m->layers = lode_xcalloc((size_t)m->cfg.n_layer, sizeof(lode_layer));
    s = m->cfg.arch == LODE_ARCH_DEEPSEEK2 ? lode__deepseek2_bind(m, err) : lode__llama_bind(m, err);
    if (s) goto fail;
    if ((s = setup_rope(m, err))) goto fail;
    if (m->st) prefault_weights(m);
    if (params->device != LODE_DEVICE_CPU && (s = select_device(m, params->device, err))) goto fail;
    lode__repack_weights(m);
    *out = m;
    return LODE_OK;
fail:
    lode_model_free(m);
    return s;
}

void lode_model_free(lode_model *m) {
    if (!m) return;
    lode_cuda_model_free(m->cuda);
    if (m->layers) {
        for (int64_t l = 0; l < m->cfg.n_layer; l++) {
            lode_free(m->layers[l].exp_gate);
            lode_free(m->layers[l].exp_up);
            lode_free(m->layers[l].exp_down);
        }
    }
    lode_free(m->layers);
    for (size_t i = 0; i < m->n_owned; i++) lode_free(m->owned[i]);
    lode_free(m->owned);
    lode__ws_free(m);
    if (m->pool) lode_pool_free(m->pool);
    lode_gguf_free(m->gguf);
    lode_st_free(m->st);
    lode_free(m->path);
    lode_free(m);
}

const lode_config *lode_model_config(const lode_model *m) { return &m->cfg; }
const char *lode_model_path(const lode_model *m) { return m->path; }
const char *lode_model_format(const lode_model *m) { return m->format; }
int lode_model_n_threads(const lode_model *m) { return lode_pool_size(m->pool); }
uint64_t lode_model_weight_bytes(const lode_model *m) { return m->weight_bytes; }
const char *lode_model_device(const lode_model *m) { return m->cuda ? lode_cuda_model_describe(m->cuda) : "cpu"; }
void lode_model_set_mla_mode(lode_model *m, lode_mla_mode mode) { m->mla_mode = mode; }
void lode_model_set_cancel_flag(lode_model *m, volatile int *flag) { m->cancel = flag; }

int64_t lode_model_kv_width(const lode_model *m) {
    const lode_config *c = &m->cfg;
    if (c->arch == LODE_ARCH_DEEPSEEK2) return c->kv_lora_rank + c->qk_rope_dim;
    return 2 * c->n_head_kv * c->head_dim;
}
