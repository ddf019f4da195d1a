/*
 * kv_cache.c — the latent KV cache: a pool of token cells plus sequences.
 *
 * Each cell holds one row per layer: for MLA the normalized latent c_kv and
 * the roped k_pe ([kv_lora_rank ‖ qk_rope_dim], 576 floats for Lite); for
 * llama the roped K and V of every KV head. A sequence is an ordered list of
 * cell ids (position i = i-th cell). Cells are written once, when their token
 * is evaluated, and never modified afterwards, so sequences may share cells:
 * lode_kv_seq_fork copies the id list and bumps reference counts, and a
 * truncation (rollback) only drops references. A cell returns to the free
 * list when its last reference goes.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "lode_cuda.h"
#include "model_impl.h"

/* Transparent huge pages for the cache's 2 MiB-aligned interior (THP in
 * "madvise" mode, Debian's default, gives anonymous memory 4 KiB pages
 * otherwise): decode streams every layer's rows once per token, and with 4
 * KiB pages the hardware prefetchers stop at every page (measured: the MLA
 * decode attention at depth 4K, 1 thread, 41 -> 37 ms per token). */
static void kv_hint_huge(void *p, size_t bytes) {
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20, a = ((uintptr_t)p + huge - 1) & ~(huge - 1),
                    e = ((uintptr_t)p + bytes) & ~(huge - 1);
    if (e > a) (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p, (void)bytes;
#endif
}

lode_status lode_kv_new(const lode_model *m, int64_t n_cells, lode_kv **out, lode_error *err) {
    *out = NULL;
    if (n_cells <= 0 || n_cells > ((int64_t)1 << 30))
        return lode_error_set(err, LODE_ERR_INVALID_ARG, "KV cache size %lld cells is invalid", (long long)n_cells);
    lode_kv *kv = lode_xcalloc(1, sizeof *kv);
    kv->model = m;
    kv->n_layer = m->cfg.n_layer;
    kv->width = lode_model_kv_width(m);
    kv->n_cells = n_cells;
    size_t n, bytes;
    if (!lode_mul_ok((size_t)kv->n_layer * (size_t)kv->width, (size_t)n_cells, &n) ||
        !lode_mul_ok(n, sizeof(float), &bytes) || !(kv->data = lode_try_malloc(bytes)) ||
        !(kv->refcnt = lode_try_calloc((size_t)n_cells, sizeof(int32_t))) ||
        !(kv->free_list = lode_try_malloc((size_t)n_cells * sizeof(int32_t)))) {
        lode_kv_free(kv);
        return lode_error_set(err, LODE_ERR_NOMEM,
                              "cannot allocate a KV cache of %lld tokens (%.1f MiB); lower the context size",
                              (long long)n_cells, (double)n_cells * (double)kv->n_layer * (double)kv->width * 4.0 / 1048576.0);
    }
    kv_hint_huge(kv->data, bytes);
    /* Pop order 0, 1, 2 ... (stack top = lowest id) for cache-friendly rows. */
    for (int64_t i = 0; i < n_cells; i++) kv->free_list[i] = (int32_t)(n_cells - 1 - i);
    kv->n_free = n_cells;
    *out = kv;
    return LODE_OK;
}

void lode_kv_free(lode_kv *kv) {
    if (!kv) return;
    lode_cuda_kv_free(kv->cuda);
    for (int32_t i = 0; i < kv->n_seqs; i++) lode_free(kv->seqs[i].cells);
    lode_free(kv->seqs);
    lode_free(kv->data);
    lode_free(kv->refcnt);
    lode_free(kv->free_list);
    lode_free(kv);
}

int64_t lode_kv_n_cells(const lode_kv *kv) { return kv->n_cells; }
int64_t lode_kv_n_free(const lode_kv *kv) { return kv->n_free; }
uint64_t lode_kv_bytes(const lode_kv *kv) {
    return (uint64_t)kv->n_layer * (uint64_t)kv->width * (uint64_t)kv->n_cells * sizeof(float);
}

static int32_t seq_slot(lode_kv *kv) {
    for (int32_t i = 0; i < kv->n_seqs; i++)
        if (!kv->seqs[i].used) return i;
    if (kv->n_seqs == kv->cap_seqs) {
        if (kv->cap_seqs >= (1 << 20)) return -1;
        kv->cap_seqs = kv->cap_seqs ? kv->cap_seqs * 2 : 16;
        kv->seqs = lode_xrealloc(kv->seqs, (size_t)kv->cap_seqs * sizeof *kv->seqs);
    }
    memset(&kv->seqs[kv->n_seqs], 0, sizeof kv->seqs[0]);
    return kv->n_seqs++;
}

static bool seq_valid(const lode_kv *kv, int32_t s) { return s >= 0 && s < kv->n_seqs && kv->seqs[s].used; }

int32_t lode_kv_seq_new(lode_kv *kv) {
    int32_t s = seq_slot(kv);
    if (s < 0) return -1;
    kv->seqs[s].used = true;
    kv->seqs[s].len = 0;
    return s;
}

/* Grow a sequence's cell list to hold `need` entries. */
bool lode__kv_seq_reserve(lode_kv *kv, int32_t s, int64_t need);
bool lode__kv_seq_reserve(lode_kv *kv, int32_t s, int64_t need) {
    struct lode_kv_seq *q = &kv->seqs[s];
    if (q->cap >= need) return true;
    int64_t cap = q->cap ? q->cap : 64;
    while (cap < need) cap *= 2;
    int32_t *c = lode_try_realloc(q->cells, (size_t)cap * sizeof(int32_t));
    if (!c) return false;
    q->cells = c;
    q->cap = cap;
    return true;
}

int32_t lode_kv_seq_fork(lode_kv *kv, int32_t src, int64_t n_pos) {
    if (!seq_valid(kv, src)) return -1;
    if (n_pos > kv->seqs[src].len) n_pos = kv->seqs[src].len;
    if (n_pos < 0) n_pos = 0;
    int32_t s = seq_slot(kv); /* may move kv->seqs */
    if (s < 0) return -1;
    kv->seqs[s].used = true;
    kv->seqs[s].len = 0;
    if (!lode__kv_seq_reserve(kv, s, n_pos > 0 ? n_pos : 1)) {
        kv->seqs[s].used = false;
        return -1;
    }
    for (int64_t i = 0; i < n_pos; i++) {
        int32_t c = kv->seqs[src].cells[i];
        kv->seqs[s].cells[i] = c;
        kv->refcnt[c]++;
    }
    kv->seqs[s].len = n_pos;
    return s;
}

lode_status lode_kv_seq_truncate(lode_kv *kv, int32_t seq, int64_t n_pos) {
    if (!seq_valid(kv, seq)) return LODE_ERR_INVALID_ARG;
    struct lode_kv_seq *q = &kv->seqs[seq];
    if (n_pos < 0) n_pos = 0;
    while (q->len > n_pos) {
        int32_t c = q->cells[--q->len];
        if (--kv->refcnt[c] == 0) kv->free_list[kv->n_free++] = c;
    }
    return LODE_OK;
}

void lode_kv_seq_free(lode_kv *kv, int32_t seq) {
    if (!seq_valid(kv, seq)) return;
    lode_kv_seq_truncate(kv, seq, 0);
    kv->seqs[seq].used = false;
}

int64_t lode_kv_seq_len(const lode_kv *kv, int32_t seq) { return seq_valid(kv, seq) ? kv->seqs[seq].len : -1; }

/* Used by eval: validity check and one-cell append (after reservation). */
bool lode__kv_seq_valid(const lode_kv *kv, int32_t s);
bool lode__kv_seq_valid(const lode_kv *kv, int32_t s) { return seq_valid(kv, s); }
int32_t lode__kv_append(lode_kv *kv, int32_t s);
int32_t lode__kv_append(lode_kv *kv, int32_t s) {
    LODE_ASSERT(kv->n_free > 0);
    int32_t c = kv->free_list[--kv->n_free];
    kv->refcnt[c] = 1;
    struct lode_kv_seq *q = &kv->seqs[s];
    LODE_ASSERT(q->len < q->cap);
    q->cells[q->len++] = c;
    return c;
}

lode_status lode_kv_seq_fill_synthetic(lode_kv *kv, int32_t seq, int64_t n, uint64_t seed, lode_error *err) {
    if (!seq_valid(kv, seq) || n < 0)
        return lode_error_set(err, LODE_ERR_INVALID_ARG, "lode_kv_seq_fill_synthetic: bad sequence or count");
    if (kv->cuda)
        return lode_error_set(err, LODE_ERR_UNSUPPORTED, "a synthetic fill needs a CPU KV cache (this one is on the device)");
    if (n > kv->n_free)
        return lode_error_set(err, LODE_ERR_NOMEM, "KV cache full: %lld free cells, %lld asked", (long long)kv->n_free,
                              (long long)n);
    if (!lode__kv_seq_reserve(kv, seq, kv->seqs[seq].len + n))
        return lode_error_set(err, LODE_ERR_NOMEM, "out of memory growing the sequence");
    uint64_t r = seed | 1;
    for (int64_t i = 0; i < n; i++) {
        const int32_t c = lode__kv_append(kv, seq);
        for (int64_t l = 0; l < kv->n_layer; l++) {
            float *row = lode__kv_row(kv, l, c);
            for (int64_t j = 0; j < kv->width; j++) {
                r ^= r << 13, r ^= r >> 7, r ^= r << 17;
                row[j] = (float)(int32_t)(r >> 32) * (1.0f / 2147483648.0f); /* uniform in [-1, 1) */
            }
        }
    }
    return LODE_OK;
}
