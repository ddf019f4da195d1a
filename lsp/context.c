/*
 * context.c — FIM prompt assembly from the whole project (lode_context.h).
 *
 * Budget, for B tokens in all (4 go to BOS and the three FIM markers):
 *   prefix window  ≤ 3B/8, suffix window ≤ B/8 (the current file's header
 *   line counts with the prefix);
 *   project context: the rest, plus what the windows leave unused, rounded
 *   down to a grid of B/16 so that it does not move with every keystroke;
 *   inside it, IMPORT sections get up to 30%, RECENT up to 15%, DEFINITION
 *   the rest; what a section leaves unused goes to the ones after it.
 * Everything is laid out in that order, so what comes first never depends
 * on what comes after it (stable-first).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lode_context.h"

#define MAX_REFS 96        /* identifiers looked up per build */
#define MAX_CANDS 16       /* definitions considered per identifier */
#define MAX_RECENT 8       /* files remembered as recently edited */
#define RECENT_FILES LODE_CTX_RECENT_FILES /* of which at most this many get a chunk */
#define SIG_CAP 600        /* bytes of a signature shown */
#define SMALL_TYPE 480     /* a class/type body this small is shown whole in an import outline */
/* The estimate without a tokenizer: ceil(bytes / 2.5). DeepSeek-Coder's
 * tokenizer measured 2.25-2.4 bytes per token on C (lua, jq), 3.1-3.5 on
 * Go, Rust and Python (docs/context.md). */
#define EST_TOKENS(n) (((n) * 2 + 4) / 5)
#define EST_BYTES(t) ((t) * 5 / 2)

/* ---- small helpers ------------------------------------------------------------- */

static bool is_cont(unsigned char ch) { return (ch & 0xC0) == 0x80; }
static bool word_ch(unsigned char ch) { return ch >= 0x80 || ch == '_' || ch == '$' || isalnum(ch); }

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull ^ (n * 0x9E3779B97F4A7C15ull);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    h ^= h >> 32;
    return h ? h : 1;
}

static size_t line_start(const char *t, size_t off) {
    while (off > 0 && t[off - 1] != '\n') off--;
    return off;
}
static size_t line_end(const char *t, size_t len, size_t off) { /* after the '\n' (or len) */
    while (off < len && t[off] != '\n') off++;
    return off < len ? off + 1 : len;
}
static size_t first_nonblank(const char *t, size_t len, size_t ls) {
    while (ls < len && (t[ls] == ' ' || t[ls] == '\t')) ls++;
    return ls;
}

/* ---- the builder ------------------------------------------------------------------- */
typedef struct tcount {
    uint64_t h;
    uint32_t n, tokens;
} tcount;
#define TC_SLOTS 8192

typedef struct recent {
    char *path;
    size_t at;
    uint64_t seq;
} recent;

struct lode_ctx {
    lode_index *ix;
    char **roots;
    size_t n_roots;
    const lode_tok *tok;
    tcount *tc;
    size_t tc_used;
    recent rec[MAX_RECENT];
    size_t n_rec;
    uint64_t seq;
    /* the last current-file symbols, by text hash */
    uint64_t syms_hash;
    size_t syms_len;
    const lode_lang *syms_lang;
    char *syms_text;    /* the text they were extracted from (or shifted to) */
    const char *syms_path;
    unsigned syms_shifts; /* edits applied by shifting since the last extraction */
    /* texts of other files read through the index, kept until the index changes */
    struct ctext {
        char *path, *text;
        size_t len;
        /* outline items of the file (by symbol index), made on first use */
        char **item;
        uint32_t *item_len, *item_tok;
        size_t n_items;
    } **texts; /* pointers: entries stay put while the array grows */
    size_t n_texts, texts_bytes;
    size_t gen[4];
    /* the resolved imports of the last current file (index paths), until the index changes */
    uint64_t imp_key;
    const char **imp;
    size_t n_imp, n_imp_direct;
    lode_file_syms syms;
};

static void ctext_free(struct ctext *t);

lode_ctx *lode_ctx_new(lode_index *ix, const char *const *roots, size_t n_roots, const lode_tok *tok) {
    lode_ctx *c = lode_xcalloc(1, sizeof *c);
    c->ix = ix;
    c->tok = tok;
    c->roots = n_roots ? lode_xcalloc(n_roots, sizeof *c->roots) : NULL;
    for (size_t i = 0; i < n_roots; i++) {
        char *r = realpath(roots[i], NULL);
        c->roots[i] = lode_xstrdup(r ? r : roots[i]);
        free(r);
        size_t k = strlen(c->roots[i]);
        while (k > 1 && c->roots[i][k - 1] == '/') c->roots[i][--k] = 0;
    }
    c->n_roots = n_roots;
    c->tc = lode_xcalloc(TC_SLOTS, sizeof *c->tc);
    return c;
}

void lode_ctx_free(lode_ctx *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_roots; i++) lode_free(c->roots[i]);
    lode_free(c->roots);
    for (size_t i = 0; i < c->n_rec; i++) lode_free(c->rec[i].path);
    lode_file_syms_clear(&c->syms);
    lode_free(c->syms_text);
    lode_free((char *)c->syms_path);
    for (size_t i = 0; i < c->n_texts; i++) ctext_free(c->texts[i]);
    lode_free(c->texts);
    lode_free(c->imp);
    lode_free(c->tc);
    lode_free(c);
}

size_t lode_ctx_count(lode_ctx *c, const char *s, size_t n) {
    if (!n) return 0;
    if (!c->tok) return EST_TOKENS(n);
    uint64_t h = hash_bytes(s, n);
    size_t i = (size_t)(h & (TC_SLOTS - 1));
    for (size_t k = 0; k < 16; k++, i = (i + 1) & (TC_SLOTS - 1)) {
        if (c->tc[i].h == h && c->tc[i].n == (uint32_t)n) return c->tc[i].tokens;
        if (!c->tc[i].h) break;
    }
    int32_t *ids = NULL;
    size_t nt = 0;
    lode_error e = {0};
    if (lode_tok_encode(c->tok, s, n, false, false, &ids, &nt, &e)) nt = EST_TOKENS(n);
    lode_free(ids);
    if (c->tc_used * 2 > TC_SLOTS) { /* half full: start over (cheap, and keeps probing short) */
        memset(c->tc, 0, TC_SLOTS * sizeof *c->tc);
        c->tc_used = 0;
    }
    i = (size_t)(h & (TC_SLOTS - 1));
    while (c->tc[i].h) i = (i + 1) & (TC_SLOTS - 1);
    c->tc[i] = (tcount){h, (uint32_t)n, (uint32_t)nt};
    c->tc_used++;
    return nt;
}

void lode_ctx_note_edit(lode_ctx *c, const char *path, size_t at) {
    if (!path) return;
    size_t i = 0;
    while (i < c->n_rec && strcmp(c->rec[i].path, path)) i++;
    if (i == c->n_rec) {
        if (c->n_rec == MAX_RECENT) { /* forget the oldest */
            size_t old = 0;
            for (size_t k = 1; k < c->n_rec; k++)
                if (c->rec[k].seq < c->rec[old].seq) old = k;
            lode_free(c->rec[old].path);
            c->rec[old] = c->rec[--c->n_rec];
            i = c->n_rec;
        }
        c->rec[i].path = lode_xstrdup(path);
        c->n_rec++;
    }
    c->rec[i].at = at;
    c->rec[i].seq = ++c->seq;
}

const char *lode_ctx_kind_name(lode_ctx_kind k) {
    static const char *n[] = {"import", "recent", "definition", "file", "suffix"};
    return (unsigned)k < 5 ? n[k] : "?";
}

void lode_ctx_prompt_clear(lode_ctx_prompt *p) {
    for (size_t i = 0; i < p->n_sections; i++) {
        lode_free(p->sections[i].path);
        lode_free(p->sections[i].text);
    }
    lode_free(p->sections);
    lode_free(p->prefix);
    lode_free(p->suffix);
    for (size_t i = 0; i < p->n_defs; i++) lode_free(p->defs[i]);
    lode_free(p->defs);
    memset(p, 0, sizeof *p);
}

char *lode_ctx_prompt_fim_text(const lode_ctx_prompt *p, size_t *len) {
    lode_buf b = {0};
    lode_buf_str(&b, "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>");
    lode_buf_add(&b, p->prefix, p->prefix_len);
    lode_buf_str(&b, "<\xef\xbd\x9c" "fim\xe2\x96\x81" "hole\xef\xbd\x9c>");
    lode_buf_add(&b, p->suffix, p->suffix_len);
    lode_buf_str(&b, "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>");
    return lode_buf_take(&b, len);
}

bool lode_ctx_prompt_has_def(const lode_ctx_prompt *p, const char *path, const char *name) {
    size_t nl = strlen(name), pl = path ? strlen(path) : 0;
    for (size_t i = 0; i < p->n_defs; i++) {
        const char *d = p->defs[i], *tab = strchr(d, '\t');
        if (!tab || strcmp(tab + 1, name) || strlen(tab + 1) != nl) continue;
        if (!path || ((size_t)(tab - d) == pl && !memcmp(d, path, pl))) return true;
    }
    return false;
}

/* ---- paths and headers ----------------------------------------------------------------- */
static const char *rel_path(const lode_ctx *c, const char *path) {
    if (!path) return "untitled";
    size_t best = 0;
    for (size_t i = 0; i < c->n_roots; i++) {
        size_t k = strlen(c->roots[i]);
        if (k > best && !strncmp(path, c->roots[i], k) && path[k] == '/') best = k;
    }
    return best ? path + best + 1 : path;
}

static void add_header(lode_buf *b, const lode_ctx *c, const char *path, const lode_lang *lang) {
    const char *cm = lang ? lode_lang_line_comment(lang) : NULL;
    lode_buf_str(b, cm ? cm : "//");
    lode_buf_str(b, " ");
    lode_buf_str(b, rel_path(c, path));
    lode_buf_str(b, "\n");
}

/* ---- syntactic cuts -------------------------------------------------------------------- */
/* Whether a named node starts at byte b / ends at byte x: a walk down from
 * the root, O(depth x children). */
static bool node_starts_at(TSNode n, uint32_t b) {
    for (int depth = 0; depth < 256; depth++) {
        TSNode ch = ts_node_first_child_for_byte(n, b);
        if (ts_node_is_null(ch) || ts_node_start_byte(ch) > b) return false;
        if (ts_node_start_byte(ch) == b && ts_node_is_named(ch)) return true;
        n = ch;
    }
    return false;
}

static bool node_ends_at(TSNode n, uint32_t x) {
    if (!x) return false;
    for (int depth = 0; depth < 256; depth++) {
        TSNode ch = ts_node_first_child_for_byte(n, x - 1);
        if (ts_node_is_null(ch) || ts_node_start_byte(ch) > x - 1) return false;
        if (ts_node_end_byte(ch) == x && ts_node_is_named(ch)) return true;
        n = ch;
    }
    return false;
}

#define CUT_LINES 400 /* lines searched for a boundary */

/* The prefix window's start, at or after g: the start of a line where a
 * named node begins at the line's first non-blank byte. A boundary between
 * top-level nodes wins when it keeps at least half of the window; else the
 * first line where any node starts. */
static size_t prefix_cut(const TSTree *tree, const char *t, size_t len, size_t g, size_t cursor) {
    if (g == 0) return 0;
    if (tree) {
        TSNode root = ts_tree_root_node(tree);
        size_t top = SIZE_MAX;
        TSTreeCursor tc = ts_tree_cursor_new(root);
        if (ts_tree_cursor_goto_first_child_for_byte(&tc, (uint32_t)g) >= 0) {
            for (int k = 0; k < 256; k++) {
                TSNode ch = ts_tree_cursor_current_node(&tc);
                uint32_t st = ts_node_start_byte(ch);
                if (st >= cursor) break;
                if (st >= g && ts_node_is_named(ch)) {
                    size_t ls = line_start(t, st);
                    if (ls >= g && first_nonblank(t, len, ls) == st) {
                        top = ls;
                        break;
                    }
                }
                if (!ts_tree_cursor_goto_next_sibling(&tc)) break;
            }
        }
        ts_tree_cursor_delete(&tc);
        if (top != SIZE_MAX && top - g <= (cursor - g) / 2) return top;
        size_t ls = line_start(t, g);
        if (ls < g) ls = line_end(t, len, g);
        for (int k = 0; k < CUT_LINES && ls < cursor; k++) {
            size_t fb = first_nonblank(t, len, ls);
            if (fb < cursor && t[fb] != '\n' && node_starts_at(root, (uint32_t)fb)) return ls;
            ls = line_end(t, len, ls);
        }
        if (top != SIZE_MAX) return top;
    }
    /* No node starts a line there: the next line start, else g itself. */
    size_t s = g;
    while (s < cursor && t[s - 1] != '\n') s++;
    if (s < cursor) return s;
    while (g < cursor && is_cont((unsigned char)t[g])) g++;
    return g;
}

/* The suffix window's end, at or before h: the end of the last line (in
 * (cursor, h]) where a named node ends at the line's last non-blank byte. */
static size_t suffix_cut(const TSTree *tree, const char *t, size_t len, size_t cursor, size_t h) {
    if (h >= len) return len;
    if (tree) {
        TSNode root = ts_tree_root_node(tree);
        size_t e = h; /* candidate: just after a '\n' at e - 1 */
        while (e > cursor && t[e - 1] != '\n') e--;
        for (int k = 0; k < CUT_LINES && e > cursor; k++) {
            size_t x = e - 1; /* the '\n' */
            while (x > cursor && (t[x - 1] == ' ' || t[x - 1] == '\t' || t[x - 1] == '\r')) x--;
            if (x > cursor && t[x - 1] != '\n' && node_ends_at(root, (uint32_t)x)) return e;
            e = line_start(t, e - 1);
        }
    }
    size_t e = h; /* else the last line end before h, else h */
    while (e > cursor && t[e - 1] != '\n') e--;
    if (e > cursor) return e;
    while (h > cursor && is_cont((unsigned char)t[h])) h--;
    return h;
}

/* ---- files read during one build ------------------------------------------------------- */
typedef struct build {
    lode_ctx *c;
    const lode_ctx_input *in;
    const lode_lang *lang;
    const char *path; /* current file */
    const lode_file_syms *cur; /* its symbols (NULL without a language) */
    size_t win_start, win_end;
    /* items already in the prompt: (path, start) */
    struct seen {
        const char *path;
        uint32_t start;
        bool body;
        uint64_t h;
    } *seen;
    uint32_t *seen_tab; /* open addressing over seen[] (index + 1), seen_cap slots */
    size_t seen_cap;
    size_t n_seen;
    char **defs;
    size_t n_defs;
    const char **imported; /* resolved import paths: direct ones, then theirs */
    size_t n_imported, n_direct;
} build;

static void ctext_free(struct ctext *t) {
    lode_free(t->path);
    lode_free(t->text);
    for (size_t k = 0; k < t->n_items; k++) lode_free(t->item[k]);
    lode_free(t->item);
    lode_free(t->item_len);
    lode_free(t->item_tok);
    lode_free(t);
}

static void texts_clear(lode_ctx *c) {
    for (size_t i = 0; i < c->n_texts; i++) ctext_free(c->texts[i]);
    c->n_texts = c->texts_bytes = 0;
    c->imp_key = 0;
}

/* Drop the cached texts when the index changed since they were read. */
static void texts_check(lode_ctx *c) {
    if (!c->ix) return;
    lode_index_stats st;
    lode_index_get_stats(c->ix, &st);
    size_t g[4] = {st.files, st.defs, st.parsed, st.events};
    if (memcmp(g, c->gen, sizeof g) || c->texts_bytes > (64u << 20) || c->n_texts > 4096) {
        texts_clear(c);
        memcpy(c->gen, g, sizeof g);
    }
}

static const char *file_text(build *b, const char *path, size_t *len) {
    if (b->path ? !strcmp(path, b->path) : !*path) {
        *len = b->in->len;
        return b->in->text;
    }
    lode_ctx *c = b->c;
    for (size_t i = 0; i < c->n_texts; i++)
        if (!strcmp(c->texts[i]->path, path)) {
            *len = c->texts[i]->len;
            return c->texts[i]->text;
        }
    size_t n = 0;
    char *t = c->ix ? lode_index_read(c->ix, path, &n) : NULL;
    c->texts = lode_xrealloc(c->texts, (c->n_texts + 1) * sizeof *c->texts);
    struct ctext *ce = lode_xcalloc(1, sizeof *ce);
    ce->path = lode_xstrdup(path);
    ce->text = t;
    ce->len = n;
    c->texts[c->n_texts++] = ce;
    c->texts_bytes += n;
    *len = n;
    return t;
}

static struct ctext *text_entry(build *b, const char *path) {
    size_t len;
    if (!file_text(b, path, &len)) return NULL;
    for (size_t i = 0; i < b->c->n_texts; i++)
        if (!strcmp(b->c->texts[i]->path, path)) return b->c->texts[i];
    return NULL;
}

static uint64_t seen_hash(const char *path, uint32_t start) {
    return hash_bytes(path, strlen(path)) ^ ((uint64_t)start * 0x9E3779B97F4A7C15ull);
}

static struct seen *seen_find(build *b, const char *path, uint32_t start) {
    if (!b->seen_cap) return NULL;
    uint64_t h = seen_hash(path, start);
    for (size_t i = (size_t)h & (b->seen_cap - 1);; i = (i + 1) & (b->seen_cap - 1)) {
        uint32_t k = b->seen_tab[i];
        if (!k) return NULL;
        struct seen *s = &b->seen[k - 1];
        if (s->h == h && s->start == start && !strcmp(s->path, path)) return s;
    }
}

static void seen_add(build *b, const char *path, uint32_t start, bool body, const char *name) {
    struct seen *s = seen_find(b, path, start);
    if (s) {
        s->body |= body;
        return;
    }
    uint64_t h = seen_hash(path, start);
    b->seen = lode_xrealloc(b->seen, (b->n_seen + 1) * sizeof *b->seen);
    b->seen[b->n_seen++] = (struct seen){path, start, body, h};
    if (b->n_seen * 2 > b->seen_cap) { /* grow and rehash */
        lode_free(b->seen_tab);
        b->seen_cap = b->seen_cap ? b->seen_cap * 2 : 256;
        b->seen_tab = lode_xcalloc(b->seen_cap, sizeof *b->seen_tab);
        for (size_t k = 0; k < b->n_seen; k++) {
            size_t i = (size_t)b->seen[k].h & (b->seen_cap - 1);
            while (b->seen_tab[i]) i = (i + 1) & (b->seen_cap - 1);
            b->seen_tab[i] = (uint32_t)(k + 1);
        }
    } else {
        size_t i = (size_t)h & (b->seen_cap - 1);
        while (b->seen_tab[i]) i = (i + 1) & (b->seen_cap - 1);
        b->seen_tab[i] = (uint32_t)b->n_seen;
    }
    lode_buf d = {0};
    lode_buf_str(&d, path);
    lode_buf_str(&d, "\t");
    lode_buf_str(&d, name);
    b->defs = lode_xrealloc(b->defs, (b->n_defs + 1) * sizeof *b->defs);
    b->defs[b->n_defs++] = lode_buf_take(&d, NULL);
}

/* The signature of sym as shown: its text up to the body, trailing blanks
 * dropped, plus an elision that keeps it well-formed for the language. */
/* The blanks before a definition on its first line (a method's indentation),
 * so that its continuation lines keep their shape. */
static void add_indent(lode_buf *o, const char *t, size_t a) {
    size_t ls = line_start(t, a);
    for (size_t i = ls; i < a; i++)
        if (t[i] != ' ' && t[i] != '\t') return;
    lode_buf_add(o, t + ls, a - ls);
}

static void add_signature(lode_buf *o, const lode_lang *lang, const char *t, size_t len, const lode_sym *s) {
    size_t a = s->start, e = s->sig_end < s->end ? s->sig_end : s->end;
    if (a > len) return;
    if (e > len) e = len;
    bool body = s->sig_end < s->end;
    while (e > a && isspace((unsigned char)t[e - 1])) e--;
    /* comment lines between the header and the body are not the signature */
    const char *cm = lang ? lode_lang_line_comment(lang) : NULL;
    while (cm && e > a) {
        size_t ls = line_start(t, e);
        if (ls <= a) break;
        size_t fb = first_nonblank(t, e, ls);
        if (strncmp(t + fb, cm, strlen(cm))) break;
        e = ls;
        while (e > a && isspace((unsigned char)t[e - 1])) e--;
    }
    if (e - a > SIG_CAP) { /* whole lines up to the cap */
        size_t k = a + SIG_CAP;
        while (k > a && t[k - 1] != '\n') k--;
        e = k > a ? k - 1 : a + SIG_CAP;
        while (e > a && is_cont((unsigned char)t[e])) e--;
    }
    add_indent(o, t, a);
    lode_buf_add(o, t + a, e - a);
    if (body) {
        const char *ln = lang ? lode_lang_name(lang) : "";
        if (!strcmp(ln, "python")) lode_buf_str(o, e > a && t[e - 1] == ':' ? " ..." : ": ...");
        else if (!strcmp(ln, "c") || !strcmp(ln, "cpp")) lode_buf_str(o, s->kind == LODE_SYM_FUNCTION || s->kind == LODE_SYM_METHOD ? ";" : " { ... };");
        else if (!strcmp(ln, "lua") || !strcmp(ln, "ruby")) lode_buf_str(o, " ... end");
        else if (!strcmp(ln, "bash")) lode_buf_str(o, " { ...; }");
        else lode_buf_str(o, " { ... }");
    }
    lode_buf_str(o, "\n");
}

static void add_body(lode_buf *o, const char *t, size_t len, const lode_sym *s) {
    size_t a = s->start, e = s->end > len ? len : s->end;
    if (a >= e) return;
    add_indent(o, t, a);
    lode_buf_add(o, t + a, e - a);
    lode_buf_str(o, "\n");
}

/* The header line of a class whose member is shown without it
 * ("class Foo(Base):", "impl Foo {"), or nothing. */
static void add_parent_header(lode_buf *o, const char *t, size_t len, const lode_sym *par) {
    size_t a = par->start, e = par->sig_end < par->end ? par->sig_end : par->end;
    if (a >= len) return;
    if (e > len) e = len;
    size_t le = a;
    while (le < e && t[le] != '\n') le++;
    while (le > a && isspace((unsigned char)t[le - 1])) le--;
    add_indent(o, t, a);
    lode_buf_add(o, t + a, le - a);
    lode_buf_str(o, "\n");
}

/* ---- sections ------------------------------------------------------------------------ */
typedef struct item {
    const char *path;
    const lode_lang *lang;
    const lode_sym *sym;
    bool body;
    size_t tokens;
    size_t order; /* for a stable sort */
} item;

static int item_cmp(const void *x, const void *y) {
    const item *a = x, *b = y;
    int c = strcmp(a->path, b->path);
    if (c) return c;
    if (a->sym->start != b->sym->start) return a->sym->start < b->sym->start ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

static void push_section(lode_ctx_prompt *p, lode_ctx_kind k, const char *path, char *text, size_t len, size_t tokens,
                         size_t n_items) {
    p->sections = lode_xrealloc(p->sections, (p->n_sections + 1) * sizeof *p->sections);
    p->sections[p->n_sections++] = (lode_ctx_section){k, lode_xstrdup(path), text, len, tokens, n_items};
}

/* Items grouped by path (sorted by path, then start) into sections of kind k. */
static size_t emit_items(build *b, lode_ctx_prompt *p, lode_ctx_kind k, item *it, size_t n) {
    qsort(it, n, sizeof *it, item_cmp);
    size_t used = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        lode_buf o = {0};
        add_header(&o, b->c, it[i].path, it[i].lang);
        size_t cnt = 0;
        for (; j < n && !strcmp(it[j].path, it[i].path); j++) {
            size_t len;
            const char *t = file_text(b, it[j].path, &len);
            if (!t) continue;
            if (it[j].body) add_body(&o, t, len, it[j].sym);
            else add_signature(&o, it[j].lang, t, len, it[j].sym);
            cnt++;
        }
        lode_buf_str(&o, "\n");
        size_t tl;
        char *txt = lode_buf_take(&o, &tl);
        size_t tk = lode_ctx_count(b->c, txt, tl);
        used += tk;
        push_section(p, k, rel_path(b->c, it[i].path), txt, tl, tk, cnt);
        i = j;
    }
    return used;
}

static size_t sig_tokens(build *b, const char *path, const lode_lang *lang, const lode_sym *s) {
    size_t len;
    const char *t = file_text(b, path, &len);
    if (!t || s->start >= len) return SIZE_MAX;
    lode_buf o = {0};
    add_signature(&o, lang, t, len, s);
    size_t n = lode_ctx_count(b->c, o.p ? o.p : "", o.n);
    lode_free(o.p);
    return n;
}

static size_t body_tokens(build *b, const char *path, const lode_sym *s) {
    size_t len;
    const char *t = file_text(b, path, &len);
    if (!t || s->start >= len) return SIZE_MAX;
    size_t e = s->end > len ? len : s->end;
    return lode_ctx_count(b->c, t + s->start, e - s->start) + 1;
}

static size_t header_tokens(build *b, const char *path, const lode_lang *lang) {
    lode_buf o = {0};
    add_header(&o, b->c, path, lang);
    size_t n = lode_ctx_count(b->c, o.p, o.n) + 1; /* + the blank line after the section */
    lode_free(o.p);
    return n;
}

static size_t dir_len(const char *p);

static void add_imported(build *b, const char *ip) {
    if (!ip || (b->path && !strcmp(ip, b->path))) return;
    for (size_t k = 0; k < b->n_imported; k++)
        if (!strcmp(b->imported[k], ip)) return;
    b->imported = lode_xrealloc(b->imported, (b->n_imported + 1) * sizeof *b->imported);
    b->imported[b->n_imported++] = ip;
}

static int sym_priority(const lode_sym *s) {
    return s->kind == LODE_SYM_FUNCTION || s->kind == LODE_SYM_METHOD ? 0
           : s->kind == LODE_SYM_CLASS || s->kind == LODE_SYM_TYPE    ? 1
           : s->kind == LODE_SYM_MACRO || s->kind == LODE_SYM_CONSTANT ? 2
                                                                        : 3;
}

/* Outlines of imported files [first, last) of b->imported within cap:
 * function signatures of every file first, then types (small ones whole),
 * then macros and constants, each pass over the files in import order;
 * what does not fit is skipped. Each file's items are shown in source
 * order under its header. Returns the tokens used. */
static size_t outline_files(build *b, lode_ctx_prompt *p, size_t first, size_t last, size_t cap) {
    size_t nfile = last - first, used = 0;
    if (!nfile) return 0;
    typedef struct pick {
        const lode_file_syms *fs;
        const char *t;
        size_t len;
        const lode_lang *lang;
        struct ctext *ce;
        unsigned char *mark; /* 1 signature, 2 whole */
        char **txt;
        size_t *tl;
        size_t n;
        bool headed;
    } pick;
    pick *pk = lode_xcalloc(nfile, sizeof *pk);
    for (size_t f = 0; f < nfile; f++) {
        const char *ip = b->imported[first + f];
        pk[f].fs = lode_index_file(b->c->ix, ip);
        pk[f].t = pk[f].fs && pk[f].fs->n_syms ? file_text(b, ip, &pk[f].len) : NULL;
        pk[f].lang = lode_lang_for_path(ip);
        if (!pk[f].t) continue;
        struct ctext *ce = pk[f].ce = text_entry(b, ip);
        if (!ce || (ce->n_items && ce->n_items != pk[f].fs->n_syms)) {
            pk[f].t = NULL;
            continue;
        }
        if (!ce->n_items) {
            ce->n_items = pk[f].fs->n_syms;
            ce->item = lode_xcalloc(ce->n_items, sizeof *ce->item);
            ce->item_len = lode_xcalloc(ce->n_items, sizeof *ce->item_len);
            ce->item_tok = lode_xcalloc(ce->n_items, sizeof *ce->item_tok);
        }
        pk[f].mark = lode_xcalloc(pk[f].fs->n_syms, 1);
        pk[f].txt = lode_xcalloc(pk[f].fs->n_syms, sizeof *pk[f].txt);
        pk[f].tl = lode_xcalloc(pk[f].fs->n_syms, sizeof *pk[f].tl);
    }
    for (int pass = 0; pass < 3; pass++)
        for (size_t f = 0; f < nfile; f++) {
            if (!pk[f].t) continue;
            const lode_file_syms *fs = pk[f].fs;
            const char *ip = b->imported[first + f];
            for (size_t k = 0; k < fs->n_syms; k++) {
                const lode_sym *s = &fs->syms[k];
                int pr = sym_priority(s);
                if (pr != pass || pk[f].mark[k] || s->end > pk[f].len) continue;
                if (seen_find(b, ip, s->start)) continue;
                if (s->parent >= 0) { /* members: only of a top-level class not shown whole */
                    const lode_sym *par = &fs->syms[s->parent];
                    if (par->parent >= 0 || par->kind != LODE_SYM_CLASS) continue;
                    if (par->end - par->start <= SMALL_TYPE) continue;
                }
                bool whole = pr > 0 && s->end - s->start <= SMALL_TYPE;
                struct ctext *ce = pk[f].ce;
                if (!ce->item[k]) { /* made once per file version, then cached */
                    lode_buf one = {0};
                    if (whole) add_body(&one, pk[f].t, pk[f].len, s);
                    else add_signature(&one, pk[f].lang, pk[f].t, pk[f].len, s);
                    ce->item_tok[k] = (uint32_t)lode_ctx_count(b->c, one.p, one.n);
                    ce->item_len[k] = (uint32_t)one.n;
                    ce->item[k] = lode_buf_take(&one, NULL);
                }
                size_t n1 = ce->item_tok[k];
                size_t h = pk[f].headed ? 0 : header_tokens(b, ip, pk[f].lang);
                if (used + n1 + h > cap) continue;
                used += n1 + h;
                pk[f].headed = true;
                pk[f].mark[k] = whole ? 2 : 1;
                pk[f].txt[k] = ce->item[k];
                pk[f].tl[k] = ce->item_len[k];
                pk[f].n++;
            }
        }
    size_t real = 0;
    for (size_t f = 0; f < nfile; f++) {
        if (pk[f].n) {
            const char *ip = b->imported[first + f];
            lode_buf o = {0};
            add_header(&o, b->c, ip, pk[f].lang);
            int32_t last_par = -1;
            for (size_t k = 0; k < pk[f].fs->n_syms; k++) {
                if (!pk[f].mark[k]) continue;
                int32_t par = pk[f].fs->syms[k].parent;
                if (par >= 0 && par != last_par && !pk[f].mark[par])
                    add_parent_header(&o, pk[f].t, pk[f].len, &pk[f].fs->syms[par]);
                last_par = par >= 0 ? par : last_par;
                lode_buf_add(&o, pk[f].txt[k], pk[f].tl[k]);
                seen_add(b, ip, pk[f].fs->syms[k].start, pk[f].mark[k] == 2, pk[f].fs->syms[k].name);
            }
            lode_buf_str(&o, "\n");
            size_t tl;
            char *txt = lode_buf_take(&o, &tl);
            size_t tk = lode_ctx_count(b->c, txt, tl);
            real += tk;
            push_section(p, LODE_CTX_IMPORT, rel_path(b->c, ip), txt, tl, tk, pk[f].n);
        }
        lode_free(pk[f].mark);
        lode_free(pk[f].txt);
        lode_free(pk[f].tl);
    }
    lode_free(pk);
    return real;
}

/* IMPORT: outlines of the files the current file imports, within cap.
 * b->imported gets the direct imports, then (b->n_direct marks the end)
 * the imports of those, for outline_more. */
static size_t do_imports(build *b, lode_ctx_prompt *p, size_t cap) {
    if (!b->cur || !b->c->ix) return 0;
    lode_ctx *c = b->c;
    uint64_t key = hash_bytes(b->path ? b->path : "", b->path ? strlen(b->path) : 0);
    for (size_t i = 0; i < b->cur->n_imports; i++)
        key = key * 0x100000001b3ull ^ hash_bytes(b->cur->imports[i].module, strlen(b->cur->imports[i].module));
    key |= 1;
    if (c->imp_key == key) { /* same file, same imports, same index: resolved already */
        b->imported = lode_xmalloc((c->n_imp ? c->n_imp : 1) * sizeof *b->imported);
        memcpy(b->imported, c->imp, c->n_imp * sizeof *b->imported);
        b->n_imported = c->n_imp;
        b->n_direct = c->n_imp_direct;
        return outline_files(b, p, 0, b->n_direct, cap);
    }
    for (size_t i = 0; i < b->cur->n_imports; i++)
        add_imported(b, lode_index_resolve_import(b->c->ix, b->path ? b->path : "", &b->cur->imports[i]));
    /* Go and Java: the other files of the package (directory) need no import */
    const char *ln = b->lang ? lode_lang_name(b->lang) : "";
    if (b->path && (!strcmp(ln, "go") || !strcmp(ln, "java"))) {
        size_t dl = dir_len(b->path), nf = lode_index_n_files(b->c->ix);
        for (size_t i = 0; i < nf && b->n_imported < 64; i++) {
            const char *f = lode_index_file_at(b->c->ix, i);
            if (!strncmp(f, b->path, dl) && f[dl] == '/' && !strchr(f + dl + 1, '/') && lode_lang_for_path(f) == b->lang)
                add_imported(b, f);
        }
    }
    b->n_direct = b->n_imported;
    for (size_t i = 0; i < b->n_direct && b->n_imported < 64; i++) {
        const lode_file_syms *fs = lode_index_file(b->c->ix, b->imported[i]);
        for (size_t k = 0; fs && k < fs->n_imports && b->n_imported < 64; k++)
            add_imported(b, lode_index_resolve_import(b->c->ix, b->imported[i], &fs->imports[k]));
    }
    c->imp = lode_xrealloc(c->imp, (b->n_imported ? b->n_imported : 1) * sizeof *c->imp);
    if (b->n_imported) memcpy(c->imp, b->imported, b->n_imported * sizeof *c->imp);
    c->n_imp = b->n_imported;
    c->n_imp_direct = b->n_direct;
    c->imp_key = key;
    return outline_files(b, p, 0, b->n_direct, cap);
}

/* What the definitions left: the direct imports' remaining declarations
 * and the outlines of what they import, after the definitions (their
 * budget depends on the definitions', so they come after them). */
static size_t outline_more(build *b, lode_ctx_prompt *p, size_t cap) {
    if (!b->n_imported || cap < 32) return 0;
    return outline_files(b, p, 0, b->n_imported, cap);
}

static int recent_cmp(const void *x, const void *y) {
    return strcmp(((const recent *)x)->path, ((const recent *)y)->path);
}

/* RECENT: chunks around the last edit of the most recently edited other
 * files, ordered by path. */
static size_t do_recent(build *b, lode_ctx_prompt *p, size_t cap) {
    recent pick[RECENT_FILES];
    size_t np = 0;
    bool taken[MAX_RECENT] = {0};
    for (size_t r = 0; r < RECENT_FILES; r++) {
        int best = -1;
        for (size_t i = 0; i < b->c->n_rec; i++) {
            if (taken[i] || (b->path && !strcmp(b->c->rec[i].path, b->path))) continue;
            if (b->c->ix && !lode_index_contains(b->c->ix, b->c->rec[i].path)) continue;
            if (best < 0 || b->c->rec[i].seq > b->c->rec[best].seq) best = (int)i;
        }
        if (best < 0) break;
        taken[best] = true;
        pick[np++] = b->c->rec[best];
    }
    if (!np) return 0;
    qsort(pick, np, sizeof *pick, recent_cmp);
    size_t used = 0, each = cap / np;
    for (size_t i = 0; i < np; i++) {
        size_t len;
        const char *t = file_text(b, pick[i].path, &len);
        const lode_lang *fl = lode_lang_for_path(pick[i].path);
        size_t h = header_tokens(b, pick[i].path, fl);
        if (!t || !len || h + 16 > each) continue;
        size_t want = EST_BYTES(each - h); /* bytes, centred on the edit, whole lines */
        size_t at = pick[i].at > len ? len : pick[i].at;
        size_t a = at > want / 2 ? line_start(t, at - want / 2) : 0;
        size_t e = line_end(t, len, a + want < len ? a + want : len);
        if (e > len) e = len;
        while (e > a && lode_ctx_count(b->c, t + a, e - a) + h > each) { /* shrink by lines from the end */
            size_t k = e - 1;
            while (k > a && t[k - 1] != '\n') k--;
            e = k;
        }
        if (e <= a) continue;
        lode_buf o = {0};
        add_header(&o, b->c, pick[i].path, fl);
        lode_buf_add(&o, t + a, e - a);
        if (t[e - 1] != '\n') lode_buf_str(&o, "\n");
        lode_buf_str(&o, "\n");
        size_t tl;
        char *txt = lode_buf_take(&o, &tl);
        size_t tk = lode_ctx_count(b->c, txt, tl);
        used += tk;
        push_section(p, LODE_CTX_RECENT, rel_path(b->c, pick[i].path), txt, tl, tk, 0);
    }
    return used;
}

/* Identifiers around the cursor, nearest first, without the word being typed. */
static size_t cursor_refs(build *b, const TSTree *tree, char ***out) {
    const char *t = b->in->text;
    size_t len = b->in->len, cur = b->in->cursor;
    size_t ws = cur, we = cur;
    while (ws > 0 && word_ch((unsigned char)t[ws - 1])) ws--;
    while (we < len && word_ch((unsigned char)t[we])) we++;
    /* tiers: the cursor line, then ±3, ±12 lines, then the windows */
    static const int up[] = {0, 3, 12, 40}, down[] = {0, 3, 12, 12};
    char **names = NULL;
    size_t n = 0;
    size_t lo_prev = ws, hi_prev = we;
    for (size_t tier = 0; tier < 4 && n < MAX_REFS; tier++) {
        size_t lo = line_start(t, ws), hi = line_end(t, len, we);
        for (int k = 0; k < up[tier] && lo > 0; k++) lo = line_start(t, lo - 1);
        for (int k = 0; k < down[tier] && hi < len; k++) hi = line_end(t, len, hi);
        if (lo < b->win_start) lo = b->win_start;
        if (hi > b->win_end) hi = b->win_end;
        size_t ranges[2][2] = {{lo, lo_prev}, {hi_prev, hi}};
        for (int r = 0; r < 2; r++) {
            if (ranges[r][0] >= ranges[r][1]) continue;
            char **nm = NULL;
            size_t k = lode_syntax_refs(b->lang, tree, t, (uint32_t)ranges[r][0], (uint32_t)ranges[r][1], &nm);
            /* the lower range: nearest first means last first */
            for (size_t q = 0; q < k; q++) {
                size_t idx = r == 0 ? k - 1 - q : q;
                bool dup = false;
                for (size_t z = 0; z < n && !dup; z++) dup = !strcmp(names[z], nm[idx]);
                if (dup || n >= MAX_REFS) continue;
                names = lode_xrealloc(names, (n + 1) * sizeof *names);
                names[n++] = lode_xstrdup(nm[idx]);
            }
            lode_syntax_refs_free(nm, k);
        }
        if (lo < lo_prev) lo_prev = lo;
        if (hi > hi_prev) hi_prev = hi;
    }
    *out = names;
    return n;
}

static bool is_imported(build *b, const char *path) {
    for (size_t i = 0; i < b->n_direct; i++)
        if (!strcmp(b->imported[i], path)) return true;
    return false;
}

static size_t dir_len(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? (size_t)(s - p) : 0;
}

typedef struct cand {
    lode_def d;
    int score;
} cand;

/* DEFINITION: signatures in rank order, then bodies in rank order. */
static size_t do_defs(build *b, lode_ctx_prompt *p, const TSTree *tree, size_t cap) {
    if (!b->lang || !tree) return 0;
    char **names = NULL;
    size_t nn = cursor_refs(b, tree, &names);
    item *it = NULL;
    size_t ni = 0, used = 0;
    /* chosen[i]: the best definition of names[i] (for the body pass) */
    cand *chosen = nn ? lode_xcalloc(nn, sizeof *chosen) : NULL;
    bool *have = nn ? lode_xcalloc(nn, sizeof *have) : NULL;
    const char *cur = b->path ? b->path : "";
    for (size_t i = 0; i < nn; i++) {
        /* defined in the current file inside the windows: visible already */
        bool visible = false;
        cand best = {{0}, 99}, best_body = {{0}, 99};
        if (b->cur)
            for (size_t k = 0; k < b->cur->n_syms; k++) {
                const lode_sym *s = &b->cur->syms[k];
                if (strcmp(s->name, names[i])) continue;
                if (s->start >= b->win_start && s->start < b->win_end) {
                    visible = true;
                    break;
                }
                cand cd = {{cur, s, b->lang}, 0};
                if (cd.score < best.score) best = cd;
                if (s->sig_end < s->end && cd.score < best_body.score) best_body = cd;
            }
        if (visible) continue;
        lode_def defs[MAX_CANDS];
        size_t nd = b->c->ix ? lode_index_lookup(b->c->ix, names[i], defs, MAX_CANDS) : 0;
        if (nd > MAX_CANDS) nd = MAX_CANDS;
        for (size_t k = 0; k < nd; k++) {
            if (!strcmp(defs[k].path, cur)) continue; /* the index's copy of this file may be stale */
            if (defs[k].sym->kind == LODE_SYM_MODULE) continue;
            int sc = is_imported(b, defs[k].path) ? 1
                     : (dir_len(defs[k].path) == dir_len(cur) && !strncmp(defs[k].path, cur, dir_len(cur))) ? 2
                                                                                                           : 3;
            if (defs[k].lang != b->lang) sc += 2; /* another language: less likely what is meant */
            cand cd = {defs[k], sc};
            if (cd.score < best.score) best = cd;
            if (defs[k].sym->sig_end < defs[k].sym->end && cd.score < best_body.score) best_body = cd;
        }
        if (best.score == 99) continue;
        have[i] = true;
        chosen[i] = best_body.score < 99 ? best_body : best;
        struct seen *sn = seen_find(b, best.d.path, best.d.sym->start);
        if (sn) continue; /* already in an import outline */
        size_t tk = sig_tokens(b, best.d.path, best.d.lang, best.d.sym);
        bool new_file = true;
        for (size_t k = 0; k < ni && new_file; k++) new_file = strcmp(it[k].path, best.d.path) != 0;
        if (new_file && tk != SIZE_MAX) tk += header_tokens(b, best.d.path, best.d.lang);
        if (tk == SIZE_MAX || used + tk > cap) continue;
        used += tk;
        it = lode_xrealloc(it, (ni + 1) * sizeof *it);
        it[ni] = (item){best.d.path, best.d.lang, best.d.sym, false, tk, ni};
        ni++;
        seen_add(b, best.d.path, best.d.sym->start, false, best.d.sym->name);
    }
    /* bodies, nearest identifier first, each at most a quarter of the cap */
    for (size_t i = 0; i < nn; i++) {
        if (!have[i]) continue;
        cand *cd = &chosen[i];
        if (cd->d.sym->sig_end >= cd->d.sym->end) continue;
        struct seen *sn = seen_find(b, cd->d.path, cd->d.sym->start);
        if (sn && sn->body) continue;
        size_t bt = body_tokens(b, cd->d.path, cd->d.sym);
        if (bt == SIZE_MAX || bt > cap / 4) continue;
        /* replace its signature item when there is one */
        size_t old = 0;
        item *same = NULL;
        for (size_t k = 0; k < ni; k++)
            if (it[k].sym == cd->d.sym) same = &it[k];
        if (same) old = same->tokens;
        bool new_file = !same;
        for (size_t k = 0; k < ni && new_file; k++) new_file = strcmp(it[k].path, cd->d.path) != 0;
        if (new_file) bt += header_tokens(b, cd->d.path, cd->d.lang);
        if (used - old + bt > cap) continue;
        used = used - old + bt;
        if (same) {
            same->body = true;
            same->tokens = bt;
        } else {
            it = lode_xrealloc(it, (ni + 1) * sizeof *it);
            it[ni] = (item){cd->d.path, cd->d.lang, cd->d.sym, true, bt, ni};
            ni++;
        }
        seen_add(b, cd->d.path, cd->d.sym->start, true, cd->d.sym->name);
    }
    size_t real = ni ? emit_items(b, p, LODE_CTX_DEFINITION, it, ni) : 0;
    lode_free(it);
    lode_free(chosen);
    lode_free(have);
    lode_syntax_refs_free(names, nn);
    return real;
}

static size_t count_window(lode_ctx *c, const char *s, size_t n);

#define SHIFT_MAX_BYTES 256 /* an edit this small inside a function body shifts the symbols */
#define SHIFT_MAX_EDITS 256  /* re-extract at least this often */

static void shift_u32(uint32_t *v, size_t at, size_t old_end, ptrdiff_t d) {
    if (*v >= old_end) *v = (uint32_t)((ptrdiff_t)*v + d);
    else if (*v > at) *v = (uint32_t)at; /* inside the replaced bytes */
}

/* The current file's symbols. Extracting them walks the whole tree (ms on a
 * large file), so after a small edit that touches no definition's name and
 * no import, on a line with no import-like word, the previous symbols are
 * shifted instead: a definition such an edit creates or removes lies at the
 * cursor, inside the prefix window, where the prompt does not use the
 * symbols (definitions in the window are already visible). Anything else,
 * and every SHIFT_MAX_EDITS edits, extracts again. */
static const lode_file_syms *current_syms(lode_ctx *c, const lode_ctx_input *in, const lode_lang *lang,
                                          const TSTree *tree) {
    const char *t = in->text;
    size_t len = in->len;
    bool same_doc = c->syms_hash && c->syms_lang == lang &&
                    ((!in->path && !c->syms_path) || (in->path && c->syms_path && !strcmp(in->path, c->syms_path)));
    if (same_doc && c->syms_len == len && !memcmp(c->syms_text, t, len)) return &c->syms;
    if (same_doc && c->syms_shifts < SHIFT_MAX_EDITS) {
        size_t ol = c->syms_len, p = 0, q = 0;
        size_t m = ol < len ? ol : len;
        while (p < m && c->syms_text[p] == t[p]) p++;
        while (q < m - p && c->syms_text[ol - 1 - q] == t[len - 1 - q]) q++;
        size_t old_end = ol - q, new_end = len - q;
        bool small = old_end - p + new_end - p <= SHIFT_MAX_BYTES;
        /* touching no name and no import, on a line that does not look like one */
        bool inside = small;
        for (size_t i = 0; small && i < c->syms.n_syms; i++) {
            const lode_sym *s = &c->syms.syms[i];
            size_t ne = s->name_start + strlen(s->name);
            if (p <= ne && old_end >= s->name_start) small = false;
        }
        for (size_t i = 0; small && i < c->syms.n_imports; i++)
            if (p <= c->syms.imports[i].end && old_end >= c->syms.imports[i].start) small = false;
        if (small) { /* an import being written: extract again */
            size_t a = line_start(t, p), e = new_end;
            while (e < len && t[e] != '\n') e++;
            size_t fb = first_nonblank(t, e, a);
            static const char *lead[] = {"#include", "#import", "import", "from ", "use ", "pub use", "mod ", "pub mod", "package",
                                         "require", "load", "source ", "extern crate", "using "};
            for (size_t k = 0; k < sizeof lead / sizeof lead[0] && inside; k++)
                if (e - fb >= strlen(lead[k]) && !memcmp(t + fb, lead[k], strlen(lead[k]))) inside = false;
            if (memmem(t + a, e - a, "require(", 8) || memmem(t + a, e - a, "import(", 7)) inside = false;
        }
        if (small && inside) {
            ptrdiff_t d = (ptrdiff_t)new_end - (ptrdiff_t)old_end;
            for (size_t i = 0; i < c->syms.n_syms; i++) {
                lode_sym *s = &c->syms.syms[i];
                shift_u32(&s->start, p, old_end, d);
                shift_u32(&s->end, p, old_end, d);
                if (s->end < s->start) s->end = s->start;
                if (s->sig_end != s->end || s->sig_end >= old_end) shift_u32(&s->sig_end, p, old_end, d);
                shift_u32(&s->name_start, p, old_end, d);
            }
            for (size_t i = 0; i < c->syms.n_imports; i++) {
                shift_u32(&c->syms.imports[i].start, p, old_end, d);
                shift_u32(&c->syms.imports[i].end, p, old_end, d);
            }
            c->syms_text = lode_xrealloc(c->syms_text, len + 1);
            memcpy(c->syms_text, t, len);
            c->syms_text[len] = 0;
            c->syms_len = len;
            c->syms_shifts++;
            return &c->syms;
        }
    }
    lode_error e = {0};
    if (c->tok && !same_doc) count_window(c, t, len); /* a new document: its chunks, so cursor jumps recount little */
    lode_free((char *)c->syms_path);
    c->syms_path = in->path ? lode_xstrdup(in->path) : NULL;
    c->syms_shifts = 0;
    lode_file_syms_clear(&c->syms); /* lode_syntax_symbols overwrites without freeing */
    if (lode_syntax_symbols(lang, t, len, tree, &c->syms, &e) != LODE_OK) {
        lode_file_syms_clear(&c->syms);
        c->syms_hash = 0;
        return NULL;
    }
    c->syms_hash = 1;
    c->syms_len = len;
    c->syms_lang = lang;
    c->syms_text = lode_xrealloc(c->syms_text, len + 1);
    memcpy(c->syms_text, t, len);
    c->syms_text[len] = 0;
    return &c->syms;
}

/* Tokens of a window: summed over chunks, each counted (and cached) alone.
 * Chunks end at line ends chosen by content (a line whose hash has its low
 * 4 bits clear, or 2 KiB at most), so they stay the same when the window
 * start moves or text changes elsewhere: a keystroke recounts one chunk,
 * a jump to a region seen before recounts none. Splitting at line starts
 * can only add tokens (a "\n" is not merged with the next line's
 * indentation), never hide any, so the budget holds. */
static size_t count_window(lode_ctx *c, const char *s, size_t n) {
    if (!c->tok) return lode_ctx_count(c, s, n);
    size_t total = 0, a = 0, ls = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\n') continue;
        bool cut = i + 1 - a >= 2048 || (hash_bytes(s + ls, i + 1 - ls) & 15) == 0;
        ls = i + 1;
        if (cut) {
            total += lode_ctx_count(c, s + a, i + 1 - a);
            a = i + 1;
        }
    }
    if (a < n) total += lode_ctx_count(c, s + a, n - a);
    return total;
}

/* Replace every byte that is not part of a valid UTF-8 sequence with '?'
 * (same length, so offsets hold): files may be Latin-1 or binary-ish, and
 * the prompt goes into JSON. */
static void utf8_fix(char *s, size_t n) {
    unsigned char *u = (unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c0 = u[i];
        size_t k = c0 < 0x80 ? 1 : (c0 >> 5) == 6 ? 2 : (c0 >> 4) == 14 ? 3 : (c0 >> 3) == 30 ? 4 : 0;
        bool ok = k > 0 && i + k <= n;
        for (size_t j = 1; ok && j < k; j++) ok = (u[i + j] & 0xC0) == 0x80;
        if (ok && k > 1) { /* overlong, surrogates, past U+10FFFF */
            uint32_t cp = k == 2 ? (uint32_t)(c0 & 0x1F) << 6 | (u[i + 1] & 0x3F)
                          : k == 3 ? (uint32_t)(c0 & 0x0F) << 12 | (uint32_t)(u[i + 1] & 0x3F) << 6 | (u[i + 2] & 0x3F)
                                   : (uint32_t)(c0 & 0x07) << 18 | (uint32_t)(u[i + 1] & 0x3F) << 12 |
                                         (uint32_t)(u[i + 2] & 0x3F) << 6 | (u[i + 3] & 0x3F);
            ok = (k == 2 && cp >= 0x80) || (k == 3 && cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) ||
                 (k == 4 && cp >= 0x10000 && cp <= 0x10FFFF);
        }
        if (!ok || !c0) {
            u[i++] = '?';
            continue;
        }
        i += k;
    }
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

lode_status lode_ctx_build(lode_ctx *c, const lode_ctx_input *in0, lode_ctx_prompt *out, lode_error *err) {
    memset(out, 0, sizeof *out);
    if (!in0 || (!in0->text && in0->len)) return lode_error_set(err, LODE_ERR_INVALID_ARG, "context: no text");
    lode_ctx_input in = *in0;
    if (!in.text) in.text = "";
    if (in.cursor > in.len) in.cursor = in.len;
    while (in.cursor > 0 && in.cursor < in.len && is_cont((unsigned char)in.text[in.cursor])) in.cursor--;
    size_t B = in.budget ? in.budget : LODE_CTX_DEFAULT_BUDGET;
    if (B < LODE_CTX_MIN_BUDGET) B = LODE_CTX_MIN_BUDGET;
    if (B > LODE_CTX_MAX_BUDGET) B = LODE_CTX_MAX_BUDGET;
    const lode_lang *lang = in.lang ? in.lang : in.path ? lode_lang_for_path(in.path) : NULL;
    const TSTree *tree = in.tree;
    TSTree *own = NULL;
    if (lang && !tree) tree = own = lode_syntax_parse(lang, in.text, in.len);
    if (!tree) lang = NULL;
    texts_check(c);
    build b = {.c = c, .in = &in, .lang = lang, .path = in.path};
    if (lang) b.cur = current_syms(c, &in, lang, tree);
    const char *t = in.text;
    size_t cur = in.cursor, len = in.len;
    /* windows */
    size_t Pmax = B * 3 / 8, Smax = B / 8, q = B / 16 ? B / 16 : 1;
    lode_buf hdr = {0};
    add_header(&hdr, c, in.path, lang);
    size_t htok = lode_ctx_count(c, hdr.p, hdr.n);
    size_t pbud = Pmax > htok ? Pmax - htok : 0;
    size_t pb = EST_BYTES(pbud), grid = pb / 4 ? pb / 4 : 1;
    size_t g = cur > pb ? (cur - pb + grid - 1) / grid * grid : 0;
    size_t a = prefix_cut(tree, t, len, g, cur);
    size_t ptok = count_window(c, t + a, cur - a);
    while (ptok > pbud && a < cur) { /* only with a tokenizer: the estimate was too generous */
        g += grid;
        if (g > cur) g = cur;
        a = prefix_cut(tree, t, len, g, cur);
        ptok = count_window(c, t + a, cur - a);
    }
    size_t sb_ = EST_BYTES(Smax);
    size_t e = suffix_cut(tree, t, len, cur, len - cur > sb_ ? cur + sb_ : len);
    size_t stok = count_window(c, t + cur, e - cur);
    while (stok > Smax && e > cur) {
        size_t k = e - 1;
        while (k > cur && t[k - 1] != '\n') k--;
        e = k;
        stok = count_window(c, t + cur, e - cur);
    }
    b.win_start = a;
    b.win_end = e;
    /* the project context's budget: fixed share + the windows' leftovers on a grid */
    size_t fixed = 4 + Pmax + Smax;
    size_t ctx_budget = B > fixed ? B - fixed : 0;
    size_t left = (pbud - (ptok < pbud ? ptok : pbud)) + (Smax - (stok < Smax ? stok : Smax));
    ctx_budget += left / q * q;
    if (lang && (c->ix || (b.cur && b.cur->n_syms))) {
        size_t u_imp = do_imports(&b, out, ctx_budget * 30 / 100);
        size_t rest = ctx_budget > u_imp ? ctx_budget - u_imp : 0;
        size_t u_rec = do_recent(&b, out, ctx_budget * 15 / 100 < rest ? ctx_budget * 15 / 100 : rest);
        rest = rest > u_rec ? rest - u_rec : 0;
        size_t u_def = do_defs(&b, out, tree, rest);
        outline_more(&b, out, rest > u_def ? rest - u_def : 0);
    } else if (c->ix == NULL && c->n_rec) {
        do_recent(&b, out, ctx_budget * 15 / 100);
    }
    /* the current file */
    lode_buf f = {0};
    lode_buf_add(&f, hdr.p, hdr.n);
    lode_free(hdr.p);
    lode_buf_add(&f, t + a, cur - a);
    size_t fl;
    char *ftxt = lode_buf_take(&f, &fl);
    push_section(out, LODE_CTX_FILE, rel_path(c, in.path), ftxt, fl, htok + ptok, 0);
    push_section(out, LODE_CTX_SUFFIX, rel_path(c, in.path), lode_xstrndup(t + cur, e - cur), e - cur, stok, 0);
    /* assemble (valid UTF-8, no NUL: it goes into JSON) */
    for (size_t i = 0; i < out->n_sections; i++) {
        utf8_fix(out->sections[i].text, out->sections[i].len);
        utf8_fix(out->sections[i].path, strlen(out->sections[i].path));
    }
    lode_buf pre = {0};
    size_t total = 4;
    for (size_t i = 0; i < out->n_sections; i++) {
        total += out->sections[i].tokens;
        if (out->sections[i].kind != LODE_CTX_SUFFIX) lode_buf_add(&pre, out->sections[i].text, out->sections[i].len);
    }
    out->prefix = lode_buf_take(&pre, &out->prefix_len);
    out->suffix = lode_xstrndup(t + cur, e - cur);
    out->suffix_len = e - cur;
    utf8_fix(out->suffix, out->suffix_len);
    out->tokens = total;
    out->budget = B;
    out->exact = c->tok != NULL;
    out->win_start = a;
    out->win_end = e;
    if (b.n_defs) qsort(b.defs, b.n_defs, sizeof *b.defs, str_cmp);
    out->defs = b.defs;
    out->n_defs = b.n_defs;
    lode_free(b.seen);
    lode_free(b.seen_tab);
    lode_free(b.imported);
    if (own) ts_tree_delete(own);
    return LODE_OK;
}
