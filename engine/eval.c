/*
 * eval.c — architecture-independent evaluation: validate the batch, reserve
 * KV cells (all-or-nothing, so a failed call leaves the cache untouched),
 * embed, run the architecture's layers, then the final norm and output head
 * for the tokens whose logits are wanted.
 */
#include <string.h>

#include "lode_cuda.h"
#include "model_impl.h"

bool lode__kv_seq_reserve(lode_kv *kv, int32_t s, int64_t need);
bool lode__kv_seq_valid(const lode_kv *kv, int32_t s);
int32_t lode__kv_append(lode_kv *kv, int32_t s);

typedef struct {
    lode_model *m;
    const int32_t *tokens;
    float *x;
} embed_task;

static void embed_one(void *ctx, int64_t i) {
    embed_task *t = ctx;
    const lode_mat *E = &t->m->tok_embd;
    lode_type_get(E->type)->to_f32((const char *)E->data + (size_t)t->tokens[i] * E->row_bytes,
                                   t->x + i * E->cols, E->cols);
}

typedef struct {
    lode_model *m;
    const float *x;
    const int64_t *rows;
    float *xn;
} norm_task;

static void final_norm_one(void *ctx, int64_t i) {
    norm_task *t = ctx;
    const int64_t H = t->m->cfg.n_embd;
    lode__rmsnorm(t->xn + i * H, t->x + t->rows[i] * H, t->m->output_norm, H, t->m->cfg.rms_eps);
}

lode_status lode_model_eval(lode_model *m, lode_kv *kv, const lode_batch *b, float *logits_out, lode_error *err) {
    const lode_config *c = &m->cfg;
    const int64_t n = b->n, H = c->n_embd;
    if (n <= 0) return LODE_OK;
    if (kv->model != m) return lode_error_set(err, LODE_ERR_INVALID_ARG, "KV cache belongs to another model");
    for (int64_t i = 0; i < n; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= c->n_vocab)
            return lode_error_set(err, LODE_ERR_RANGE, "token id %d at batch index %lld is outside the vocabulary (0..%lld)",
                                  b->tokens[i], (long long)i, (long long)c->n_vocab - 1);
        int32_t s = b->seq ? b->seq[i] : b->seq0;
        if (!lode__kv_seq_valid(kv, s))
            return lode_error_set(err, LODE_ERR_INVALID_ARG, "sequence %d at batch index %lld does not exist", s,
                                  (long long)i);
    }
    if (kv->n_free < n)
        return lode_error_set(err, LODE_ERR_FULL, "KV cache full: %lld tokens need cells, %lld free of %lld",
                              (long long)n, (long long)kv->n_free, (long long)kv->n_cells);
    lode__ws_reset(m);
    /* Plan: sequences, positions, cells. */
    lode_eval_plan p = {0};
    p.n = n;
    p.tokens = b->tokens;
    int64_t *ibuf = lode_try_malloc((size_t)n * (3 * sizeof(int64_t) + 2 * sizeof(int32_t)) + 64);
    int64_t *saved_len = lode_try_malloc((size_t)n * sizeof(int64_t));
    if (!ibuf || !saved_len) {
        lode_free(ibuf);
        lode_free(saved_len);
        return lode_error_set(err, LODE_ERR_NOMEM, "out of memory planning a batch of %lld tokens", (long long)n);
    }
    p.pos = ibuf;
    p.group_first = ibuf + n;
    p.group_tok = ibuf + 2 * n;
    p.seq = (int32_t *)(ibuf + 3 * n);
    p.cell = p.seq + n;
    int64_t *group_count = lode_xcalloc((size_t)n, sizeof(int64_t));
    int32_t *group_seq = lode_xmalloc((size_t)n * sizeof(int32_t));
    p.group_seq = group_seq;
    p.group_count = group_count;
    lode_status st = LODE_OK;
    /* Groups in order of first appearance. */
    for (int64_t i = 0; i < n; i++) {
        int32_t s = b->seq ? b->seq[i] : b->seq0;
        p.seq[i] = s;
        int64_t g;
        for (g = 0; g < p.n_groups; g++)
            if (group_seq[g] == s) break;
        if (g == p.n_groups) {
            group_seq[g] = s;
            saved_len[g] = lode_kv_seq_len(kv, s);
            p.n_groups++;
        }
        group_count[g]++;
    }
    for (int64_t g = 0, off = 0; g < p.n_groups; g++) {
        p.group_first[g] = off;
        off += group_count[g];
        if (!lode__kv_seq_reserve(kv, group_seq[g], saved_len[g] + group_count[g])) {
            st = lode_error_set(err, LODE_ERR_NOMEM, "out of memory extending sequence %d", group_seq[g]);
            goto out;
        }
    }
    {
        int64_t *fill = lode_xcalloc((size_t)p.n_groups, sizeof(int64_t));
        for (int64_t i = 0; i < n; i++) {
            int64_t g;
            for (g = 0; g < p.n_groups; g++)
                if (group_seq[g] == p.seq[i]) break;
            p.group_tok[p.group_first[g] + fill[g]++] = i;
            p.pos[i] = lode_kv_seq_len(kv, p.seq[i]);
            p.cell[i] = lode__kv_append(kv, p.seq[i]);
        }
        lode_free(fill);
    }
    /* Embeddings. */
    size_t need = (size_t)n * (size_t)H;
    if ((st = lode__ws_reserve(m, need * 8 + 4096, err))) goto rollback;
    float *x = lode__ws_alloc(m, need);
    embed_task et = {m, b->tokens, x};
    lode__parallel(m, n, embed_one, &et);
    if (m->cuda) { /* device backend: layers + head there (kernels/) */
        st = lode_cuda_eval(m, kv, &p, x, b->want_logits, logits_out, err);
        if (st) goto rollback;
        goto out;
    }
    st = c->arch == LODE_ARCH_DEEPSEEK2 ? lode__deepseek2_layers(m, kv, &p, x, err) : lode__llama_layers(m, kv, &p, x, err);
    if (st) goto rollback;
    /* Output head for the wanted rows. */
    {
        int64_t n_out = 0;
        int64_t *rows = (int64_t *)lode__ws_alloc(m, (size_t)n * 2);
        for (int64_t i = 0; i < n; i++)
            if (!b->want_logits || b->want_logits[i]) rows[n_out++] = i;
        if (n_out > 0) {
            float *xn = lode__ws_alloc(m, (size_t)n_out * (size_t)H);
            norm_task nt = {m, x, rows, xn};
            lode__parallel(m, n_out, final_norm_one, &nt);
            lode__matmul(m, &m->output, xn, H, n_out, logits_out, c->n_vocab);
        }
    }
    goto out;
rollback:
    for (int64_t g = 0; g < p.n_groups; g++) lode_kv_seq_truncate(kv, group_seq[g], saved_len[g]);
out:
    lode_free(ibuf);
    lode_free(saved_len);
    lode_free(group_count);
    lode_free(group_seq);
    return st;
}
