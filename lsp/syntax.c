/*
 * syntax.c — the language registry, parsing, queries with lode-evaluated
 * predicates, and symbol / import / reference extraction (lode_syntax.h).
 * Documents (lode_sdoc) live in syntax_doc.c.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "syntax_impl.h"

#include "ts_grammars.h"

/* ---- embedded queries (build/grammars/queries.c) ---- */

typedef struct lode__embedded_query {
    const char *lang, *name, *text;
    size_t len;
} lode__embedded_query;
extern const lode__embedded_query lode__queries[];
extern const size_t lode__n_queries;

/* ---- registry --------------------------------------------------------------- */
struct lode_lang {
    const char *name;
    const TSLanguage *(*ts)(void);
    const char *exts;     /* space-separated, with the dot; or whole file names */
    const char *ids;      /* LSP languageIds, space-separated */
    const char *comment;  /* line comment prefix */
    const char *wrap;     /* parent node types a definition extends into, space-separated */
};

#define WRAP_C " pointer_declarator reference_declarator parenthesized_declarator attributed_declarator " \
               "function_definition declaration field_declaration template_declaration "
#define WRAP_JS " lexical_declaration variable_declaration export_statement "

static const lode_lang g_langs[] = {
    {"c", tree_sitter_c, " .c .h ", " c ", "//", WRAP_C},
    {"cpp", tree_sitter_cpp, " .cc .cpp .cxx .c++ .hh .hpp .hxx .h++ .ipp .tcc .inl ", " cpp c++ cuda-cpp ", "//", WRAP_C},
    {"python", tree_sitter_python, " .py .pyi .pyw ", " python ", "#", " decorated_definition "},
    {"javascript", tree_sitter_javascript, " .js .mjs .cjs .jsx ", " javascript javascriptreact js jsx ", "//", WRAP_JS},
    {"typescript", tree_sitter_typescript, " .ts .mts .cts ", " typescript ts ", "//", WRAP_JS},
    {"tsx", tree_sitter_tsx, " .tsx ", " typescriptreact tsx ", "//", WRAP_JS},
    {"go", tree_sitter_go, " .go ", " go ", "//", " type_declaration "},
    {"rust", tree_sitter_rust, " .rs ", " rust ", "//", ""},
    {"java", tree_sitter_java, " .java ", " java ", "//", ""},
    {"lua", tree_sitter_lua, " .lua ", " lua ", "--", ""},
    {"bash", tree_sitter_bash, " .sh .bash .zsh .bashrc .bash_profile .profile ", " shellscript bash sh zsh shell ", "#", ""},
    {"json", tree_sitter_json, " .json .jsonc .json5 .code-workspace ", " json jsonc ", NULL, ""},
    {"ruby", tree_sitter_ruby, " .rb .rake .gemspec Rakefile Gemfile ", " ruby ", "#", ""},
};
#define N_LANGS (sizeof g_langs / sizeof g_langs[0])

size_t lode_lang_count(void) { return N_LANGS; }
const lode_lang *lode_lang_at(size_t i) { return i < N_LANGS ? &g_langs[i] : NULL; }
const char *lode_lang_name(const lode_lang *l) { return l ? l->name : NULL; }
const TSLanguage *lode_lang_ts(const lode_lang *l) { return l ? l->ts() : NULL; }
const char *lode_lang_line_comment(const lode_lang *l) { return l ? l->comment : NULL; }

/* Whether `word` appears as a space-delimited token in list (" a b "). */
static bool in_list(const char *list, const char *word, size_t wlen) {
    if (!wlen || wlen > 64) return false;
    for (const char *p = list; (p = strstr(p, " ")) != NULL; p++) {
        if (strncmp(p + 1, word, wlen) == 0 && p[1 + wlen] == ' ') return true;
    }
    return false;
}

const lode_lang *lode_lang_for_path(const char *path) {
    if (!path) return NULL;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t bl = strlen(base);
    for (size_t i = 0; i < N_LANGS; i++)
        if (in_list(g_langs[i].exts, base, bl)) return &g_langs[i];
    const char *dot = strrchr(base, '.');
    if (!dot || dot == base) return NULL;
    char ext[32];
    size_t el = strlen(dot);
    if (el >= sizeof ext) return NULL;
    for (size_t k = 0; k < el; k++) ext[k] = (char)((dot[k] >= 'A' && dot[k] <= 'Z') ? dot[k] + 32 : dot[k]);
    ext[el] = 0;
    /* .H / .C are C++ by convention; everything else case-insensitive. */
    if (strcmp(dot, ".C") == 0 || strcmp(dot, ".H") == 0) return &g_langs[1];
    for (size_t i = 0; i < N_LANGS; i++)
        if (in_list(g_langs[i].exts, ext, el)) return &g_langs[i];
    return NULL;
}

const lode_lang *lode_lang_for_id(const char *id) {
    if (!id) return NULL;
    size_t n = strlen(id);
    for (size_t i = 0; i < N_LANGS; i++)
        if (strcmp(g_langs[i].name, id) == 0 || in_list(g_langs[i].ids, id, n)) return &g_langs[i];
    return NULL;
}

const char *lode_sym_kind_name(lode_sym_kind k) {
    static const char *const names[LODE_SYM_KIND_COUNT] = {"function", "method", "class", "type",
                                                           "macro", "constant", "module", "variable"};
    return (unsigned)k < LODE_SYM_KIND_COUNT ? names[k] : "unknown";
}

/* ---- parsing ----------------------------------------------------------------- */
TSTree *lode_syntax_reparse(const lode_lang *l, const TSTree *old, const char *src, size_t len) {
    if (!l || len > UINT32_MAX) return NULL;
    TSParser *p = ts_parser_new();
    if (!ts_parser_set_language(p, l->ts())) {
        lode_log(LODE_LOG_ERROR, "tree-sitter: the %s grammar has ABI %u, the library accepts %u..%u", l->name,
                 ts_language_version(l->ts()), TREE_SITTER_MIN_COMPATIBLE_LANGUAGE_VERSION,
                 TREE_SITTER_LANGUAGE_VERSION);
        ts_parser_delete(p);
        return NULL;
    }
    TSTree *t = ts_parser_parse_string(p, old, src ? src : "", (uint32_t)len);
    ts_parser_delete(p);
    return t;
}

TSTree *lode_syntax_parse(const lode_lang *l, const char *src, size_t len) {
    return lode_syntax_reparse(l, NULL, src, len);
}

TSPoint lode_syntax_point_at(const char *src, size_t len, size_t off) {
    if (off > len) off = len;
    TSPoint pt = {0, 0};
    const char *p = src, *end = src + off, *line = src;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        pt.row++;
        p = line = nl + 1;
    }
    pt.column = (uint32_t)(end - line);
    return pt;
}

/* ---- queries ------------------------------------------------------------------ */
static int kind_of(const char *cap, uint32_t len, lode_sym_kind *k);

static void pred_free(pred *p) {
    lode_free(p->str);
    if (p->re) pcre2_code_free(p->re);
    for (uint32_t i = 0; i < p->n_set; i++) lode_free(p->set[i]);
    lode_free(p->set);
    lode_free(p->set_len);
}

void lode_query_free(lode_query *q) {
    if (!q) return;
    for (uint32_t i = 0; i < q->n_patterns; i++) {
        for (uint32_t k = 0; k < q->pp[i].n; k++) pred_free(&q->pp[i].p[k]);
        lode_free(q->pp[i].p);
    }
    lode_free(q->pp);
    lode_free(q->role);
    if (q->q) ts_query_delete(q->q);
    lode__walk_free(q->walk);
    lode_free(q);
}

static const char *qstr(const TSQuery *q, uint32_t id, uint32_t *len) {
    return ts_query_string_value_for_id(q, id, len);
}

lode_status lode__pred_add(lode_query *lq, uint32_t pat, const char *name, uint32_t name_len, const lode__parg *a,
                           uint32_t nargs, lode_error *err) {
    pattern_preds *pp = &lq->pp[pat];
    char nbuf[64];
    if (name_len >= sizeof nbuf) return LODE_OK; /* no predicate lode knows has such a name */
    memcpy(nbuf, name, name_len);
    nbuf[name_len] = 0;
    name = nbuf;
    pred p;
    memset(&p, 0, sizeof p);
    p.cap2 = -1;
    const char *base = name;
    if (strncmp(base, "not-", 4) == 0) p.neg = true, base += 4;
    if (strncmp(base, "any-", 4) == 0 && strcmp(base, "any-of?") != 0) p.any = true, base += 4;
    if (strcmp(base, "eq?") == 0) p.op = P_EQ;
    else if (strcmp(base, "match?") == 0 || strcmp(base, "lua-match?") == 0) p.op = P_MATCH;
    else if (strcmp(base, "any-of?") == 0) p.op = P_ANY_OF;
    else return LODE_OK; /* #set!, #strip!, #select-adjacent!, #is?, ... : directives for highlighters; they do
                            not filter matches, so they are ignored. */
    if (nargs < 2 || !a[0].is_cap)
        return lode_error_set(err, LODE_ERR_FORMAT, "query predicate #%s needs a capture and a value", name);
    p.cap = a[0].cap;
    if (p.op == P_EQ) {
        if (nargs != 2) return lode_error_set(err, LODE_ERR_FORMAT, "#%s takes 2 arguments", name);
        if (a[1].is_cap) {
            p.cap2 = a[1].cap;
        } else {
            p.str = lode_xmalloc(a[1].len + 1);
            memcpy(p.str, a[1].str, a[1].len);
            p.str[a[1].len] = 0;
            p.str_len = a[1].len;
        }
    } else if (p.op == P_MATCH) {
        if (nargs != 2 || a[1].is_cap) return lode_error_set(err, LODE_ERR_FORMAT, "#%s takes a capture and a regex", name);
        int ec;
        PCRE2_SIZE eo;
        p.re = pcre2_compile((PCRE2_SPTR)a[1].str, a[1].len, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
        if (!p.re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return lode_error_set(err, LODE_ERR_FORMAT, "#%s regex /%.*s/ at %zu: %s", name, (int)a[1].len, a[1].str,
                                  (size_t)eo, (const char *)msg);
        }
        pcre2_jit_compile(p.re, PCRE2_JIT_COMPLETE);
    } else {
        p.n_set = nargs - 1;
        p.set = lode_xcalloc(p.n_set, sizeof *p.set);
        p.set_len = lode_xcalloc(p.n_set, sizeof *p.set_len);
        for (uint32_t k = 0; k < p.n_set; k++) {
            if (a[1 + k].is_cap) {
                pred_free(&p);
                return lode_error_set(err, LODE_ERR_FORMAT, "#%s takes string values", name);
            }
            p.set[k] = lode_xmalloc(a[1 + k].len + 1);
            memcpy(p.set[k], a[1 + k].str, a[1 + k].len);
            p.set[k][a[1 + k].len] = 0;
            p.set_len[k] = a[1 + k].len;
        }
    }
    pp->p = lode_xrealloc(pp->p, (pp->n + 1) * sizeof *pp->p);
    pp->p[pp->n++] = p;
    return LODE_OK;
}

/* Parse the predicate steps of one pattern into preds (lode__pred_add). */
static lode_status compile_preds(lode_query *lq, uint32_t pat, lode_error *err) {
    uint32_t nsteps = 0;
    const TSQueryPredicateStep *st = ts_query_predicates_for_pattern(lq->q, pat, &nsteps);
    lode__parg *args = lode_xmalloc((nsteps ? nsteps : 1) * sizeof *args);
    for (uint32_t i = 0; i < nsteps;) {
        uint32_t j = i;
        while (j < nsteps && st[j].type != TSQueryPredicateStepTypeDone) j++;
        /* steps [i, j): name, args */
        if (j > i && st[i].type == TSQueryPredicateStepTypeString) {
            uint32_t nl;
            const char *name = qstr(lq->q, st[i].value_id, &nl);
            uint32_t nargs = 0;
            for (uint32_t k = i + 1; k < j; k++, nargs++) {
                args[nargs].is_cap = st[k].type == TSQueryPredicateStepTypeCapture;
                args[nargs].cap = st[k].value_id;
                args[nargs].str = args[nargs].is_cap ? NULL : qstr(lq->q, st[k].value_id, &args[nargs].len);
            }
            lode_status rc = lode__pred_add(lq, pat, name, nl, args, nargs, err);
            if (rc != LODE_OK) {
                lode_free(args);
                return rc;
            }
        }
        i = j + 1;
    }
    lode_free(args);
    return LODE_OK;
}

lode_query *lode_query_new(const lode_lang *l, const char *src, size_t len, lode_error *err) {
    if (!l || !src || len > UINT32_MAX) {
        lode_error_set(err, LODE_ERR_INVALID_ARG, "lode_query_new: bad arguments");
        return NULL;
    }
    uint32_t eoff = 0;
    TSQueryError et = TSQueryErrorNone;
    TSQuery *tq = ts_query_new(l->ts(), src, (uint32_t)len, &eoff, &et);
    if (!tq) {
        static const char *const kinds[] = {"none", "syntax", "node type", "field", "capture", "structure", "language"};
        TSPoint pt = lode_syntax_point_at(src, len, eoff);
        lode_error_set(err, LODE_ERR_FORMAT, "%s query: %s error at %u:%u", l->name,
                       (unsigned)et < 7 ? kinds[et] : "unknown", pt.row + 1, pt.column + 1);
        return NULL;
    }
    lode_query *q = lode_xcalloc(1, sizeof *q);
    q->q = tq;
    q->lang = l;
    q->n_patterns = ts_query_pattern_count(tq);
    q->pp = lode_xcalloc(q->n_patterns ? q->n_patterns : 1, sizeof *q->pp);
    for (uint32_t i = 0; i < q->n_patterns; i++) {
        if (compile_preds(q, i, err) != LODE_OK) {
            lode_query_free(q);
            return NULL;
        }
    }
    q->n_caps = ts_query_capture_count(tq);
    q->role = lode_xcalloc(q->n_caps ? q->n_caps : 1, 1);
    for (uint32_t i = 0; i < q->n_caps; i++) {
        uint32_t cl;
        const char *cn = ts_query_capture_name_for_id(tq, i, &cl);
        q->role[i] = lode__cap_role(cn, cl);
    }
    return q;
}

const TSQuery *lode_query_ts(const lode_query *q) { return q ? q->q : NULL; }

const char *lode_query_capture_name(const lode_query *q, uint32_t id, uint32_t *len) {
    return ts_query_capture_name_for_id(q->q, id, len);
}

static bool text_eq(const char *a, size_t al, const char *b, size_t bl) { return al == bl && memcmp(a, b, al) == 0; }

/* One node against one predicate. */
static bool pred_node(const pred *p, const char *src, size_t len, TSNode n, const TSQueryMatch *m,
                      pcre2_match_data *md) {
    uint32_t s = ts_node_start_byte(n), e = ts_node_end_byte(n);
    if (e > len) e = (uint32_t)len;
    if (s > e) s = e;
    const char *t = src + s;
    size_t tl = e - s;
    bool ok = false;
    switch (p->op) {
    case P_EQ:
        if (p->cap2 >= 0) {
            ok = false;
            for (uint16_t i = 0; i < m->capture_count; i++) {
                if (m->captures[i].index != (uint32_t)p->cap2) continue;
                TSNode o = m->captures[i].node;
                uint32_t os = ts_node_start_byte(o), oe = ts_node_end_byte(o);
                if (oe > len || os > oe) continue;
                ok = text_eq(t, tl, src + os, oe - os);
                break;
            }
        } else {
            ok = text_eq(t, tl, p->str, p->str_len);
        }
        break;
    case P_MATCH:
        ok = pcre2_match(p->re, (PCRE2_SPTR)t, tl, 0, 0, md, NULL) >= 0;
        break;
    case P_ANY_OF:
        for (uint32_t k = 0; k < p->n_set && !ok; k++) ok = text_eq(t, tl, p->set[k], p->set_len[k]);
        break;
    }
    return p->neg ? !ok : ok;
}

uint8_t lode__cap_role(const char *cn, uint32_t cl) {
    lode_sym_kind k;
    if (kind_of(cn, cl, &k)) return (uint8_t)(CR_DEF + k);
    if (cl == 4 && memcmp(cn, "name", 4) == 0) return CR_NAME;
    if (cl == 6 && memcmp(cn, "import", 6) == 0) return CR_IMPORT;
    if (cl == 6 && memcmp(cn, "module", 6) == 0) return CR_MODULE;
    if (cl == 3 && memcmp(cn, "_fn", 3) == 0) return CR_FN;
    return CR_NONE;
}

bool lode__preds_pass(const lode_query *q, const TSQueryMatch *m, const char *src, size_t len, pcre2_match_data *md) {
    const pattern_preds *pp = &q->pp[m->pattern_index];
    for (uint32_t k = 0; k < pp->n; k++) {
        const pred *p = &pp->p[k];
        bool seen = false, any_ok = false, all_ok = true;
        for (uint16_t i = 0; i < m->capture_count; i++) {
            if (m->captures[i].index != p->cap) continue;
            seen = true;
            bool r = pred_node(p, src, len, m->captures[i].node, m, md);
            any_ok |= r;
            all_ok &= r;
        }
        /* An absent (optional/quantified) capture does not reject the match. */
        if (seen && !(p->any ? any_ok : all_ok)) return false;
    }
    return true;
}

/* The loop of lode_query_run on a given cursor and match buffer (reused
 * across runs: exec resets the cursor, the range is set every time). */
static void query_run(TSQueryCursor *c, pcre2_match_data *md, const lode_query *q, TSNode node, const char *src,
                      size_t len, uint32_t start, uint32_t end, lode_match_fn fn, void *ud) {
    ts_query_cursor_set_byte_range(c, start, end);
    ts_query_cursor_exec(c, q->q, node);
    TSQueryMatch m;
    while (ts_query_cursor_next_match(c, &m)) {
        if (!lode__preds_pass(q, &m, src, len, md)) continue;
        if (!fn(ud, q, &m)) break;
    }
}

void lode_query_run(const lode_query *q, TSNode node, const char *src, size_t len, uint32_t start, uint32_t end,
                    lode_match_fn fn, void *ud) {
    if (!q || !fn || ts_node_is_null(node)) return;
    TSQueryCursor *c = ts_query_cursor_new();
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    query_run(c, md, q, node, src, len, start, end, fn, ud);
    pcre2_match_data_free(md);
    ts_query_cursor_delete(c);
}

/* ---- scratch state for repeated extraction ------------------------------------ */
struct lode_syntax_scratch {
    TSParser *parser[N_LANGS]; /* one per language: no scanner re-creation between files */
    TSQueryCursor *qc;
    pcre2_match_data *md;
    /* growth buffers for one file's definitions and imports (sym_ctx); the
     * results are copied out at their exact size */
    lode_sym *syms;
    size_t cap;
    lode_import *imps;
    size_t icap;
};

lode_syntax_scratch *lode_syntax_scratch_new(void) {
    lode_syntax_scratch *s = lode_xcalloc(1, sizeof *s);
    s->qc = ts_query_cursor_new();
    s->md = pcre2_match_data_create(1, NULL); /* NULL (OOM): #match? fails, as in lode_query_run */
    return s;
}

void lode_syntax_scratch_free(lode_syntax_scratch *s) {
    if (!s) return;
    for (size_t i = 0; i < N_LANGS; i++)
        if (s->parser[i]) ts_parser_delete(s->parser[i]);
    ts_query_cursor_delete(s->qc);
    pcre2_match_data_free(s->md);
    lode_free(s->syms);
    lode_free(s->imps);
    lode_free(s);
}

/* Parse with the scratch's parser for l (made on first use). A parser
 * resets itself (and its external scanner) after each parse, so reusing it
 * gives the same tree as a fresh one. */
static TSTree *scratch_parse(lode_syntax_scratch *s, const lode_lang *l, const char *src, size_t len) {
    size_t li = (size_t)(l - g_langs);
    if (li >= N_LANGS || len > UINT32_MAX) return NULL;
    if (!s->parser[li]) {
        TSParser *p = ts_parser_new();
        if (!ts_parser_set_language(p, l->ts())) {
            ts_parser_delete(p);
            return lode_syntax_parse(l, src, len); /* logs the ABI mismatch, returns NULL */
        }
        s->parser[li] = p;
    }
    return ts_parser_parse_string(s->parser[li], NULL, src ? src : "", (uint32_t)len);
}

/* ---- built-in queries ---------------------------------------------------------- */
/* "symbols" is tags + imports compiled as one query, so extraction walks the
 * tree once. */
#define N_QNAMES 4
static const char *const g_qnames[N_QNAMES] = {"tags", "imports", "locals", "symbols"};
static lode_query *g_builtin[N_LANGS][N_QNAMES];
static bool g_builtin_done[N_LANGS][N_QNAMES]; /* compiled on first use, each on its own */
static pthread_mutex_t g_builtin_mu = PTHREAD_MUTEX_INITIALIZER;

static lode_query *g_walk[N_LANGS];     /* the walker's reading of "symbols" (NULL: not expressible) */
static bool g_walk_done[N_LANGS];

static void free_builtins(void) {
    for (size_t i = 0; i < N_LANGS; i++) {
        for (size_t k = 0; k < N_QNAMES; k++) lode_query_free(g_builtin[i][k]), g_builtin[i][k] = NULL;
        lode_query_free(g_walk[i]), g_walk[i] = NULL;
    }
}

/* The text of the "symbols" query: the language's tags, a newline, its
 * imports (lode_xmalloc'd, NUL-terminated; NULL when it has neither). */
static char *symbols_text(const lode_lang *l, size_t *n) {
    const lode__embedded_query *parts[2] = {NULL, NULL};
    for (size_t e = 0; e < lode__n_queries; e++) {
        const lode__embedded_query *eq = &lode__queries[e];
        if (strcmp(eq->lang, l->name) != 0) continue;
        if (strcmp(eq->name, "tags") == 0) parts[0] = eq;
        if (strcmp(eq->name, "imports") == 0) parts[1] = eq;
    }
    size_t tl = parts[0] ? parts[0]->len : 0, il = parts[1] ? parts[1]->len : 0;
    if (!tl && !il) return NULL;
    char *both = lode_xmalloc(tl + il + 2);
    if (tl) memcpy(both, parts[0]->text, tl);
    both[tl] = '\n';
    if (il) memcpy(both + tl + 1, parts[1]->text, il);
    both[tl + il + 1] = 0;
    *n = tl + il + 1;
    return both;
}

static void register_free(void) {
    static bool registered;
    if (!registered) atexit(free_builtins), registered = true;
}

/* The walker query of l (borrowed, lives forever), built on first use; NULL
 * when the language's patterns need the query cursor. */
static const lode_query *walk_query(const lode_lang *l) {
    size_t li = (size_t)(l - g_langs);
    if (li >= N_LANGS) return NULL;
    pthread_mutex_lock(&g_builtin_mu);
    if (!g_walk_done[li]) {
        register_free();
        size_t n;
        char *text = symbols_text(l, &n);
        if (text) {
            lode_error err = {0};
            g_walk[li] = lode__walk_query(l, text, n, &err);
            if (!g_walk[li]) lode_log(LODE_LOG_DEBUG, "%s: symbols through the query cursor (%s)", l->name, err.text);
            lode_free(text);
        }
        g_walk_done[li] = true;
    }
    const lode_query *q = g_walk[li];
    pthread_mutex_unlock(&g_builtin_mu);
    return q;
}

const lode_query *lode_syntax_query(const lode_lang *l, const char *name) {
    if (!l || !name) return NULL;
    size_t li = (size_t)(l - g_langs);
    if (li >= N_LANGS) return NULL;
    size_t qi = 0;
    while (qi < N_QNAMES && strcmp(g_qnames[qi], name) != 0) qi++;
    if (qi == N_QNAMES) return NULL;
    pthread_mutex_lock(&g_builtin_mu);
    if (!g_builtin_done[li][qi]) {
        register_free();
        for (size_t e = 0; e < lode__n_queries; e++) {
            const lode__embedded_query *eq = &lode__queries[e];
            if (strcmp(eq->lang, l->name) != 0) continue;
            if (qi == 3 || strcmp(eq->name, g_qnames[qi]) != 0) continue;
            lode_error err = {0};
            g_builtin[li][qi] = lode_query_new(l, eq->text, eq->len, &err);
            if (!g_builtin[li][qi]) lode_log(LODE_LOG_ERROR, "built-in %s/%s query: %s", l->name, eq->name, err.text);
        }
        size_t n;
        char *both = qi == 3 ? symbols_text(l, &n) : NULL;
        if (both) {
            lode_error err = {0};
            g_builtin[li][3] = lode_query_new(l, both, n, &err);
            if (!g_builtin[li][3]) lode_log(LODE_LOG_ERROR, "built-in %s/symbols query: %s", l->name, err.text);
            lode_free(both);
        }
        g_builtin_done[li][qi] = true;
    }
    const lode_query *q = g_builtin[li][qi];
    pthread_mutex_unlock(&g_builtin_mu);
    return q;
}

/* ---- symbols and imports --------------------------------------------------------- */
#define MAX_NAME 256
#define MAX_IMPORT_TEXT 4096

typedef struct sym_ctx {
    const lode_lang *l;
    const char *src;
    size_t len;
    TSFieldId body; /* the language's "body" field (0: none) */
    lode_sym *syms;
    size_t n, cap;
    lode_import *imps;
    size_t ni, icap;
} sym_ctx;

static char *dup_range(const char *src, size_t len, uint32_t s, uint32_t e, size_t maxlen) {
    if (e > len) e = (uint32_t)len;
    if (s > e) s = e;
    size_t n = e - s;
    if (n > maxlen) n = maxlen;
    char *r = lode_xmalloc(n + 1);
    memcpy(r, src + s, n);
    r[n] = 0;
    return r;
}

static int kind_of(const char *cap, uint32_t len, lode_sym_kind *k) {
    static const struct { const char *n; lode_sym_kind k; } map[] = {
        {"definition.function", LODE_SYM_FUNCTION}, {"definition.method", LODE_SYM_METHOD},
        {"definition.class", LODE_SYM_CLASS},       {"definition.interface", LODE_SYM_CLASS},
        {"definition.struct", LODE_SYM_CLASS},      {"definition.enum", LODE_SYM_CLASS},
        {"definition.union", LODE_SYM_CLASS},       {"definition.type", LODE_SYM_TYPE},
        {"definition.macro", LODE_SYM_MACRO},       {"definition.constant", LODE_SYM_CONSTANT},
        {"definition.module", LODE_SYM_MODULE},     {"definition.namespace", LODE_SYM_MODULE},
        {"definition.variable", LODE_SYM_VARIABLE}, {"definition.field", LODE_SYM_VARIABLE},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strlen(map[i].n) == len && memcmp(map[i].n, cap, len) == 0) return *k = map[i].k, 1;
    return 0;
}

/* Count named children of `parent` that have the type of `n`. */
static uint32_t same_type_children(TSNode parent, TSNode n) {
    const char *t = ts_node_type(n);
    uint32_t c = 0, nc = ts_node_named_child_count(parent);
    for (uint32_t i = 0; i < nc; i++)
        if (strcmp(ts_node_type(ts_node_named_child(parent, i)), t) == 0) c++;
    return c;
}

/* Climb from the captured definition into wrapping nodes (declarator →
 * function_definition, declarator → lexical_declaration → export, decorators,
 * templates) as long as the parent wraps only this one definition. */
static TSNode outer_of(const lode_lang *l, TSNode n) {
    for (int depth = 0; depth < 8; depth++) {
        TSNode p = ts_node_parent(n);
        if (ts_node_is_null(p)) break;
        const char *pt = ts_node_type(p);
        if (!in_list(l->wrap, pt, strlen(pt))) break;
        if (same_type_children(p, n) != 1) break;
        n = p;
    }
    return n;
}

static bool find_body(TSFieldId body, TSNode n, int depth, uint32_t after, uint32_t *out) {
    TSNode b = ts_node_child_by_field_id(n, body);
    if (!ts_node_is_null(b) && ts_node_start_byte(b) >= after) {
        *out = ts_node_start_byte(b);
        return true;
    }
    if (depth == 0) return false;
    uint32_t nc = ts_node_named_child_count(n);
    for (uint32_t i = 0; i < nc; i++) {
        TSNode c = ts_node_named_child(n, i);
        if (ts_node_end_byte(c) <= after) continue;
        if (find_body(body, c, depth - 1, after, out)) return true;
    }
    return false;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static bool on_tag(void *ud, const lode_query *q, const TSQueryMatch *m) {
    sym_ctx *sc = ud;
    TSNode def = {0}, name = {0};
    bool have_def = false, have_name = false;
    lode_sym_kind kind = LODE_SYM_FUNCTION;
    for (uint16_t i = 0; i < m->capture_count; i++) {
        uint8_t r = q->role[m->captures[i].index];
        if (!have_def && r >= CR_DEF) def = m->captures[i].node, kind = (lode_sym_kind)(r - CR_DEF), have_def = true;
        else if (!have_name && r == CR_NAME) name = m->captures[i].node, have_name = true;
    }
    if (!have_def || !have_name) return true;
    uint32_t ns = ts_node_start_byte(name), ne = ts_node_end_byte(name);
    if (ne <= ns || ne > sc->len) return true;
    TSNode outer = outer_of(sc->l, def);
    if (sc->n == sc->cap) {
        sc->cap = sc->cap ? sc->cap * 2 : 32;
        sc->syms = lode_xrealloc(sc->syms, sc->cap * sizeof *sc->syms);
    }
    lode_sym *s = &sc->syms[sc->n++];
    s->kind = kind;
    s->name = dup_range(sc->src, sc->len, ns, ne, MAX_NAME);
    s->start = ts_node_start_byte(outer);
    s->end = ts_node_end_byte(outer);
    s->name_start = ns;
    s->line = ts_node_start_point(outer).row;
    s->parent = -1;
    while (s->end > s->start && is_space(sc->src[s->end - 1])) s->end--;
    uint32_t body;
    if (find_body(sc->body, outer, 0, ne, &body) || find_body(sc->body, def, 3, ne, &body) ||
        find_body(sc->body, outer, 2, ne, &body))
        s->sig_end = body;
    else s->sig_end = s->end;
    if (s->sig_end < s->start || s->sig_end > s->end) s->sig_end = s->end;
    return true;
}

static char *module_text(const lode_lang *l, const char *src, size_t len, TSNode mod, bool *system,
                         const char *fn, size_t fnl) {
    char *t = dup_range(src, len, ts_node_start_byte(mod), ts_node_end_byte(mod), MAX_IMPORT_TEXT);
    size_t n = strlen(t);
    *system = false;
    if (n >= 2 && ((t[0] == '"' && t[n - 1] == '"') || (t[0] == '\'' && t[n - 1] == '\'') ||
                   (t[0] == '<' && t[n - 1] == '>') || (t[0] == '`' && t[n - 1] == '`'))) {
        *system = t[0] == '<';
        memmove(t, t + 1, n - 2);
        t[n - 2] = 0;
    }
    if (strcmp(l->name, "ruby") == 0 && fnl == 16 && memcmp(fn, "require_relative", 16) == 0) {
        size_t m = strlen(t);
        char *r = lode_xmalloc(m + 3);
        memcpy(r, "./", 2);
        memcpy(r + 2, t, m + 1);
        lode_free(t);
        t = r;
    }
    return t;
}

static bool on_import(void *ud, const lode_query *q, const TSQueryMatch *m) {
    sym_ctx *sc = ud;
    TSNode imp = {0}, mod = {0};
    bool hi = false, hm = false;
    const char *fn = "";
    size_t fnl = 0;
    for (uint16_t i = 0; i < m->capture_count; i++) {
        uint8_t r = q->role[m->captures[i].index];
        TSNode nd = m->captures[i].node;
        if (r == CR_IMPORT) imp = nd, hi = true;
        else if (r == CR_MODULE) mod = nd, hm = true;
        else if (r == CR_FN && ts_node_end_byte(nd) <= sc->len) {
            fn = sc->src + ts_node_start_byte(nd);
            fnl = ts_node_end_byte(nd) - ts_node_start_byte(nd);
        }
    }
    if (!hi || !hm) return true;
    if (sc->ni == sc->icap) {
        sc->icap = sc->icap ? sc->icap * 2 : 16;
        sc->imps = lode_xrealloc(sc->imps, sc->icap * sizeof *sc->imps);
    }
    lode_import *im = &sc->imps[sc->ni++];
    im->start = ts_node_start_byte(imp);
    im->end = ts_node_end_byte(imp);
    while (im->end > im->start && is_space(sc->src[im->end - 1])) im->end--;
    im->line = ts_node_start_point(imp).row;
    im->text = dup_range(sc->src, sc->len, im->start, im->end, MAX_IMPORT_TEXT);
    im->module = module_text(sc->l, sc->src, sc->len, mod, &im->system, fn, fnl);
    return true;
}

/* A match of the combined query: an import when it has an @import capture. */
static bool on_symbol(void *ud, const lode_query *q, const TSQueryMatch *m) {
    for (uint16_t i = 0; i < m->capture_count; i++)
        if (q->role[m->captures[i].index] == CR_IMPORT) return on_import(ud, q, m);
    return on_tag(ud, q, m);
}

static int kind_rank(lode_sym_kind k) {
    /* On duplicates (the same node captured by two patterns), the more
     * specific kind wins. */
    switch (k) {
    case LODE_SYM_METHOD: return 0;
    case LODE_SYM_MACRO: return 1;
    case LODE_SYM_CLASS: return 2;
    case LODE_SYM_MODULE: return 3;
    case LODE_SYM_TYPE: return 4;
    case LODE_SYM_FUNCTION: return 5;
    case LODE_SYM_CONSTANT: return 6;
    default: return 7;
    }
}

static int cmp_sym(const void *a, const void *b) {
    const lode_sym *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    if (x->end != y->end) return x->end > y->end ? -1 : 1;
    if (x->name_start != y->name_start) return x->name_start < y->name_start ? -1 : 1;
    int r = kind_rank(x->kind) - kind_rank(y->kind);
    if (r) return r;
    return strcmp(x->name, y->name);
}

static int cmp_imp(const void *a, const void *b) {
    const lode_import *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return strcmp(x->module, y->module);
}

void lode_file_syms_clear(lode_file_syms *fs) {
    if (!fs) return;
    for (size_t i = 0; i < fs->n_syms; i++) lode_free(fs->syms[i].name);
    for (size_t i = 0; i < fs->n_imports; i++) lode_free(fs->imports[i].text), lode_free(fs->imports[i].module);
    lode_free(fs->syms);
    lode_free(fs->imports);
    memset(fs, 0, sizeof *fs);
}

lode_status lode_syntax_symbols(const lode_lang *l, const char *src, size_t len, const TSTree *tree,
                                lode_file_syms *out, lode_error *err) {
    return lode_syntax_symbols_with(NULL, l, src, len, tree, out, err);
}

static lode_status symbols_impl(lode_syntax_scratch *ss, const lode_lang *l, const char *src, size_t len,
                                const TSTree *tree, lode_file_syms *out, bool reference, lode_error *err);

lode_status lode_syntax_symbols_with(lode_syntax_scratch *ss, const lode_lang *l, const char *src, size_t len,
                                     const TSTree *tree, lode_file_syms *out, lode_error *err) {
    return symbols_impl(ss, l, src, len, tree, out, false, err);
}

lode_status lode_syntax_symbols_query(const lode_lang *l, const char *src, size_t len, const TSTree *tree,
                                      lode_file_syms *out, lode_error *err) {
    return symbols_impl(NULL, l, src, len, tree, out, true, err);
}

bool lode_syntax_symbols_walked(const lode_lang *l) { return l && walk_query(l) != NULL; }

static lode_status symbols_impl(lode_syntax_scratch *ss, const lode_lang *l, const char *src, size_t len,
                                const TSTree *tree, lode_file_syms *out, bool reference, lode_error *err) {
    if (!out) return lode_error_set(err, LODE_ERR_INVALID_ARG, "lode_syntax_symbols: out is NULL");
    memset(out, 0, sizeof *out);
    if (!l || (!src && len)) return lode_error_set(err, LODE_ERR_INVALID_ARG, "lode_syntax_symbols: bad arguments");
    if (len > UINT32_MAX) return lode_error_set(err, LODE_ERR_RANGE, "file too large (%zu bytes)", len);
    if (!src) src = "";
    TSTree *own = NULL;
    if (!tree) {
        tree = own = ss ? scratch_parse(ss, l, src, len) : lode_syntax_parse(l, src, len);
        if (!own) return lode_error_set(err, LODE_ERR_UNSUPPORTED, "cannot load the %s grammar", l->name);
    }
    TSNode root = ts_tree_root_node(tree);
    sym_ctx sc = {.l = l, .src = src, .len = len, .body = ts_language_field_id_for_name(ts_tree_language(tree), "body", 4)};
    if (ss) sc.syms = ss->syms, sc.cap = ss->cap, sc.imps = ss->imps, sc.icap = ss->icap;
    const lode_query *wq = reference ? NULL : walk_query(l);
    const lode_query *both = wq ? NULL : lode_syntax_query(l, "symbols");
    if (wq) {
        pcre2_match_data *md = ss ? ss->md : pcre2_match_data_create(1, NULL);
        lode__walk_run(wq, root, src, len, md, on_symbol, &sc);
        if (!ss) pcre2_match_data_free(md);
    } else if (both && ss) query_run(ss->qc, ss->md, both, root, src, len, 0, UINT32_MAX, on_symbol, &sc);
    else if (both) lode_query_run(both, root, src, len, 0, UINT32_MAX, on_symbol, &sc);
    if (own) ts_tree_delete(own);

    /* Sort, drop duplicates (same node from two patterns), link parents. */
    if (sc.n) qsort(sc.syms, sc.n, sizeof *sc.syms, cmp_sym);
    size_t w = 0;
    for (size_t i = 0; i < sc.n; i++) {
        if (w && sc.syms[w - 1].start == sc.syms[i].start && sc.syms[w - 1].end == sc.syms[i].end &&
            sc.syms[w - 1].name_start == sc.syms[i].name_start) {
            lode_free(sc.syms[i].name);
            continue;
        }
        sc.syms[w++] = sc.syms[i];
    }
    sc.n = w;
    int32_t stack[64];
    int sp = 0;
    for (size_t i = 0; i < sc.n; i++) {
        lode_sym *s = &sc.syms[i];
        while (sp && !(sc.syms[stack[sp - 1]].start <= s->start && s->end <= sc.syms[stack[sp - 1]].end)) sp--;
        s->parent = sp ? stack[sp - 1] : -1;
        if (s->parent >= 0 && s->kind == LODE_SYM_FUNCTION && sc.syms[s->parent].kind == LODE_SYM_CLASS)
            s->kind = LODE_SYM_METHOD;
        if (sp < 64) stack[sp++] = (int32_t)i;
    }
    if (sc.ni) qsort(sc.imps, sc.ni, sizeof *sc.imps, cmp_imp);
    w = 0;
    for (size_t i = 0; i < sc.ni; i++) {
        if (w && sc.imps[w - 1].start == sc.imps[i].start && strcmp(sc.imps[w - 1].module, sc.imps[i].module) == 0) {
            lode_free(sc.imps[i].text), lode_free(sc.imps[i].module);
            continue;
        }
        sc.imps[w++] = sc.imps[i];
    }
    sc.ni = w;
    if (ss) { /* keep the buffers, hand out exact copies */
        ss->syms = sc.syms, ss->cap = sc.cap, ss->imps = sc.imps, ss->icap = sc.icap;
        sc.syms = sc.n ? memcpy(lode_xmalloc(sc.n * sizeof *sc.syms), ss->syms, sc.n * sizeof *sc.syms) : NULL;
        sc.imps = sc.ni ? memcpy(lode_xmalloc(sc.ni * sizeof *sc.imps), ss->imps, sc.ni * sizeof *sc.imps) : NULL;
    }
    out->syms = sc.syms;
    out->n_syms = sc.n;
    out->imports = sc.imps;
    out->n_imports = sc.ni;
    return LODE_OK;
}

/* ---- references ------------------------------------------------------------------ */
static bool ident_like(const lode_lang *l, TSNode n) {
    const char *t = ts_node_type(n);
    if (strstr(t, "identifier")) return true;
    if (strcmp(t, "constant") == 0 || strcmp(t, "variable_name") == 0) return true;
    if (strcmp(t, "word") == 0) {
        TSNode p = ts_node_parent(n);
        return !ts_node_is_null(p) && strcmp(ts_node_type(p), "command_name") == 0;
    }
    (void)l;
    return false;
}

typedef struct strset {
    char **keys;
    size_t cap, n;
} strset;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Insert; returns true when new. */
static bool strset_add(strset *s, const char *k, size_t kl) {
    if ((s->n + 1) * 2 > s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        char **nk = lode_xcalloc(nc, sizeof *nk);
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->keys[i]) continue;
            size_t j = hash_bytes(s->keys[i], strlen(s->keys[i])) & (nc - 1);
            while (nk[j]) j = (j + 1) & (nc - 1);
            nk[j] = s->keys[i];
        }
        lode_free(s->keys);
        s->keys = nk;
        s->cap = nc;
    }
    size_t j = hash_bytes(k, kl) & (s->cap - 1);
    while (s->keys[j]) {
        if (strlen(s->keys[j]) == kl && memcmp(s->keys[j], k, kl) == 0) return false;
        j = (j + 1) & (s->cap - 1);
    }
    char *c = lode_xmalloc(kl + 1);
    memcpy(c, k, kl);
    c[kl] = 0;
    s->keys[j] = c;
    s->n++;
    return true;
}

size_t lode_syntax_refs(const lode_lang *l, const TSTree *tree, const char *src, uint32_t start, uint32_t end,
                        char ***names_out) {
    *names_out = NULL;
    if (!l || !tree || !src || start >= end) return 0;
    TSNode root = ts_tree_root_node(tree);
    uint32_t len = ts_node_end_byte(root);
    if (end > len) end = len;
    strset set = {0};
    char **out = NULL;
    size_t n = 0, cap = 0;
    TSTreeCursor c = ts_tree_cursor_new(root);
    for (;;) {
        TSNode nd = ts_tree_cursor_current_node(&c);
        uint32_t s = ts_node_start_byte(nd), e = ts_node_end_byte(nd);
        bool overlap = e > start && s < end;
        if (overlap && ts_node_child_count(nd) == 0) {
            if (ts_node_is_named(nd) && ident_like(l, nd) && s >= start && e <= end && e > s && e - s <= MAX_NAME) {
                if (strset_add(&set, src + s, e - s)) {
                    if (n == cap) cap = cap ? cap * 2 : 32, out = lode_xrealloc(out, cap * sizeof *out);
                    out[n] = lode_xmalloc(e - s + 1);
                    memcpy(out[n], src + s, e - s);
                    out[n][e - s] = 0;
                    n++;
                }
            }
        }
        if (overlap && ts_tree_cursor_goto_first_child(&c)) continue;
        while (!ts_tree_cursor_goto_next_sibling(&c)) {
            if (!ts_tree_cursor_goto_parent(&c)) goto done;
        }
    }
done:
    ts_tree_cursor_delete(&c);
    for (size_t i = 0; i < set.cap; i++) lode_free(set.keys[i]);
    lode_free(set.keys);
    *names_out = out;
    return n;
}

void lode_syntax_refs_free(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) lode_free(names[i]);
    lode_free(names);
}
