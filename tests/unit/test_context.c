/*
 * test_context.c — prompt assembly (lode_ctx_build) on a small generated
 * project: determinism, the token budget, stable-first (typing at the
 * cursor changes only the tail), cross-file definitions and import
 * declarations in the prompt, path headers, syntactic cuts; and the golden
 * post-processing cases in tests/fixtures/postprocess/ (a source file with
 * a <CURSOR> marker, the raw model output NAME.gen, the expected insertion
 * NAME.want), in several languages.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lode_context.h"

#define FIX "tests/fixtures/postprocess/"
#define VOCAB "../shared/data/vocab/ggml-vocab-deepseek-coder.gguf"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    cr_assert(fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

static void put(const char *dir, const char *name, const char *text) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    char *s = strrchr(p, '/');
    *s = 0;
    mkdir(p, 0755);
    *s = '/';
    FILE *f = fopen(p, "wb");
    cr_assert(f, "cannot write %s", p);
    fputs(text, f);
    fclose(f);
}

static void rm_rf(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert(system(cmd) == 0);
}

/* ---- a small project --------------------------------------------------------------- */
static char g_dir[256];
static lode_index *g_ix;

static const char *k_util_h =
    "#ifndef UTIL_H\n#define UTIL_H\n#include <stddef.h>\n\n"
    "/* Adler-style checksum of n bytes. */\n"
    "unsigned compute_checksum(const char *buf, size_t n);\n"
    "int parse_port(const char *s, int fallback);\n"
    "#define UTIL_MAX_PORT 65535\n\n#endif\n";
static const char *k_util_c =
    "#include \"util.h\"\n#include <stdlib.h>\n\n"
    "unsigned compute_checksum(const char *buf, size_t n) {\n"
    "    unsigned a = 1, b = 0;\n    for (size_t i = 0; i < n; i++) {\n        a = (a + (unsigned char)buf[i]) % 65521;\n"
    "        b = (b + a) % 65521;\n    }\n    return (b << 16) | a;\n}\n\n"
    "int parse_port(const char *s, int fallback) {\n    char *end;\n    long v = strtol(s, &end, 10);\n"
    "    return *end || v <= 0 || v > UTIL_MAX_PORT ? fallback : (int)v;\n}\n";
static const char *k_wire_c =
    "#include <string.h>\n\n"
    "typedef struct frame {\n    unsigned len;\n    const char *data;\n} frame;\n\n"
    "int frame_valid(const frame *f) {\n    return f && f->data && f->len > 0;\n}\n";
static const char *k_helpers_py =
    "import re\n\n\ndef normalize_name(s):\n    \"\"\"Lower-case, dashes for runs of other characters.\"\"\"\n"
    "    return re.sub(r\"[^a-z0-9]+\", \"-\", s.lower()).strip(\"-\")\n\n\n"
    "class Registry:\n    def __init__(self):\n        self.items = {}\n\n    def add(self, name, value):\n"
    "        self.items[normalize_name(name)] = value\n";

static char *main_c(size_t pad_fns) {
    /* main.c: includes util.h, defines pad_fns filler functions, then main() calling compute_checksum */
    size_t cap = 4096 + pad_fns * 200, n = 0;
    char *s = malloc(cap);
    n += (size_t)snprintf(s + n, cap - n, "#include <stdio.h>\n#include \"util.h\"\n\n");
    for (size_t i = 0; i < pad_fns; i++)
        n += (size_t)snprintf(s + n, cap - n, "static int fill_%zu(int x) {\n    int y = x * %zu;\n    return y + 1;\n}\n\n", i, i + 3);
    n += (size_t)snprintf(s + n, cap - n,
                          "int main(int argc, char **argv) {\n    const char *msg = argc > 1 ? argv[1] : \"hello\";\n"
                          "    unsigned sum = compute_checksum(msg, 5);\n    int port = parse_port(\"8080\", 80);\n"
                          "    printf(\"%%u %%d\\n\", sum, port);\n    /*CURSOR*/\n    return 0;\n}\n");
    return s;
}

static void setup_project(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/lode-ctx-test-XXXXXX");
    cr_assert(mkdtemp(g_dir));
    put(g_dir, "src/util.h", k_util_h);
    put(g_dir, "src/util.c", k_util_c);
    put(g_dir, "src/wire.c", k_wire_c);
    put(g_dir, "pkg/__init__.py", "");
    put(g_dir, "pkg/helpers.py", k_helpers_py);
    put(g_dir, "app.py",
        "from pkg.helpers import normalize_name, Registry\n\n\ndef main(args):\n    reg = Registry()\n"
        "    for a in args:\n        key = normalize_name(a)\n        reg.add(key, len(a))\n        \n    return reg\n");
    char *m = main_c(40);
    put(g_dir, "src/main.c", m);
    free(m);
    const char *roots[1] = {g_dir};
    lode_index_opts o = {.cache_dir = "", .no_watch = true};
    lode_error e = {0};
    g_ix = lode_index_open(roots, 1, &o, &e);
    cr_assert(g_ix, "%s", e.text);
    cr_assert_eq(lode_index_scan(g_ix, &e), LODE_OK, "%s", e.text);
}

static void teardown_project(void) {
    lode_index_free(g_ix);
    g_ix = NULL;
    rm_rf(g_dir);
}

typedef struct doc {
    char path[512];
    char *text;
    size_t len, cursor;
} doc;

/* The file with its cursor at the marker (removed), or at `at` text's end. */
static void load_doc(doc *d, const char *rel, const char *marker) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", g_dir, rel);
    char *rp = realpath(p, NULL);
    cr_assert(rp);
    snprintf(d->path, sizeof d->path, "%s", rp);
    free(rp);
    d->text = slurp(d->path, &d->len);
    cr_assert(d->text);
    char *m = strstr(d->text, marker);
    cr_assert(m, "no marker %s in %s", marker, rel);
    d->cursor = (size_t)(m - d->text);
    size_t ml = strlen(marker);
    memmove(m, m + ml, d->len - d->cursor - ml + 1);
    d->len -= ml;
}

static void build(lode_ctx *c, const doc *d, size_t budget, lode_ctx_prompt *p) {
    lode_ctx_input in = {d->path, NULL, d->text, d->len, d->cursor, NULL, budget};
    lode_error e = {0};
    cr_assert_eq(lode_ctx_build(c, &in, p, &e), LODE_OK, "%s", e.text);
}

static size_t est(size_t n) { return (n * 2 + 4) / 5; } /* ceil(n / 2.5) */

TestSuite(context, .init = setup_project, .fini = teardown_project);

Test(context, deterministic) {
    doc d;
    load_doc(&d, "src/main.c", "/*CURSOR*/");
    const char *roots[1] = {g_dir};
    lode_ctx *c1 = lode_ctx_new(g_ix, roots, 1, NULL), *c2 = lode_ctx_new(g_ix, roots, 1, NULL);
    lode_ctx_prompt a, b, x;
    build(c1, &d, 2048, &a);
    build(c1, &d, 2048, &b); /* same builder, caches warm */
    build(c2, &d, 2048, &x); /* a fresh builder */
    cr_assert_eq(a.prefix_len, b.prefix_len);
    cr_assert(!memcmp(a.prefix, b.prefix, a.prefix_len));
    cr_assert_eq(a.prefix_len, x.prefix_len);
    cr_assert(!memcmp(a.prefix, x.prefix, a.prefix_len));
    cr_assert_str_eq(a.suffix, x.suffix);
    cr_assert_eq(a.n_sections, x.n_sections);
    lode_ctx_prompt_clear(&a);
    lode_ctx_prompt_clear(&b);
    lode_ctx_prompt_clear(&x);
    lode_ctx_free(c1);
    lode_ctx_free(c2);
    free(d.text);
}

Test(context, cross_file_definitions_and_headers) {
    doc d;
    load_doc(&d, "src/main.c", "/*CURSOR*/");
    const char *roots[1] = {g_dir};
    lode_ctx *c = lode_ctx_new(g_ix, roots, 1, NULL);
    lode_ctx_prompt p;
    build(c, &d, 4096, &p);
    /* the included header's declarations, headed by its path */
    cr_assert(strstr(p.prefix, "// src/util.h\n"), "%s", p.prefix);
    cr_assert(strstr(p.prefix, "unsigned compute_checksum(const char *buf, size_t n);"));
    cr_assert(strstr(p.prefix, "int parse_port(const char *s, int fallback);"));
    /* the definition in another file, body included (the budget allows it) */
    char util_c[600];
    snprintf(util_c, sizeof util_c, "%s/src/util.c", g_dir);
    char *rp = realpath(util_c, NULL);
    cr_assert(lode_ctx_prompt_has_def(&p, NULL, "compute_checksum"));
    cr_assert(lode_ctx_prompt_has_def(&p, rp, "compute_checksum") || strstr(p.prefix, "// src/util.c\n"),
              "%s", p.prefix);
    free(rp);
    /* an unrelated file's definition is not there */
    cr_assert(!strstr(p.prefix, "frame_valid"));
    /* the current file comes last, headed by its path, and ends at the cursor */
    cr_assert_eq(p.sections[p.n_sections - 2].kind, LODE_CTX_FILE);
    cr_assert_eq(p.sections[p.n_sections - 1].kind, LODE_CTX_SUFFIX);
    cr_assert(!strncmp(p.sections[p.n_sections - 2].text, "// src/main.c\n", 14));
    cr_assert(p.prefix_len >= d.cursor - p.win_start);
    cr_assert(!memcmp(p.prefix + p.prefix_len - (d.cursor - p.win_start), d.text + p.win_start, d.cursor - p.win_start));
    /* sections in the stable-first order: imports, recent, definitions (then what the definitions left to
     * more import outlines), the current file */
    cr_assert_eq(p.sections[0].kind, LODE_CTX_IMPORT);
    bool defs_seen = false;
    for (size_t i = 1; i + 2 < p.n_sections; i++) {
        if (p.sections[i].kind == LODE_CTX_DEFINITION) defs_seen = true;
        else if (defs_seen) cr_assert_eq(p.sections[i].kind, LODE_CTX_IMPORT);
        else cr_assert_leq(p.sections[i - 1].kind, p.sections[i].kind);
    }
    lode_ctx_prompt_clear(&p);
    /* Python: from pkg.helpers import ...: the module's outline, "# path" headers */
    doc py;
    char app[600];
    snprintf(app, sizeof app, "%s/app.py", g_dir);
    char *ap = realpath(app, NULL);
    cr_assert(ap);
    snprintf(py.path, sizeof py.path, "%s", ap);
    free(ap);
    py.text = slurp(py.path, &py.len);
    py.cursor = (size_t)(strstr(py.text, "\n    return reg") - py.text); /* end of the blank line in the loop */
    build(c, &py, 4096, &p);
    cr_assert(strstr(p.prefix, "# pkg/helpers.py\n"), "%s", p.prefix);
    cr_assert(strstr(p.prefix, "def normalize_name(s)"));
    cr_assert(lode_ctx_prompt_has_def(&p, NULL, "normalize_name"));
    cr_assert(strstr(p.prefix, "# app.py\n"));
    lode_ctx_prompt_clear(&p);
    lode_ctx_free(c);
    free(d.text);
    free(py.text);
}

static void check_budget(lode_ctx *c, const doc *d, const lode_tok *tok) {
    static const size_t budgets[] = {64, 128, 256, 512, 1024, 2048, 4096};
    for (size_t i = 0; i < sizeof budgets / sizeof budgets[0]; i++) {
        lode_ctx_prompt p;
        build(c, d, budgets[i], &p);
        cr_assert_leq(p.tokens, budgets[i], "budget %zu: %zu tokens", budgets[i], p.tokens);
        size_t real;
        if (tok) { /* the real prompt, markers and BOS included */
            int32_t *ids = NULL;
            lode_error e = {0};
            cr_assert_eq(lode_tok_fim_prompt(tok, p.prefix, p.prefix_len, p.suffix, p.suffix_len, &ids, &real, &e),
                         LODE_OK, "%s", e.text);
            lode_free(ids);
        } else {
            real = 4 + est(p.prefix_len) + est(p.suffix_len);
        }
        cr_assert_leq(real, budgets[i], "budget %zu: the prompt has %zu tokens", budgets[i], real);
        /* a large budget is used, not wasted: the whole small project fits */
        if (budgets[i] == 4096) cr_assert(strstr(p.prefix, "compute_checksum"));
        lode_ctx_prompt_clear(&p);
    }
}

Test(context, budget_estimated) {
    doc d;
    load_doc(&d, "src/main.c", "/*CURSOR*/");
    const char *roots[1] = {g_dir};
    lode_ctx *c = lode_ctx_new(g_ix, roots, 1, NULL);
    check_budget(c, &d, NULL);
    lode_ctx_free(c);
    free(d.text);
}

Test(context, budget_counted_with_tokenizer) {
    if (access(VOCAB, R_OK)) cr_skip_test("no DeepSeek-Coder vocabulary at %s", VOCAB);
    lode_tok *tok = NULL;
    lode_error e = {0};
    cr_assert_eq(lode_tok_load(VOCAB, &tok, &e), LODE_OK, "%s", e.text);
    doc d;
    load_doc(&d, "src/main.c", "/*CURSOR*/");
    const char *roots[1] = {g_dir};
    lode_ctx *c = lode_ctx_new(g_ix, roots, 1, tok);
    check_budget(c, &d, tok);
    lode_ctx_prompt p;
    build(c, &d, 1024, &p);
    cr_assert(p.exact);
    lode_ctx_prompt_clear(&p);
    lode_ctx_free(c);
    lode_tok_free(tok);
    free(d.text);
}

static size_t common_prefix(const char *a, size_t an, const char *b, size_t bn) {
    size_t i = 0;
    while (i < an && i < bn && a[i] == b[i]) i++;
    return i;
}

Test(context, stable_first_while_typing) {
    doc d;
    load_doc(&d, "src/main.c", "/*CURSOR*/");
    const char *roots[1] = {g_dir};
    lode_ctx *c = lode_ctx_new(g_ix, roots, 1, NULL);
    const char *typed = "fprintf(stderr, \"%u\\n\", sum + port);";
    lode_ctx_prompt prev;
    build(c, &d, 2048, &prev);
    size_t min_share = SIZE_MAX;
    for (size_t k = 0; typed[k]; k++) {
        /* type one character at the cursor */
        d.text = realloc(d.text, d.len + 2);
        memmove(d.text + d.cursor + 1, d.text + d.cursor, d.len - d.cursor + 1);
        d.text[d.cursor++] = typed[k];
        d.len++;
        lode_ctx_prompt p;
        build(c, &d, 2048, &p);
        size_t cp = common_prefix(prev.prefix, prev.prefix_len, p.prefix, p.prefix_len);
        /* everything before the cursor stays: the new prefix is the old one plus the typed character */
        cr_assert_eq(cp, prev.prefix_len, "keystroke %zu changed the prompt at byte %zu of %zu", k, cp, prev.prefix_len);
        cr_assert_eq(p.prefix_len, prev.prefix_len + 1);
        size_t share = cp * 100 / p.prefix_len;
        if (share < min_share) min_share = share;
        lode_ctx_prompt_clear(&prev);
        prev = p;
    }
    cr_assert_geq(min_share, 95);
    lode_ctx_prompt_clear(&prev);
    lode_ctx_free(c);
    free(d.text);
}

Test(context, syntactic_cuts) {
    doc d;
    load_doc(&d, "src/main.c", "/*CURSOR*/");
    const char *roots[1] = {g_dir};
    lode_ctx *c = lode_ctx_new(g_ix, roots, 1, NULL);
    lode_ctx_prompt p;
    build(c, &d, 512, &p); /* far smaller than the file */
    cr_assert_gt(p.win_start, 0);
    cr_assert_eq(d.text[p.win_start - 1], '\n');
    /* the window starts where a declaration starts: a filler function's first line */
    cr_assert(!strncmp(d.text + p.win_start, "static int fill_", 16) || !strncmp(d.text + p.win_start, "int main", 8),
              "window starts with: %.40s", d.text + p.win_start);
    /* and the suffix ends at a line end */
    cr_assert(p.win_end == d.len || d.text[p.win_end - 1] == '\n');
    lode_ctx_prompt_clear(&p);
    lode_ctx_free(c);
    free(d.text);
}

Test(context, no_index_no_language) {
    /* no index, unknown language: plain windows with a header */
    lode_ctx *c = lode_ctx_new(NULL, NULL, 0, NULL);
    const char *t = "some notes\nmore notes\n";
    lode_ctx_input in = {"/nowhere/notes.txt", NULL, t, strlen(t), 11, NULL, 0};
    lode_ctx_prompt p;
    lode_error e = {0};
    cr_assert_eq(lode_ctx_build(c, &in, &p, &e), LODE_OK);
    cr_assert_str_eq(p.prefix, "// /nowhere/notes.txt\nsome notes\n");
    cr_assert_str_eq(p.suffix, "more notes\n");
    cr_assert_eq(p.budget, LODE_CTX_DEFAULT_BUDGET);
    lode_ctx_prompt_clear(&p);
    /* bytes that are not UTF-8 (a Latin-1 file) become '?': the prompt goes into JSON */
    const char *latin1 = "caf\xe9 = 1\nx = \xc3\n";
    lode_ctx_input l1 = {"/nowhere/l.txt", NULL, latin1, strlen(latin1), 9, NULL, 0};
    cr_assert_eq(lode_ctx_build(c, &l1, &p, &e), LODE_OK);
    cr_assert_str_eq(p.prefix, "// /nowhere/l.txt\ncaf? = 1\n");
    cr_assert_str_eq(p.suffix, "x = ?\n");
    lode_ctx_prompt_clear(&p);
    /* cursor past the end is clamped */
    in.cursor = 1000;
    cr_assert_eq(lode_ctx_build(c, &in, &p, &e), LODE_OK);
    cr_assert_eq(p.suffix_len, 0);
    lode_ctx_prompt_clear(&p);
    lode_ctx_free(c);
}

Test(context, uri_paths) {
    char *p = lode_ctx_uri_path("file:///home/u/a%20b/c.py");
    cr_assert_str_eq(p, "/home/u/a b/c.py");
    lode_free(p);
    p = lode_ctx_uri_path("file://localhost/x/y.c");
    cr_assert_str_eq(p, "/x/y.c");
    lode_free(p);
    cr_assert_null(lode_ctx_uri_path("untitled:Untitled-1"));
    cr_assert_null(lode_ctx_uri_path("file://otherhost/x"));
    cr_assert_null(lode_ctx_uri_path("file:///a%00b"));
}

/* ---- golden post-processing cases ------------------------------------------------------ */
Test(postprocess, golden) {
    DIR *dir = opendir(FIX);
    cr_assert(dir, "no %s", FIX);
    struct dirent *de;
    size_t cases = 0, langs_seen = 0;
    char langs[16][16] = {{0}};
    while ((de = readdir(dir))) {
        size_t nl = strlen(de->d_name);
        if (nl < 5 || strcmp(de->d_name + nl - 4, ".gen")) continue;
        char src[512], want_p[600], gen_p[512];
        snprintf(gen_p, sizeof gen_p, FIX "%s", de->d_name);
        snprintf(src, sizeof src, FIX "%.*s", (int)(nl - 4), de->d_name);
        snprintf(want_p, sizeof want_p, "%s.want", src);
        size_t len, gl, wl;
        char *text = slurp(src, &len), *gen = slurp(gen_p, &gl), *want = slurp(want_p, &wl);
        cr_assert(text && gen && want, "case %s is incomplete", src);
        char *m = strstr(text, "<CURSOR>");
        cr_assert(m, "%s has no <CURSOR>", src);
        size_t cursor = (size_t)(m - text);
        memmove(m, m + 8, len - cursor - 8 + 1);
        len -= 8;
        const lode_lang *lang = lode_lang_for_path(src);
        cr_assert(lang, "no language for %s", src);
        size_t n;
        lode_post_info info;
        char *out = lode_post_process(lang, NULL, text, len, cursor, gen, gl, &n, &info);
        cr_expect_str_eq(out, want, "%s (mode %s: %s; stop: %s; errors %d -> %d%s):\n--- got ---\n%s\n--- want ---\n%s",
                         src, info.mode == LODE_POST_MULTI ? "multi" : "single", info.mode_why,
                         info.stop_why ? info.stop_why : "-", info.errors_before, info.errors_after,
                         info.rejected ? ", rejected" : "", out, want);
        cr_assert_eq(n, strlen(out));
        bool seen = false;
        for (size_t i = 0; i < langs_seen; i++) seen |= !strcmp(langs[i], lode_lang_name(lang));
        if (!seen && langs_seen < 16) snprintf(langs[langs_seen++], 16, "%s", lode_lang_name(lang));
        lode_free(out);
        free(text);
        free(gen);
        free(want);
        cases++;
    }
    closedir(dir);
    cr_assert_geq(cases, 15);
    cr_assert_geq(langs_seen, 6);
}

Test(postprocess, modes) {
    const lode_lang *c = lode_lang_for_id("c"), *py = lode_lang_for_id("python");
    const char *why;
    const char *t1 = "int f(void) {\n    return g(1, 2);\n}\n";
    cr_assert_eq(lode_post_mode_at(c, NULL, t1, strlen(t1), 24, &why), LODE_POST_SINGLE); /* mid-expression */
    cr_assert_str_eq(why, "text after the cursor");
    const char *t2 = "int f(void) {\n}\n";
    cr_assert_eq(lode_post_mode_at(c, NULL, t2, strlen(t2), 13, &why), LODE_POST_MULTI); /* after "{" */
    const char *t3 = "def f(x):\n    \n";
    TSTree *tr = lode_syntax_parse(py, t3, strlen(t3));
    cr_assert_eq(lode_post_mode_at(py, tr, t3, strlen(t3), 14, &why), LODE_POST_MULTI);
    ts_tree_delete(tr);
    const char *t4 = "x = 1\ny = x +";
    cr_assert_eq(lode_post_mode_at(py, NULL, t4, strlen(t4), strlen(t4), &why), LODE_POST_SINGLE);
    /* unknown language: the plain post-processing */
    size_t n;
    char *s = lode_post_process(NULL, NULL, "f()", 3, 2, "a, b)\nmore", 10, &n, NULL);
    cr_assert_str_eq(s, "a, b");
    lode_free(s);
}

Test(postprocess, error_count) {
    const lode_lang *c = lode_lang_for_id("c");
    const char *good = "int f(void) { return 1; }\n", *bad = "int f(void) { return 1 +; }\n";
    TSTree *a = lode_syntax_parse(c, good, strlen(good)), *b = lode_syntax_parse(c, bad, strlen(bad));
    cr_assert_eq(lode_post_error_count(a), 0);
    cr_assert_gt(lode_post_error_count(b), 0);
    ts_tree_delete(a);
    ts_tree_delete(b);
}
