/* prefix_cache.c — see prefix_cache.h. */
#include "prefix_cache.h"

#include <string.h>

#include "lode_base.h"

typedef struct pnode {
    int32_t *edge; /* tokens from the parent's end to this node's end */
    int64_t elen, depth;
    int32_t seq;   /* KV sequence holding the `depth` tokens of the path; -1 at the root */
    struct pnode **kids;
    int nkids, capkids;
    struct pnode *parent;
    uint64_t used;
} pnode;

struct lode_pcache {
    lode_kv *kv;
    int64_t budget, tokens, leaves;
    pnode root;
    uint64_t clock;
};

lode_pcache *lode_pcache_new(lode_kv *kv, int64_t budget) {
    lode_pcache *pc = lode_xcalloc(1, sizeof *pc);
    pc->kv = kv;
    pc->budget = budget;
    pc->root.seq = -1;
    return pc;
}

static void free_node(lode_pcache *pc, pnode *n) {
    for (int i = 0; i < n->nkids; i++) {
        free_node(pc, n->kids[i]);
        lode_free(n->kids[i]);
    }
    if (n->seq >= 0) lode_kv_seq_free(pc->kv, n->seq);
    lode_free(n->kids);
    lode_free(n->edge);
}

void lode_pcache_free(lode_pcache *pc) {
    if (!pc) return;
    free_node(pc, &pc->root);
    lode_free(pc);
}

static void add_kid(pnode *p, pnode *k) {
    if (p->nkids == p->capkids) {
        p->capkids = p->capkids ? p->capkids * 2 : 4;
        p->kids = lode_xrealloc(p->kids, (size_t)p->capkids * sizeof(pnode *));
    }
    p->kids[p->nkids++] = k;
    k->parent = p;
}

static pnode *find_kid(pnode *p, int32_t tok) {
    for (int i = 0; i < p->nkids; i++)
        if (p->kids[i]->edge[0] == tok) return p->kids[i];
    return NULL;
}

static int64_t common(const int32_t *a, int64_t na, const int32_t *b, int64_t nb) {
    int64_t k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

static void touch(lode_pcache *pc, pnode *n) {
    uint64_t t = ++pc->clock;
    for (; n; n = n->parent) n->used = t;
}

int32_t lode_pcache_fork(lode_pcache *pc, const int32_t *toks, int64_t n, int64_t limit, int64_t *reused) {
    pnode *node = &pc->root, *best = NULL;
    int64_t pos = 0, best_len = 0;
    while (pos < n) {
        pnode *c = find_kid(node, toks[pos]);
        if (!c) break;
        int64_t k = common(c->edge, c->elen, toks + pos, n - pos);
        best = c;
        best_len = pos + k;
        if (k < c->elen) break;
        node = c;
        pos += k;
    }
    if (best_len > limit) best_len = limit;
    *reused = 0;
    if (!best || best_len <= 0) return lode_kv_seq_new(pc->kv);
    touch(pc, best);
    int32_t s = lode_kv_seq_fork(pc->kv, best->seq, best_len);
    if (s < 0) return lode_kv_seq_new(pc->kv);
    *reused = best_len;
    return s;
}

static pnode *new_node(const int32_t *edge, int64_t elen, int64_t depth, int32_t seq) {
    pnode *n = lode_xcalloc(1, sizeof *n);
    n->edge = lode_xmalloc((size_t)elen * sizeof(int32_t));
    memcpy(n->edge, edge, (size_t)elen * sizeof(int32_t));
    n->elen = elen;
    n->depth = depth;
    n->seq = seq;
    return n;
}

static void evict_one(lode_pcache *pc) {
    /* The least recently used leaf (a node without children). */
    size_t cap = 64, sp = 0;
    pnode **stack = lode_xmalloc(cap * sizeof(pnode *)), *lru = NULL;
    stack[sp++] = &pc->root;
    while (sp) {
        pnode *n = stack[--sp];
        if (!n->nkids && n != &pc->root && (!lru || n->used < lru->used)) lru = n;
        for (int i = 0; i < n->nkids; i++) {
            if (sp == cap) stack = lode_xrealloc(stack, (cap *= 2) * sizeof(pnode *));
            stack[sp++] = n->kids[i];
        }
    }
    lode_free(stack);
    if (!lru) return;
    pnode *p = lru->parent;
    for (int i = 0; i < p->nkids; i++)
        if (p->kids[i] == lru) {
            p->kids[i] = p->kids[--p->nkids];
            break;
        }
    pc->tokens -= lru->elen;
    pc->leaves--;
    if (!p->nkids && p != &pc->root) pc->leaves++; /* the parent became a leaf */
    free_node(pc, lru);
    lode_free(lru);
}

void lode_pcache_insert(lode_pcache *pc, const int32_t *toks, int64_t n, int32_t seq) {
    pnode *node = &pc->root;
    int64_t pos = 0;
    for (;;) {
        if (pos == n) { /* already cached: this node covers the prompt */
            lode_kv_seq_free(pc->kv, seq);
            touch(pc, node);
            break;
        }
        pnode *c = find_kid(node, toks[pos]);
        if (!c) {
            lode_kv_seq_truncate(pc->kv, seq, n);
            pnode *leaf = new_node(toks + pos, n - pos, n, seq);
            if (node->nkids == 0 && node != &pc->root) pc->leaves--; /* node stops being a leaf */
            add_kid(node, leaf);
            pc->tokens += n - pos;
            pc->leaves++;
            touch(pc, leaf);
            break;
        }
        int64_t k = common(c->edge, c->elen, toks + pos, n - pos);
        if (k == c->elen) {
            node = c;
            pos += k;
            continue;
        }
        /* Split c at k: the middle node's KV is a fork of c's (its prefix). */
        int32_t ms = lode_kv_seq_fork(pc->kv, c->seq, node->depth + k);
        if (ms < 0) { /* out of sequence slots: drop the insert */
            lode_kv_seq_free(pc->kv, seq);
            break;
        }
        pnode *mid = new_node(c->edge, k, node->depth + k, ms);
        for (int i = 0; i < node->nkids; i++)
            if (node->kids[i] == c) node->kids[i] = mid;
        mid->parent = node;
        memmove(c->edge, c->edge + k, (size_t)(c->elen - k) * sizeof(int32_t));
        c->elen -= k;
        add_kid(mid, c);
        mid->used = c->used;
        node = mid;
        pos += k;
    }
    while (pc->tokens > pc->budget && pc->leaves > 0) evict_one(pc);
}

bool lode_pcache_make_room(lode_pcache *pc, int64_t cells) {
    while (lode_kv_n_free(pc->kv) < cells && pc->leaves > 0) evict_one(pc);
    return lode_kv_n_free(pc->kv) >= cells;
}

int64_t lode_pcache_tokens(const lode_pcache *pc) { return pc->tokens; }
int64_t lode_pcache_leaves(const lode_pcache *pc) { return pc->leaves; }
