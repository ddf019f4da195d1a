/*
 * ops.c — the engine's f32 math on top of the quant kernels: threaded
 * matmuls over lode_mat views, RMSNorm, RoPE, softmax, SwiGLU, and the
 * per-call workspace.
 *
 * Matmul parallelism: output rows are split into chunks handed to the pool;
 * each chunk calls lode_matmul_rows, which dequantizes a tile of weight rows
 * once and reuses it for every token of the batch.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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

typedef struct {
    const lode_mat *W;
    const float *X;
    int64_t ldx, n;
    float *Y;
    int64_t ldy, chunk;
} mm_task;

static void mm_chunk(void *ctx, int64_t i) {
    const mm_task *t = ctx;
    int64_t r0 = i * t->chunk;
    int64_t r1 = r0 + t->chunk;
    if (r1 > t->W->rows) r1 = t->W->rows;
    if (t->n == 1)
        lode_matvec_rows(t->W->type, t->W->data, t->W->cols, t->X, t->Y, r0, r1);
    else
        lode_matmul_rows(t->W->type, t->W->data, t->W->cols, t->X, t->ldx, t->n, t->Y, t->ldy, r0, r1);
}

void lode__matmul(lode_model *m, const lode_mat *W, const float *X, int64_t ldx, int64_t n, float *Y,
                  int64_t ldy) {
    if (n <= 0 || W->rows <= 0) return;
    int nt = lode_pool_size(m->pool);
    /* Enough chunks to balance, each at least 16 rows (and a multiple of 16
     * so tiles stay aligned). */
    int64_t chunk = (W->rows + (int64_t)nt * 4 - 1) / ((int64_t)nt * 4);
    if (chunk < 16) chunk = 16;
    chunk = (chunk + 15) & ~(int64_t)15;
    mm_task t = {W, X, ldx, n, Y, ldy, chunk};
    int64_t n_chunks = (W->rows + chunk - 1) / chunk;
    lode__parallel(m, n_chunks, mm_chunk, &t);
}

void lode__matmul_t(lode_model *m, const lode_mat *W, const float *X, int64_t ldx, int64_t n, float *Y,
                    int64_t ldy) {
    (void)m;
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

void lode__swiglu(lode_model *m, const lode_mat *gate, const lode_mat *up, const lode_mat *down,
                  const float *X, int64_t n, float *Y) {
    const int64_t I = gate->rows, H = gate->cols;
    lode_ws_mark mark = lode__ws_mark(m);
    float *g = lode__ws_alloc(m, (size_t)(n * I));
    float *u = lode__ws_alloc(m, (size_t)(n * I));
    lode__matmul(m, gate, X, H, n, g, I);
    lode__matmul(m, up, X, H, n, u, I);
    for (int64_t i = 0; i < n * I; i++) g[i] = lode__silu(g[i]) * u[i];
    lode__matmul(m, down, g, I, n, Y, down->rows);
    lode__ws_release(m, mark);
}
