/*
 * syntax_walk.c — the table-driven extractor the index uses instead of the
 * query cursor (lode__walk_query / lode__walk_run, syntax_impl.h).
 *
 * Why: Debian's libtree-sitter 0.20.7 query cursor costs about 2.5x a bare
 * TSTreeCursor walk of the same tree (per-node status bookkeeping for every
 * pattern), and compiling a language's tags+imports query costs more than
 * parsing a dozen files. The walker reads the same .scm text itself, keeps
 * the patterns that can produce a definition or an import, indexes them by
 * their root node's TSSymbol, walks the tree once with a TSTreeCursor and
 * matches each candidate node by backtracking over its children.
 *
 * Semantics follow 0.20.7's query cursor (lib/src/query.c,
 * ts_query_cursor__advance), for the subset of the query language the
 * shipped and lode's tags/imports files use:
 *   - (type ...) matches that symbol (public symbol, as ts_node_symbol);
 *     (_) any named node but ERROR; _ any node but ERROR; "text" an
 *     anonymous node;
 *   - children match distinct visible children in order, any in between
 *     skipped; every way of matching is produced (duplicates are harmless:
 *     extraction sorts and de-duplicates);
 *   - field: (the child's field, ts_tree_cursor_current_field_id), !field
 *     (no child in that field);
 *   - '.' before a child: it must be the next named child (anonymous ones
 *     are skipped, comments are named); '.' before ')': no named sibling
 *     after it;
 *   - [a b] alternation (field and anchors apply to every branch);
 *   - captures, and #eq?/#match?/#any-of? (and not-/any- forms) through the
 *     same predicate code as the query path;
 *   - a top-level group "((comment)* @doc . X)" is read as X: the query
 *     compiler gives X its own rooted entry, and the doc captures do not
 *     change a definition.
 * Anything else (quantifiers inside a pattern, groups of several required
 * siblings, ...) makes lode__walk_query fail, and that language keeps the
 * query cursor. tests/unit/test_syntax.c compares both extractors.
 *
 * Threading: a walker query is immutable after construction; lode__walk_run
 * keeps its state on the stack and in per-call buffers.
 */
#include <stdlib.h>
#include <string.h>

#include "syntax_impl.h"

/* ---- patterns ------------------------------------------------------------------ */
enum { PN_NODE, PN_ALT, PN_GROUP };
enum { MAX_CAPS_PER_ITEM = 4, MAX_NEG = 4, MAX_MATCH_CAPS = 32 };
#define LODE_TS_SYM_ERROR ((TSSymbol)-1) /* ts_builtin_sym_error (lib/src/subtree.h, not in api.h) */

typedef struct pnode pnode;
struct pnode {
    uint8_t kind;
    bool wildcard;  /* (_) or _ */
    bool named;     /* (x) / (_): named; "x" / _: any */
    bool immediate; /* '.' before it */
    bool last;      /* '.' after it, before ')' */
    char quant;     /* 0, '?', '*', '+' */
    TSSymbol sym;
    TSFieldId field;
    uint8_t ncaps, nneg;
    uint16_t caps[MAX_CAPS_PER_ITEM];
    TSFieldId neg[MAX_NEG];
    uint32_t nkids;
    pnode **kids; /* node children, alternation branches or group items */
};

typedef struct wentry {
    const pnode *p;
    uint32_t pat;
} wentry;

struct lode__walk {
    uint32_t n_syms;
    uint32_t *first;  /* n_syms + 1: entries of symbol s are ents[first[s], first[s + 1]) */
    wentry *ents;
    uint32_t n_ents;
    pnode **roots;    /* one per kept pattern (for freeing) */
    uint32_t n_roots;
};

static void pnode_free(pnode *p) {
    if (!p) return;
    for (uint32_t i = 0; i < p->nkids; i++) pnode_free(p->kids[i]);
    lode_free(p->kids);
    lode_free(p);
}

void lode__walk_free(lode__walk *w) {
    if (!w) return;
    for (uint32_t i = 0; i < w->n_roots; i++) pnode_free(w->roots[i]);
    lode_free(w->roots);
    lode_free(w->first);
    lode_free(w->ents);
    lode_free(w);
}

/* ---- reading the .scm text ------------------------------------------------------ */
typedef struct pstr {
    const char *s;
    uint32_t len;
} pstr;

typedef struct rpred { /* a predicate of the pattern being read */
    pstr name;
    lode__parg args[64];
    char *owned[64]; /* unescaped strings */
    uint32_t nargs;
} rpred;

typedef struct reader {
    const char *s;
    size_t n, i;
    const TSLanguage *ts;
    const char *lang;
    lode_error *err;
    bool bad;
    /* capture names, interned across the whole query */
    pstr *caps;
    uint32_t ncaps, capcap;
    /* predicates of the current top-level pattern */
    rpred *preds;
    uint32_t npreds, predcap;
} reader;

static bool fail(reader *r, const char *why) {
    if (!r->bad) {
        r->bad = true;
        lode_error_set(r->err, LODE_ERR_UNSUPPORTED, "%s walker: %s at byte %zu", r->lang, why, r->i);
    }
    return false;
}

static void skip_ws(reader *r) {
    while (r->i < r->n) {
        char c = r->s[r->i];
        if (c == ';') {
            while (r->i < r->n && r->s[r->i] != '\n') r->i++;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            r->i++;
        } else {
            break;
        }
    }
}

static int peek(reader *r) { return r->i < r->n ? (unsigned char)r->s[r->i] : -1; }

static bool ident_char(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.' || c == '?' || c == '!';
}

/* An identifier: node, field, capture or predicate name. Node and field
 * names never contain '.', '?' or '!' (so "x." is "x" then an anchor). */
static pstr read_ident(reader *r, bool wide) {
    size_t b = r->i;
    while (r->i < r->n) {
        int c = (unsigned char)r->s[r->i];
        if (!ident_char(c) || (!wide && (c == '.' || c == '?' || c == '!'))) break;
        r->i++;
    }
    return (pstr){r->s + b, (uint32_t)(r->i - b)};
}

/* A "string" with \" \\ \n \t \r escapes; returns an owned copy. */
static char *read_string(reader *r, uint32_t *len) {
    r->i++; /* '"' */
    char *out = lode_xmalloc(r->n - r->i + 1);
    uint32_t k = 0;
    while (r->i < r->n && r->s[r->i] != '"') {
        char c = r->s[r->i++];
        if (c == '\\' && r->i < r->n) {
            char e = r->s[r->i++];
            c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == '0' ? '\0' : e;
        }
        out[k++] = c;
    }
    if (r->i >= r->n) {
        lode_free(out);
        fail(r, "unterminated string");
        return NULL;
    }
    r->i++;
    out[k] = 0;
    *len = k;
    return out;
}

static uint16_t intern_cap(reader *r, pstr name) {
    for (uint32_t i = 0; i < r->ncaps; i++)
        if (r->caps[i].len == name.len && memcmp(r->caps[i].s, name.s, name.len) == 0) return (uint16_t)i;
    if (r->ncaps == r->capcap) {
        r->capcap = r->capcap ? r->capcap * 2 : 32;
        r->caps = lode_xrealloc(r->caps, r->capcap * sizeof *r->caps);
    }
    r->caps[r->ncaps] = name;
    return (uint16_t)r->ncaps++;
}

static pnode *pnode_new(uint8_t kind) {
    pnode *p = lode_xcalloc(1, sizeof *p);
    p->kind = kind;
    return p;
}

static void add_kid(pnode *p, pnode *k) {
    p->kids = lode_xrealloc(p->kids, (p->nkids + 1) * sizeof *p->kids);
    p->kids[p->nkids++] = k;
}

static pnode *read_item(reader *r);

/* (#name? args...): r->i at '#'. */
static bool read_pred(reader *r) {
    r->i++;
    pstr name = read_ident(r, true);
    if (!name.len) return fail(r, "predicate name");
    if (r->npreds == r->predcap) {
        r->predcap = r->predcap ? r->predcap * 2 : 4;
        r->preds = lode_xrealloc(r->preds, r->predcap * sizeof *r->preds);
    }
    rpred *p = &r->preds[r->npreds++];
    memset(p, 0, sizeof *p);
    p->name = name;
    for (;;) {
        skip_ws(r);
        int c = peek(r);
        if (c == ')') break;
        if (p->nargs == 64) return fail(r, "too many predicate arguments");
        lode__parg *a = &p->args[p->nargs];
        if (c == '@') {
            r->i++;
            pstr cn = read_ident(r, true);
            if (!cn.len) return fail(r, "capture name");
            a->is_cap = true;
            a->cap = intern_cap(r, cn);
        } else if (c == '"') {
            uint32_t sl = 0;
            char *s = read_string(r, &sl);
            if (!s) return false;
            p->owned[p->nargs] = s;
            a->str = s, a->len = sl;
        } else if (ident_char(c)) {
            pstr id = read_ident(r, true);
            a->str = id.s, a->len = id.len;
        } else {
            return fail(r, "predicate argument");
        }
        p->nargs++;
    }
    r->i++; /* ')' */
    return true;
}

/* Children of a node or items of a group, up to ')' (consumed). */
static bool read_children(reader *r, pnode *p, bool is_node) {
    bool pending_anchor = false;
    for (;;) {
        skip_ws(r);
        int c = peek(r);
        if (c < 0) return fail(r, "unterminated pattern");
        if (c == ')') {
            r->i++;
            if (pending_anchor) {
                if (!p->nkids) return fail(r, "anchor without a child");
                p->kids[p->nkids - 1]->last = true;
            }
            return true;
        }
        if (c == '.') {
            r->i++;
            pending_anchor = true;
            continue;
        }
        if (c == '!') {
            r->i++;
            pstr f = read_ident(r, false);
            TSFieldId fid = ts_language_field_id_for_name(r->ts, f.s, f.len);
            if (!fid || !is_node || p->nneg == MAX_NEG) return fail(r, "negated field");
            p->neg[p->nneg++] = fid;
            continue;
        }
        if (c == '(') {
            size_t save = r->i;
            r->i++;
            skip_ws(r);
            if (peek(r) == '#') {
                if (!read_pred(r)) return false;
                continue;
            }
            r->i = save;
        }
        TSFieldId field = 0;
        if (ident_char(c) && c != '_') {
            size_t save = r->i;
            pstr f = read_ident(r, false);
            skip_ws(r);
            if (peek(r) == ':' && f.len) {
                r->i++;
                field = ts_language_field_id_for_name(r->ts, f.s, f.len);
                if (!field) return fail(r, "unknown field");
                if (!is_node) return fail(r, "field in a group");
            } else {
                r->i = save;
                return fail(r, "unexpected identifier");
            }
        }
        pnode *k = read_item(r);
        if (!k) return false;
        k->field = field;
        k->immediate = pending_anchor;
        pending_anchor = false;
        add_kid(p, k);
    }
}

static pnode *read_item(reader *r) {
    skip_ws(r);
    int c = peek(r);
    pnode *p = NULL;
    if (c == '(') {
        r->i++;
        skip_ws(r);
        int d = peek(r);
        if (d == '(' || d == '[' || d == '"' || d == '.') {
            p = pnode_new(PN_GROUP);
            if (!read_children(r, p, false)) goto bad;
        } else {
            pstr name = read_ident(r, false);
            if (!name.len) {
                fail(r, "node name");
                return NULL;
            }
            p = pnode_new(PN_NODE);
            p->named = true;
            if (name.len == 1 && name.s[0] == '_') {
                p->wildcard = true;
            } else if (name.len == 5 && memcmp(name.s, "ERROR", 5) == 0) {
                p->sym = LODE_TS_SYM_ERROR;
            } else {
                p->sym = ts_language_symbol_for_name(r->ts, name.s, name.len, true);
                if (!p->sym) {
                    fail(r, "unknown node type");
                    goto bad;
                }
            }
            if (!read_children(r, p, true)) goto bad;
        }
    } else if (c == '[') {
        r->i++;
        p = pnode_new(PN_ALT);
        for (;;) {
            skip_ws(r);
            if (peek(r) == ']') {
                r->i++;
                break;
            }
            if (peek(r) < 0) {
                fail(r, "unterminated alternation");
                goto bad;
            }
            pnode *k = read_item(r);
            if (!k) goto bad;
            add_kid(p, k);
        }
        if (!p->nkids) {
            fail(r, "empty alternation");
            goto bad;
        }
    } else if (c == '"') {
        uint32_t sl = 0;
        char *s = read_string(r, &sl);
        if (!s) return NULL;
        p = pnode_new(PN_NODE);
        p->sym = ts_language_symbol_for_name(r->ts, s, sl, false);
        lode_free(s);
        if (!p->sym) {
            fail(r, "unknown anonymous node");
            goto bad;
        }
    } else if (c == '_') {
        r->i++;
        p = pnode_new(PN_NODE);
        p->wildcard = true;
    } else {
        fail(r, "unexpected character");
        return NULL;
    }
    /* suffixes: quantifier, captures */
    for (;;) {
        skip_ws(r);
        int e = peek(r);
        if (e == '*' || e == '+' || e == '?') {
            if (p->quant) {
                fail(r, "two quantifiers");
                goto bad;
            }
            p->quant = (char)e;
            r->i++;
        } else if (e == '@') {
            r->i++;
            pstr cn = read_ident(r, true);
            if (!cn.len || p->ncaps == MAX_CAPS_PER_ITEM) {
                fail(r, "capture");
                goto bad;
            }
            p->caps[p->ncaps++] = intern_cap(r, cn);
        } else {
            break;
        }
    }
    /* A group of one item, "([a b])", is that item. */
    if (p->kind == PN_GROUP && p->nkids == 1 && !p->quant && !p->kids[0]->quant &&
        p->kids[0]->ncaps + p->ncaps <= MAX_CAPS_PER_ITEM) {
        pnode *k = p->kids[0];
        for (uint8_t ci = 0; ci < p->ncaps; ci++) k->caps[k->ncaps++] = p->caps[ci];
        lode_free(p->kids);
        lode_free(p);
        p = k;
    }
    return p;
bad:
    pnode_free(p);
    return NULL;
}

/* ---- normalising a top-level pattern -------------------------------------------------- */
/* The roles a pattern can capture (bit 1 << role class). */
enum { HAS_DEF = 1, HAS_NAME = 2, HAS_IMPORT = 4, HAS_MODULE = 8 };

static unsigned roles_of(const reader *r, const pnode *p) {
    unsigned m = 0;
    for (uint8_t i = 0; i < p->ncaps; i++) {
        uint8_t ro = lode__cap_role(r->caps[p->caps[i]].s, r->caps[p->caps[i]].len);
        if (ro >= CR_DEF) m |= HAS_DEF;
        else if (ro == CR_NAME) m |= HAS_NAME;
        else if (ro == CR_IMPORT) m |= HAS_IMPORT;
        else if (ro == CR_MODULE) m |= HAS_MODULE;
    }
    for (uint32_t i = 0; i < p->nkids; i++) m |= roles_of(r, p->kids[i]);
    return m;
}

/* Whether the walker implements everything under p (p itself not a group). */
static bool supported(const pnode *p) {
    if (p->kind == PN_GROUP || p->quant) return false;
    for (uint32_t i = 0; i < p->nkids; i++)
        if (!supported(p->kids[i])) return false;
    return true;
}

/* Push field/anchor flags of an alternation into its branches (as the
 * query compiler does), recursively. */
static bool spread_alt(pnode *p) {
    for (uint32_t i = 0; i < p->nkids; i++) {
        pnode *k = p->kids[i];
        if (p->kind == PN_ALT) {
            if (p->field) k->field = p->field;
            k->immediate |= p->immediate;
            k->last |= p->last;
            for (uint8_t c = 0; c < p->ncaps; c++) {
                if (k->ncaps == MAX_CAPS_PER_ITEM) return false;
                k->caps[k->ncaps++] = p->caps[c];
            }
        }
        if (!spread_alt(k)) return false;
    }
    if (p->kind == PN_ALT) p->ncaps = 0;
    return true;
}

/* The root entries of a pattern: an alternation at the root gives one per
 * branch (the alternation's captures go along). */
static bool add_roots(lode__walk *w, pnode *p, uint32_t pat, uint32_t *cap_ents) {
    if (p->kind == PN_ALT) {
        for (uint32_t i = 0; i < p->nkids; i++) {
            pnode *k = p->kids[i];
            for (uint8_t c = 0; c < p->ncaps; c++) {
                if (k->ncaps == MAX_CAPS_PER_ITEM) return false;
                k->caps[k->ncaps++] = p->caps[c];
            }
            if (!add_roots(w, k, pat, cap_ents)) return false;
        }
        p->ncaps = 0;
        return true;
    }
    if (p->kind != PN_NODE || p->wildcard) return false;
    if (w->n_ents == *cap_ents) {
        *cap_ents = *cap_ents ? *cap_ents * 2 : 32;
        w->ents = lode_xrealloc(w->ents, *cap_ents * sizeof *w->ents);
    }
    w->ents[w->n_ents++] = (wentry){p, pat};
    return true;
}

static void clear_preds(reader *r) {
    for (uint32_t i = 0; i < r->npreds; i++)
        for (uint32_t k = 0; k < r->preds[i].nargs; k++) lode_free(r->preds[i].owned[k]);
    r->npreds = 0;
}

lode_query *lode__walk_query(const lode_lang *l, const char *src, size_t len, lode_error *err) {
    const TSLanguage *ts = lode_lang_ts(l);
    if (!ts || !src) {
        lode_error_set(err, LODE_ERR_UNSUPPORTED, "walker: no language");
        return NULL;
    }
    reader r = {.s = src, .n = len, .ts = ts, .lang = lode_lang_name(l), .err = err};
    lode__walk *w = lode_xcalloc(1, sizeof *w);
    lode_query *q = lode_xcalloc(1, sizeof *q);
    q->walk = w;
    q->lang = l;
    uint32_t cap_ents = 0, cap_pp = 0;
    for (;;) {
        skip_ws(&r);
        if (r.i >= r.n) break;
        clear_preds(&r);
        pnode *p = read_item(&r);
        if (!p) goto bad;
        /* "((comment)* @doc . X (#pred...))": X, with the group's predicates. */
        if (p->kind == PN_GROUP) {
            pnode *main = NULL;
            uint32_t required = 0;
            for (uint32_t i = 0; i < p->nkids; i++) {
                pnode *k = p->kids[i];
                if (k->quant == '*' || k->quant == '?') {
                    if (roles_of(&r, k)) required = 99; /* an optional item that matters: not handled */
                    continue;
                }
                main = k, required++;
            }
            if (required != 1 || p->ncaps || p->quant) {
                pnode_free(p);
                fail(&r, "group of several siblings");
                goto bad;
            }
            for (uint32_t i = 0; i < p->nkids; i++)
                if (p->kids[i] != main) pnode_free(p->kids[i]);
            lode_free(p->kids);
            lode_free(p);
            p = main;
            p->immediate = p->last = false;
        }
        unsigned m = roles_of(&r, p);
        bool productive = ((m & HAS_DEF) && (m & HAS_NAME)) || ((m & HAS_IMPORT) && (m & HAS_MODULE));
        if (!productive) { /* a reference or highlight pattern: matches nothing extraction keeps */
            pnode_free(p);
            continue;
        }
        if (!supported(p)) {
            pnode_free(p);
            fail(&r, "quantifier or nested group");
            goto bad;
        }
        if (!spread_alt(p)) {
            pnode_free(p);
            fail(&r, "too many captures");
            goto bad;
        }
        uint32_t pat = q->n_patterns;
        if (pat == cap_pp) {
            cap_pp = cap_pp ? cap_pp * 2 : 16;
            q->pp = lode_xrealloc(q->pp, cap_pp * sizeof *q->pp);
        }
        memset(&q->pp[pat], 0, sizeof q->pp[pat]);
        q->n_patterns++;
        w->roots = lode_xrealloc(w->roots, (w->n_roots + 1) * sizeof *w->roots);
        w->roots[w->n_roots++] = p;
        if (!add_roots(w, p, pat, &cap_ents)) {
            fail(&r, "wildcard root");
            goto bad;
        }
        for (uint32_t i = 0; i < r.npreds; i++)
            if (lode__pred_add(q, pat, r.preds[i].name.s, r.preds[i].name.len, r.preds[i].args, r.preds[i].nargs, err) !=
                LODE_OK)
                goto bad;
    }
    clear_preds(&r);
    /* capture roles */
    q->n_caps = r.ncaps;
    q->role = lode_xcalloc(r.ncaps ? r.ncaps : 1, 1);
    for (uint32_t i = 0; i < r.ncaps; i++) q->role[i] = lode__cap_role(r.caps[i].s, r.caps[i].len);
    /* entries by root symbol (counting sort; order within a symbol: pattern order) */
    w->n_syms = ts_language_symbol_count(ts);
    w->first = lode_xcalloc(w->n_syms + 2, sizeof *w->first);
    for (uint32_t i = 0; i < w->n_ents; i++) {
        TSSymbol s = w->ents[i].p->sym;
        if (s >= w->n_syms) { /* ERROR at the root */
            fail(&r, "ERROR root");
            goto bad;
        }
        w->first[s + 1]++;
    }
    for (uint32_t s = 0; s < w->n_syms; s++) w->first[s + 1] += w->first[s];
    wentry *sorted = lode_xmalloc((w->n_ents ? w->n_ents : 1) * sizeof *sorted);
    uint32_t *fill = lode_xcalloc(w->n_syms + 1, sizeof *fill);
    for (uint32_t i = 0; i < w->n_ents; i++) {
        TSSymbol s = w->ents[i].p->sym;
        sorted[w->first[s] + fill[s]++] = w->ents[i];
    }
    lode_free(fill);
    lode_free(w->ents);
    w->ents = sorted;
    lode_free(r.caps);
    lode_free(r.preds);
    return q;
bad:
    clear_preds(&r);
    lode_free(r.caps);
    lode_free(r.preds);
    lode_query_free(q);
    return NULL;
}

/* ---- matching ---------------------------------------------------------------------- */
typedef struct kid {
    TSNode node;
    TSSymbol sym;
    TSFieldId field;
    bool named, later_named;
} kid;

typedef struct mctx {
    const lode_query *q;
    const char *src;
    size_t len;
    pcre2_match_data *md;
    lode_match_fn fn;
    void *ud;
    bool stop;
    uint32_t pat;
    TSQueryCapture caps[MAX_MATCH_CAPS];
    uint16_t ncaps;
    TSTreeCursor cur; /* for listing children */
    kid *kids;        /* a stack of children lists (indices, since it grows) */
    uint32_t nkids, capkids;
} mctx;

/* What to do after an item matched: continue with the next child item of
 * an enclosing node pattern, or report the match. */
typedef struct cont {
    const pnode *p;   /* the enclosing node pattern; NULL: the pattern is complete */
    uint32_t off, n;  /* its children list in m->kids */
    uint32_t ci, j;   /* next child item, next child position */
    const struct cont *up;
} cont;

static void m_item(mctx *m, const pnode *p, TSNode node, const cont *k);

static void m_kids(mctx *m, const cont *k);

static void m_done(mctx *m, const cont *k) {
    if (m->stop) return;
    if (k->p) {
        m_kids(m, k);
        return;
    }
    TSQueryMatch qm = {.id = 0, .pattern_index = (uint16_t)m->pat, .capture_count = m->ncaps, .captures = m->caps};
    if (!lode__preds_pass(m->q, &qm, m->src, m->len, m->md)) return;
    if (!m->fn(m->ud, m->q, &qm)) m->stop = true;
}

/* Whether child c passes item p's own tests (not its children). */
static bool k_test(const pnode *p, const kid *c) {
    if (p->wildcard) {
        if (c->sym == LODE_TS_SYM_ERROR || (p->named && !c->named)) return false;
    } else if (c->sym != p->sym) {
        return false;
    }
    if (p->field && c->field != p->field) return false;
    if (p->last && c->later_named) return false;
    return true;
}

/* Match item k->p->kids[k->ci] against children [k->j, n) of the list. */
static void m_kids(mctx *m, const cont *k) {
    if (k->ci == k->p->nkids) {
        m_done(m, k->up);
        return;
    }
    const pnode *it = k->p->kids[k->ci];
    for (uint32_t t = k->j; t < k->n && !m->stop; t++) {
        kid c = m->kids[k->off + t]; /* by value: the list may move */
        cont next = {k->p, k->off, k->n, k->ci + 1, t + 1, k->up};
        if (it->kind == PN_ALT) {
            for (uint32_t b = 0; b < it->nkids && !m->stop; b++)
                if (k_test(it->kids[b], &c)) m_item(m, it->kids[b], c.node, &next);
        } else if (k_test(it, &c)) {
            m_item(m, it, c.node, &next);
        }
        if (it->immediate && c.named) break; /* the next named child had to match */
    }
}

/* Node `node` passed p's own symbol/field tests: negated fields, captures,
 * children. */
static void m_item(mctx *m, const pnode *p, TSNode node, const cont *k) {
    for (uint8_t i = 0; i < p->nneg; i++)
        if (!ts_node_is_null(ts_node_child_by_field_id(node, p->neg[i]))) return;
    uint16_t saved = m->ncaps;
    if (m->ncaps + p->ncaps > MAX_MATCH_CAPS) return;
    for (uint8_t i = 0; i < p->ncaps; i++) m->caps[m->ncaps++] = (TSQueryCapture){node, p->caps[i]};
    if (!p->nkids) {
        m_done(m, k);
    } else {
        uint32_t off = m->nkids, n = 0;
        ts_tree_cursor_reset(&m->cur, node);
        if (ts_tree_cursor_goto_first_child(&m->cur)) {
            do {
                if (m->nkids == m->capkids) {
                    m->capkids = m->capkids ? m->capkids * 2 : 256;
                    m->kids = lode_xrealloc(m->kids, m->capkids * sizeof *m->kids);
                }
                TSNode c = ts_tree_cursor_current_node(&m->cur);
                kid *kd = &m->kids[m->nkids++];
                kd->node = c;
                kd->sym = ts_node_symbol(c);
                kd->field = ts_tree_cursor_current_field_id(&m->cur);
                kd->named = ts_node_is_named(c);
                n++;
            } while (ts_tree_cursor_goto_next_sibling(&m->cur));
        }
        bool later = false;
        for (uint32_t t = n; t-- > 0;) {
            m->kids[off + t].later_named = later;
            later |= m->kids[off + t].named;
        }
        cont here = {p, off, n, 0, 0, k};
        m_kids(m, &here);
        m->nkids = off;
    }
    m->ncaps = saved;
}

void lode__walk_run(const lode_query *q, TSNode root, const char *src, size_t len, pcre2_match_data *md,
                    lode_match_fn fn, void *ud) {
    const lode__walk *w = q ? q->walk : NULL;
    if (!w || !fn || ts_node_is_null(root)) return;
    mctx m = {.q = q, .src = src, .len = len, .md = md, .fn = fn, .ud = ud};
    m.cur = ts_tree_cursor_new(root);
    TSTreeCursor c = ts_tree_cursor_new(root);
    const cont top = {0};
    for (;;) {
        TSNode nd = ts_tree_cursor_current_node(&c);
        TSSymbol s = ts_node_symbol(nd);
        if (s < w->n_syms) {
            for (uint32_t e = w->first[s]; e < w->first[s + 1] && !m.stop; e++) {
                m.pat = w->ents[e].pat;
                m.ncaps = 0;
                m_item(&m, w->ents[e].p, nd, &top);
            }
        }
        if (m.stop) break;
        if (ts_tree_cursor_goto_first_child(&c)) continue;
        while (!ts_tree_cursor_goto_next_sibling(&c)) {
            if (!ts_tree_cursor_goto_parent(&c)) goto done;
        }
    }
done:
    ts_tree_cursor_delete(&c);
    ts_tree_cursor_delete(&m.cur);
    lode_free(m.kids);
}
