/*
 * ops.c — the engine's f32 math on top of the quant kernels: threaded
 * matmuls over lode_mat views, RMSNorm, RoPE, softmax, SwiGLU, and the
 * per-call workspace.
 *
 * Matmul parallelism: output rows are split into chunks handed to the pool;
 * each chunk calls lode_matmul_rows, which dequantizes a tile of weight rows
 * once and reuses it for every token of the batch. Quantized weights with an
 * int8 path (lode_quant_int8_enabled) get their activations quantized once
 * per call (lode_act_quantize, into the workspace) and run
 * lode_matmul_q8_rows instead; the SwiGLU gate and up products share one
 * quantized input and one pool run.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lode_quant.h"
#include "model_impl.h"

/* ---- workspace ------------------------------------------------------ */
static bool ws_add_block(lode_model *m, size_t n) {
    float *buf = lode_try_malloc(n * sizeof(float));
    if (!buf) return false;
    m->ws.blocks = lode_xrealloc(m->ws.blocks, (size_t)(m->ws.n_blocks + 1) * sizeof(lode_ws_block));
    m->ws.blocks[m->ws.n_blocks++] = (lode_ws_block){buf, n, 0};
    return true;
}

lode_status lode__ws_reserve(lode_model *m, size_t n, lode_error *err) {
    for (int i = 0; i < m->ws.n_blocks; i++)
        if (m->ws.blocks[i].cap >= n) return LODE_OK;
    size_t bytes;
    if (!lode_mul_ok(n, sizeof(float), &bytes) || !ws_add_block(m, n))
        return lode_error_set(err, LODE_ERR_NOMEM, "cannot allocate %zu MiB of compute workspace",
                              (n * sizeof(float)) >> 20);
    return LODE_OK;
}

void lode__ws_reset(lode_model *m) {
    for (int i = 0; i < m->ws.n_blocks; i++) m->ws.blocks[i].used = 0;
    m->ws.cur = 0;
}

lode_ws_mark lode__ws_mark(lode_model *m) {
    lode_ws_mark mk = {m->ws.cur, m->ws.n_blocks ? m->ws.blocks[m->ws.cur].used : 0};
    return mk;
}

void lode__ws_release(lode_model *m, lode_ws_mark mk) {
    for (int i = mk.cur + 1; i < m->ws.n_blocks; i++) m->ws.blocks[i].used = 0;
    m->ws.cur = mk.cur;
    if (m->ws.n_blocks) m->ws.blocks[mk.cur].used = mk.used;
}

float *lode__ws_alloc(lode_model *m, size_t n) {
    n = (n + 15) & ~(size_t)15; /* keep 64-byte alignment of sub-buffers */
    for (;;) {
        if (m->ws.cur < m->ws.n_blocks) {
            lode_ws_block *b = &m->ws.blocks[m->ws.cur];
            if (b->cap - b->used >= n) {
                float *p = b->buf + b->used;
                b->used += n;
                return p;
            }
            if (m->ws.cur + 1 < m->ws.n_blocks) {
                m->ws.cur++;
                continue;
            }
        }
        size_t last = m->ws.n_blocks ? m->ws.blocks[m->ws.n_blocks - 1].cap : 0;
        size_t want = n > 2 * last ? n : 2 * last;
        if (!ws_add_block(m, want) && !ws_add_block(m, n)) {
            fprintf(stderr, "lode: out of memory growing the compute workspace by %zu MiB\n",
                    (n * sizeof(float)) >> 20);
            abort();
        }
        m->ws.cur = m->ws.n_blocks - 1;
    }
}

void lode__ws_free(lode_model *m) {
    for (int i = 0; i < m->ws.n_blocks; i++) lode_free(m->ws.blocks[i].buf);
    lode_free(m->ws.blocks);
    memset(&m->ws, 0, sizeof m->ws);
}

static _Thread_local float *tl_buf[4];
static _Thread_local size_t tl_cap[4];
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;

/* Worker threads free their scratch when they exit (pool teardown), so
 * leak checkers stay quiet; a key with a destructor is the portable hook. */
static void tl_release(void *unused) {
    (void)unused;
    for (int i = 0; i < 4; i++) {
        lode_free(tl_buf[i]);
        tl_buf[i] = NULL;
        tl_cap[i] = 0;
    }
}
static void tl_key_init(void) { pthread_key_create(&tl_key, tl_release); }

float *lode__tl_scratch(int slot, size_t n) {
    if (tl_cap[slot] < n) {
        pthread_once(&tl_once, tl_key_init);
        pthread_setspecific(tl_key, (void *)1);
        lode_free(tl_buf[slot]);
        tl_buf[slot] = lode_xmalloc(n * sizeof(float));
        tl_cap[slot] = n;
    }
    return tl_buf[slot];
}

/* ---- parallel helpers ------------------------------------------------ */
void lode__parallel(lode_model *m, int64_t n, lode_pool_fn fn, void *ctx) {
    lode_pool_run(m->pool, n, fn, ctx);
}

/* A matmul as row chunks; with int8 activations Xq (quantized rows of
 * xq_stride bytes) replaces X. Two matmuls on the same input (gate and up)
 * can share one pool run: tasks [0, n_chunks) are W, the rest W2. */
typedef struct {
    const lode_mat *W, *W2;
    const float *X;
    const void *Xq;
    int64_t ldx, n;
    float *Y, *Y2;
    int64_t ldy, ldy2, chunk, n_chunks;
} mm_task;

static void mm_chunk(void *ctx, int64_t i) {
    const mm_task *t = ctx;
    const lode_mat *W = t->W;
    float *Y = t->Y;
    int64_t ldy = t->ldy;
    if (i >= t->n_chunks) i -= t->n_chunks, W = t->W2, Y = t->Y2, ldy = t->ldy2;
    int64_t r0 = i * t->chunk;
    int64_t r1 = r0 + t->chunk;
    if (r1 > W->rows) r1 = W->rows;
    if (r0 >= r1) return;
    lode__mat_rows(W, t->Xq, t->X, t->ldx, t->n, Y, ldy, r0, r1);
}

void lode__mat_rows(const lode_mat *W, const void *Xq, const float *X, int64_t ldx, int64_t n, float *Y, int64_t ldy,
                    int64_t r0, int64_t r1) {
    if (W->r16) {
        if (Xq) lode_r16_matmul_q8(W->type, W->data, W->cols, Xq, n, Y, ldy, r0, r1);
        else lode_r16_matmul_f32(W->type, W->data, W->cols, X, ldx, n, Y, ldy, r0, r1);
    } else if (Xq) {
        lode_matmul_q8_rows(W->type, W->data, W->cols, Xq, n, Y, ldy, r0, r1);
    } else if (n == 1) {
        lode_matvec_rows(W->type, W->data, W->cols, X, Y, r0, r1);
    } else {
        lode_matmul_rows(W->type, W->data, W->cols, X, ldx, n, Y, ldy, r0, r1);
    }
}

/* Activation format family of the int8 path: 0 none, 1 q8a (32-blocks), 2
 * q8k (256-blocks). */
static int act_family(const lode_mat *W) {
    if (!lode_quant_int8_enabled() || lode_act_row_size(W->type, W->cols) == 0) return 0;
    return lode_type_get(W->type)->block_size == 32 ? 1 : 2;
}

typedef struct {
    lode_type t;
    const float *X;
    int64_t ldx, cols;
    char *Xq;
    size_t ars;
} aq_task;

static void aq_row(void *ctx, int64_t i) {
    const aq_task *a = ctx;
    lode_act_quantize(a->t, a->X + i * a->ldx, a->Xq + (size_t)i * a->ars, a->cols);
}

/* Quantize n activation rows for W's int8 path into the workspace. */
static const void *act_quantize(lode_model *m, const lode_mat *W, const float *X, int64_t ldx, int64_t n) {
    const size_t ars = lode_act_row_size(W->type, W->cols);
    char *Xq = (char *)lode__ws_alloc(m, ((size_t)n * ars + 3) / 4);
    aq_task a = {W->type, X, ldx, W->cols, Xq, ars};
    if (n >= 16) lode__parallel(m, n, aq_row, &a);
    else
        for (int64_t i = 0; i < n; i++) aq_row(&a, i);
    return Xq;
}

static int64_t mm_chunk_rows(lode_model *m, int64_t rows) {
    int nt = lode_pool_size(m->pool);
    /* Enough chunks to balance, each at least 16 rows (and a multiple of 16
     * so tiles stay aligned). */
    int64_t chunk = (rows + (int64_t)nt * 4 - 1) / ((int64_t)nt * 4);
    if (chunk < 16) chunk = 16;
    return (chunk + 15) & ~(int64_t)15;
}

void lode__matmul(lode_model *m, const lode_mat *W, const float *X, int64_t ldx, int64_t n, float *Y,
                  int64_t ldy) {
    if (n <= 0 || W->rows <= 0) return;
    const int64_t chunk = mm_chunk_rows(m, W->rows);
    const int64_t n_chunks = (W->rows + chunk - 1) / chunk;
    lode_ws_mark mk = lode__ws_mark(m);
    const void *Xq = act_family(W) ? act_quantize(m, W, X, ldx, n) : NULL;
    mm_task t = {W, W, X, Xq, ldx, n, Y, Y, ldy, ldy, chunk, n_chunks};
    lode__parallel(m, n_chunks, mm_chunk, &t);
    lode__ws_release(m, mk);
}

/* Y1 = W1 X and Y2 = W2 X in one pool run (same input, same shapes). */
static void matmul2(lode_model *m, const lode_mat *W1, const lode_mat *W2, const float *X, int64_t ldx, int64_t n,
                    float *Y1, float *Y2, int64_t ldy) {
    const int fam = act_family(W1);
    if (W1->rows != W2->rows || W1->cols != W2->cols || fam != act_family(W2) || (fam == 0 && W1->type != W2->type)) {
        lode__matmul(m, W1, X, ldx, n, Y1, ldy);
        lode__matmul(m, W2, X, ldx, n, Y2, ldy);
        return;
    }
    if (n <= 0 || W1->rows <= 0) return;
    const int64_t chunk = mm_chunk_rows(m, 2 * W1->rows);
    const int64_t n_chunks = (W1->rows + chunk - 1) / chunk;
    lode_ws_mark mk = lode__ws_mark(m);
    const void *Xq = fam ? act_quantize(m, W1, X, ldx, n) : NULL;
    mm_task t = {W1, W2, X, Xq, ldx, n, Y1, Y2, ldy, ldy, chunk, n_chunks};
    lode__parallel(m, 2 * n_chunks, mm_chunk, &t);
    lode__ws_release(m, mk);
}

void lode__matmul_t(lode_model *m, const lode_mat *W, const float *X, int64_t ldx, int64_t n, float *Y,
                    int64_t ldy) {
    (void)m;
    LODE_ASSERT(!W->r16);
    const lode_type_traits *tr = lode_type_get(W->type);
    float *row = lode__tl_scratch(3, (size_t)W->cols);
    for (int64_t t = 0; t < n; t++) memset(Y + t * ldy, 0, (size_t)W->cols * sizeof(float));
    for (int64_t r = 0; r < W->rows; r++) {
        tr->to_f32((const char *)W->data + (size_t)r * W->row_bytes, row, W->cols);
        for (int64_t t = 0; t < n; t++) {
            const float xr = X[t * ldx + r];
            float *y = Y + t * ldy;
            for (int64_t c = 0; c < W->cols; c++) y[c] += xr * row[c];
        }
    }
}

/* ---- elementwise ------------------------------------------------------ */
void lode__rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float r = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * r * w[i];
}

static void rope_cs(float *cs, int64_t n_pairs, const float *theta, double pos, float mag) {
    for (int64_t i = 0; i < n_pairs; i++) {
        const double ang = pos * (double)theta[i];
        cs[2 * i] = (float)cos(ang) * mag;
        cs[2 * i + 1] = (float)sin(ang) * mag;
    }
}

static void rope_apply(float *x, int64_t n_pairs, const float *cs, bool neox) {
    for (int64_t i = 0; i < n_pairs; i++) {
        const float c = cs[2 * i], s = cs[2 * i + 1];
        float *a = neox ? &x[i] : &x[2 * i];
        float *b = neox ? &x[i + n_pairs] : &x[2 * i + 1];
        const float x0 = *a, x1 = *b;
        *a = x0 * c - x1 * s;
        *b = x0 * s + x1 * c;
    }
}

void lode__rope(float *x, int64_t n_pairs, const float *theta, double pos, bool neox, float mag) {
    for (int64_t i = 0; i < n_pairs; i++) {
        const double ang = pos * (double)theta[i];
        const float c = (float)cos(ang) * mag, s = (float)sin(ang) * mag;
        float *a = neox ? &x[i] : &x[2 * i];
        float *b = neox ? &x[i + n_pairs] : &x[2 * i + 1];
        const float x0 = *a, x1 = *b;
        *a = x0 * c - x1 * s;
        *b = x0 * s + x1 * c;
    }
}

void lode__rope_many(float *x, int64_t stride, int64_t nvec, int64_t n_pairs, const float *theta, double pos, bool neox,
                     float mag) {
    enum { MAX_PAIRS = 256 };
    if (n_pairs > MAX_PAIRS) {
        for (int64_t v = 0; v < nvec; v++) lode__rope(x + v * stride, n_pairs, theta, pos, neox, mag);
        return;
    }
    float cs[2 * MAX_PAIRS];
    rope_cs(cs, n_pairs, theta, pos, mag);
    for (int64_t v = 0; v < nvec; v++) rope_apply(x + v * stride, n_pairs, cs, neox);
}

void lode__softmax(float *x, int64_t n) {
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

typedef struct {
    float *g;
    const float *u;
    int64_t I;
} silu_task;

static void silu_row(void *ctx, int64_t i) {
    const silu_task *t = ctx;
    lode_swiglu_f32(t->g + i * t->I, t->u + i * t->I, t->g + i * t->I, t->I);
}

void lode__swiglu(lode_model *m, const lode_mat *gate, const lode_mat *up, const lode_mat *down,
                  const float *X, int64_t n, float *Y) {
    const int64_t I = gate->rows, H = gate->cols;
    lode_ws_mark mark = lode__ws_mark(m);
    float *g = lode__ws_alloc(m, (size_t)(n * I));
    float *u = lode__ws_alloc(m, (size_t)(n * I));
    matmul2(m, gate, up, X, H, n, g, u, I);
    silu_task st = {g, u, I};
    if (n >= 8) lode__parallel(m, n, silu_row, &st);
    else lode_swiglu_f32(g, u, g, n * I);
    lode__matmul(m, down, g, I, n, Y, down->rows);
    lode__ws_release(m, mark);
}

/* S[t*lds + j] (+)= dot(row of cells[j] + off, Q + t*ldq) over k elements,
 * for j < nk and t < nq: runs of consecutive cells (rows `width` apart) go
 * to lode_gemm_f32 as one strided product, so the key loop runs at the SIMD
 * level's speed and reads each row once for all nq queries. */
void lode__kv_dots(const lode_kv *kv, int64_t layer, const int32_t *cells, int64_t nk, int64_t off, const float *Q,
                   int64_t ldq, int64_t nq, int64_t k, float *S, int64_t lds, bool accumulate) {
    for (int64_t j0 = 0; j0 < nk;) {
        int64_t j1 = j0 + 1;
        while (j1 < nk && cells[j1] == cells[j1 - 1] + 1) j1++;
        lode_gemm_f32(lode__kv_row(kv, layer, cells[j0]) + off, kv->width, j1 - j0, Q, ldq, nq, S + j0, lds, k,
                      accumulate);
        j0 = j1;
    }
}

/* out[h*ldo + 0..k) += sum_j P[h*ldp + j] * (row of cells[j] + off)[0..k)
 * for h < nh: weighted sums over runs of consecutive cells. */
void lode__kv_weighted_sum(const lode_kv *kv, int64_t layer, const int32_t *cells, int64_t nk, int64_t off,
                           const float *P, int64_t ldp, int64_t nh, int64_t k, float *out, int64_t ldo) {
    for (int64_t j0 = 0; j0 < nk;) {
        int64_t j1 = j0 + 1;
        while (j1 < nk && cells[j1] == cells[j1 - 1] + 1) j1++;
        lode_wsum_f32(P + j0, ldp, nh, lode__kv_row(kv, layer, cells[j0]) + off, kv->width, j1 - j0, out, ldo, k);
        j0 = j1;
    }
}
