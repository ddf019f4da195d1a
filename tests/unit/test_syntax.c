/*
 * test_syntax.c — languages, built-in queries, predicates, symbols/imports
 * per language (tests/fixtures/ctx/syntax/), references, and incremental
 * reparsing (lode_sdoc) against fresh parses on random edits.
 */
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lode_syntax.h"
#include "lode_ts_alloc.h"

#define FIX "tests/fixtures/ctx/syntax/"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
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

/* "kind name;kind name;..." of the definitions, and "module;module" of imports. */
static void describe(const lode_file_syms *fs, char *defs, size_t dn, char *imps, size_t in) {
    defs[0] = imps[0] = 0;
    for (size_t i = 0; i < fs->n_syms; i++) {
        size_t u = strlen(defs);
        snprintf(defs + u, dn - u, "%s%s %s", i ? ";" : "", lode_sym_kind_name(fs->syms[i].kind), fs->syms[i].name);
    }
    for (size_t i = 0; i < fs->n_imports; i++) {
        size_t u = strlen(imps);
        snprintf(imps + u, in - u, "%s%s%s", i ? ";" : "", fs->imports[i].system ? "<>" : "", fs->imports[i].module);
    }
}

typedef struct lang_case {
    const char *file, *lang, *defs, *imports;
} lang_case;

static const lang_case k_cases[] = {
    {"sample.c", "c",
     "macro MAX_ITEMS;macro SQUARE;class point;type point_t;type color;constant RED;constant GREEN;"
     "variable counter;function add;function find_slot;function add",
     "<>stdio.h;util/strbuf.h"},
    {"sample.cpp", "cpp", "module geo;function clamp;class Circle;method area;method area;type Radius",
     "<>vector;shape.hpp"},
    {"sample.py", "python", "constant TIMEOUT;function load;class Store;method get",
     "os;collections.abc;.models;..core.db"},
    {"sample.js", "javascript", "constant path;constant VERSION;function parse;function render;class View;method draw",
     "fs/promises;./helper.js;path"},
    {"sample.ts", "typescript",
     "class Shape;method area;type Id;class Mode;class Square;method area;function makeSquare", "./thing"},
    {"sample.tsx", "tsx", "type Props;function Badge;function Panel", "react;./button"},
    {"sample.go", "go", "constant MaxSize;type Item;type Getter;function New;method String",
     "fmt;strings;example.com/proj/internal/cache"},
    {"sample.rs", "rust",
     "module parser;constant LIMIT;class Cache;class Lookup;method lookup;method new;function build;macro square",
     "std::collections::HashMap;crate::config::Settings;parser"},
    {"Sample.java", "java",
     "class Sample;constant LIMIT;method Sample;method names;class Named;method name;class Level;constant LOW;"
     "constant HIGH",
     "java.util.List;com.example.util.Strings"},
    {"sample.lua", "lua", "module M;function greet;method count;function helper", "app.util;cjson"},
    {"sample.sh", "bash", "variable PREFIX;variable MODE;function build;function deploy",
     "./lib/common.sh;$HOME/.bashrc"},
    {"sample.json", "json", "constant name;constant version;constant scripts", ""},
    {"sample.rb", "ruby", "constant MAX;module Shop;class Cart;method add;method empty", "json;./lib/helper"},
};

Test(syntax, registry) {
    cr_assert_eq(lode_lang_count(), 13);
    for (size_t i = 0; i < lode_lang_count(); i++) {
        const lode_lang *l = lode_lang_at(i);
        cr_assert(l && lode_lang_ts(l));
        cr_assert_eq(lode_lang_for_id(lode_lang_name(l)), l);
        cr_assert(lode_syntax_query(l, "tags"), "%s has no tags query", lode_lang_name(l));
        TSTree *t = lode_syntax_parse(l, "", 0);
        cr_assert(t, "%s grammar does not load", lode_lang_name(l));
        ts_tree_delete(t);
    }
    cr_assert_null(lode_lang_at(lode_lang_count()));
    cr_assert_str_eq(lode_lang_name(lode_lang_for_path("/a/b/x.py")), "python");
    cr_assert_str_eq(lode_lang_name(lode_lang_for_path("x.H")), "cpp");
    cr_assert_str_eq(lode_lang_name(lode_lang_for_path("dir.d/x.h")), "c");
    cr_assert_str_eq(lode_lang_name(lode_lang_for_path("X.TSX")), "tsx");
    cr_assert_str_eq(lode_lang_name(lode_lang_for_path("Rakefile")), "ruby");
    cr_assert_null(lode_lang_for_path("notes.txt"));
    cr_assert_null(lode_lang_for_path("Makefile"));
    cr_assert_null(lode_lang_for_path(".py/x"));
    cr_assert_str_eq(lode_lang_name(lode_lang_for_id("typescriptreact")), "tsx");
    cr_assert_str_eq(lode_lang_name(lode_lang_for_id("shellscript")), "bash");
    cr_assert_str_eq(lode_lang_name(lode_lang_for_id("javascriptreact")), "javascript");
    cr_assert_null(lode_lang_for_id("cobol"));
    cr_assert_null(lode_lang_for_id(""));
    cr_assert_str_eq(lode_lang_line_comment(lode_lang_for_id("lua")), "--");
    cr_assert_null(lode_lang_line_comment(lode_lang_for_id("json")));
    cr_assert_null(lode_syntax_query(lode_lang_for_id("c"), "nope"));
}

Test(syntax, every_language_definitions_and_imports) {
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
        const lang_case *c = &k_cases[i];
        char path[256];
        snprintf(path, sizeof path, FIX "%s", c->file);
        size_t n;
        char *src = slurp(path, &n);
        const lode_lang *l = lode_lang_for_path(path);
        cr_assert(l, "%s: no language", c->file);
        cr_assert_str_eq(lode_lang_name(l), c->lang);
        TSTree *t = lode_syntax_parse(l, src, n);
        cr_assert(t);
        cr_assert_not(ts_node_has_error(ts_tree_root_node(t)), "%s: fixture does not parse cleanly", c->file);
        lode_file_syms fs;
        lode_error err = {0};
        cr_assert_eq(lode_syntax_symbols(l, src, n, t, &fs, &err), LODE_OK, "%s", err.text);
        char defs[2048], imps[1024];
        describe(&fs, defs, sizeof defs, imps, sizeof imps);
        cr_expect_str_eq(defs, c->defs, "%s definitions", c->file);
        cr_expect_str_eq(imps, c->imports, "%s imports", c->file);
        /* Invariants: ranges inside the text, sorted, names at name_start,
         * parents enclose their children. */
        for (size_t k = 0; k < fs.n_syms; k++) {
            const lode_sym *s = &fs.syms[k];
            cr_assert(s->start <= s->name_start && s->name_start < s->end && s->end <= n);
            cr_assert(s->start <= s->sig_end && s->sig_end <= s->end);
            cr_assert_eq(strncmp(src + s->name_start, s->name, strlen(s->name)), 0, "%s: %s", c->file, s->name);
            cr_assert_eq(s->line, lode_syntax_point_at(src, n, s->start).row);
            if (k) cr_assert(fs.syms[k - 1].start <= s->start);
            if (s->parent >= 0) {
                const lode_sym *p = &fs.syms[s->parent];
                cr_assert((size_t)s->parent < k && p->start <= s->start && s->end <= p->end);
            }
        }
        for (size_t k = 0; k < fs.n_imports; k++) {
            const lode_import *im = &fs.imports[k];
            cr_assert(im->start < im->end && im->end <= n);
            cr_assert_eq(strncmp(src + im->start, im->text, im->end - im->start), 0);
        }
        /* Same input, same result (the index and the prompt rely on it). */
        lode_file_syms again;
        cr_assert_eq(lode_syntax_symbols(l, src, n, NULL, &again, NULL), LODE_OK);
        char d2[2048], i2[1024];
        describe(&again, d2, sizeof d2, i2, sizeof i2);
        cr_assert_str_eq(d2, defs);
        cr_assert_str_eq(i2, imps);
        lode_file_syms_clear(&again);
        lode_file_syms_clear(&fs);
        ts_tree_delete(t);
        free(src);
    }
}

Test(syntax, signature_and_body_ranges) {
    size_t n;
    char *src = slurp(FIX "sample.c", &n);
    const lode_lang *l = lode_lang_for_id("c");
    lode_file_syms fs;
    cr_assert_eq(lode_syntax_symbols(l, src, n, NULL, &fs, NULL), LODE_OK);
    const lode_sym *fs_slot = NULL, *proto = NULL, *macro = NULL;
    for (size_t i = 0; i < fs.n_syms; i++) {
        if (!strcmp(fs.syms[i].name, "find_slot")) fs_slot = &fs.syms[i];
        if (!strcmp(fs.syms[i].name, "add") && !proto) proto = &fs.syms[i];
        if (!strcmp(fs.syms[i].name, "SQUARE")) macro = &fs.syms[i];
    }
    cr_assert(fs_slot && proto && macro);
    cr_assert_eq(strncmp(src + fs_slot->start, "static int *find_slot(int *table, int n) {", 42), 0);
    cr_assert_eq(fs_slot->sig_end - fs_slot->start, 41); /* up to the '{' */
    cr_assert_eq(src[fs_slot->end - 1], '}');
    /* A prototype has no body: the signature is all of it (the ';' included). */
    cr_assert_eq(proto->sig_end, proto->end);
    cr_assert_eq(src[proto->end - 1], ';');
    /* Trailing newline of a #define is not part of it. */
    cr_assert_eq(src[macro->end - 1], ')');
    lode_file_syms_clear(&fs);
    free(src);

    /* C++ template: the definition starts at `template`, the body is found under it. */
    src = slurp(FIX "sample.cpp", &n);
    cr_assert_eq(lode_syntax_symbols(lode_lang_for_id("cpp"), src, n, NULL, &fs, NULL), LODE_OK);
    cr_assert_str_eq(fs.syms[1].name, "clamp");
    cr_assert_eq(strncmp(src + fs.syms[1].start, "template <typename T>", 21), 0);
    cr_assert_eq(src[fs.syms[1].sig_end], '{');
    lode_file_syms_clear(&fs);
    free(src);

    /* Python: decorators belong to the definition; the body starts after ':'. */
    src = slurp(FIX "sample.py", &n);
    cr_assert_eq(lode_syntax_symbols(lode_lang_for_id("python"), src, n, NULL, &fs, NULL), LODE_OK);
    cr_assert_str_eq(fs.syms[1].name, "load");
    cr_assert_eq(strncmp(src + fs.syms[1].start, "@decorator\ndef load(path):", 26), 0);
    cr_assert_eq(strncmp(src + fs.syms[1].sig_end, "return open", 11), 0);
    cr_assert_eq(fs.syms[3].parent, 2); /* get in Store */
    lode_file_syms_clear(&fs);
    free(src);
}

/* ---- predicates ---------------------------------------------------------------- */
typedef struct mcount {
    int n;
    char names[16][32];
} mcount;

static const char *g_src;

static bool count_match(void *ud, const lode_query *q, const TSQueryMatch *m) {
    mcount *c = ud;
    for (uint16_t i = 0; i < m->capture_count; i++) {
        uint32_t cl;
        const char *cn = lode_query_capture_name(q, m->captures[i].index, &cl);
        if (cl == 1 && cn[0] == 'n' && c->n < 16) {
            TSNode nd = m->captures[i].node;
            snprintf(c->names[c->n], 32, "%.*s", (int)(ts_node_end_byte(nd) - ts_node_start_byte(nd)),
                     g_src + ts_node_start_byte(nd));
        }
    }
    c->n++;
    return true;
}

static mcount run_query(const lode_lang *l, const char *src, const char *qs) {
    mcount c;
    memset(&c, 0, sizeof c);
    lode_error err = {0};
    lode_query *q = lode_query_new(l, qs, strlen(qs), &err);
    cr_assert(q, "query %s: %s", qs, err.text);
    TSTree *t = lode_syntax_parse(l, src, strlen(src));
    g_src = src;
    lode_query_run(q, ts_tree_root_node(t), src, strlen(src), 0, UINT32_MAX, count_match, &c);
    ts_tree_delete(t);
    lode_query_free(q);
    return c;
}

Test(syntax, predicates) {
    const lode_lang *py = lode_lang_for_id("python");
    const char *src = "def foo(): pass\ndef bar(): pass\ndef baz(): pass\nfoo = foo\nx = y\n";
    mcount c = run_query(py, src, "(function_definition name: (identifier) @n)");
    cr_assert_eq(c.n, 3);
    c = run_query(py, src, "((function_definition name: (identifier) @n) (#eq? @n \"bar\"))");
    cr_assert_eq(c.n, 1);
    cr_assert_str_eq(c.names[0], "bar");
    c = run_query(py, src, "((function_definition name: (identifier) @n) (#not-eq? @n \"bar\"))");
    cr_assert_eq(c.n, 2);
    cr_assert_str_eq(c.names[0], "foo");
    cr_assert_str_eq(c.names[1], "baz");
    c = run_query(py, src, "((function_definition name: (identifier) @n) (#match? @n \"^ba\"))");
    cr_assert_eq(c.n, 2);
    c = run_query(py, src, "((function_definition name: (identifier) @n) (#not-match? @n \"^ba\"))");
    cr_assert_eq(c.n, 1);
    cr_assert_str_eq(c.names[0], "foo");
    c = run_query(py, src, "((function_definition name: (identifier) @n) (#any-of? @n \"foo\" \"baz\" \"qux\"))");
    cr_assert_eq(c.n, 2);
    c = run_query(py, src, "((function_definition name: (identifier) @n) (#not-any-of? @n \"foo\" \"baz\"))");
    cr_assert_eq(c.n, 1);
    /* capture against capture */
    c = run_query(py, src, "((assignment left: (identifier) @n right: (identifier) @r) (#eq? @n @r))");
    cr_assert_eq(c.n, 1);
    cr_assert_str_eq(c.names[0], "foo");
    c = run_query(py, src, "((assignment left: (identifier) @n right: (identifier) @r) (#not-eq? @n @r))");
    cr_assert_eq(c.n, 1);
    cr_assert_str_eq(c.names[0], "x");
    /* Directives are accepted and do not filter. */
    c = run_query(py, src,
                  "((function_definition name: (identifier) @n) @d (#set! kind \"f\") (#strip! @n \"x\") "
                  "(#select-adjacent! @n @d) (#is-not? local))");
    cr_assert_eq(c.n, 3);
    /* Several predicates: all must hold. */
    c = run_query(py, src, "((function_definition name: (identifier) @n) (#match? @n \"a\") (#not-eq? @n \"baz\"))");
    cr_assert_eq(c.n, 1);
    cr_assert_str_eq(c.names[0], "bar");
    /* Quantified captures: #eq? needs all nodes, #any-eq? one. */
    const char *js = "//a\n//a\nfunction f() {}\n//a\n//b\nfunction g() {}\n";
    const lode_lang *jl = lode_lang_for_id("javascript");
    c = run_query(jl, js, "(((comment)+ @a . (function_declaration name: (identifier) @n)) (#eq? @a \"//a\"))");
    cr_assert_eq(c.n, 1);
    cr_assert_str_eq(c.names[0], "f");
    c = run_query(jl, js, "(((comment)+ @a . (function_declaration name: (identifier) @n)) (#any-eq? @a \"//b\"))");
    cr_assert_eq(c.n, 1);
    cr_assert_str_eq(c.names[0], "g");
    c = run_query(jl, js, "(((comment)+ @a . (function_declaration name: (identifier) @n)) (#any-eq? @a \"//a\"))");
    cr_assert_eq(c.n, 2);
    /* UTF-8 regex */
    c = run_query(py, "def été(): pass\ndef ete(): pass\n", "((function_definition name: (identifier) @n) (#match? @n \"^.t.$\"))");
    cr_assert_eq(c.n, 2);
}

Test(syntax, query_errors) {
    const lode_lang *py = lode_lang_for_id("python");
    lode_error err = {0};
    const char *bad = "(function_definition\n  name: (no_such_node) @n)";
    cr_assert_null(lode_query_new(py, bad, strlen(bad), &err));
    cr_assert_eq(err.status, LODE_ERR_FORMAT);
    cr_assert(strstr(err.text, "node type error at 2:"), "%s", err.text);
    lode_error_clear(&err);
    const char *badre = "((identifier) @n (#match? @n \"(\"))";
    cr_assert_null(lode_query_new(py, badre, strlen(badre), &err));
    cr_assert(strstr(err.text, "regex"), "%s", err.text);
    lode_error_clear(&err);
    const char *badeq = "((identifier) @n (#eq? @n))";
    cr_assert_null(lode_query_new(py, badeq, strlen(badeq), &err));
    cr_assert_eq(err.status, LODE_ERR_FORMAT);
}

Test(syntax, shipped_predicates_are_applied) {
    /* JS tags.scm says (#not-eq? @name "constructor"): no method named constructor. */
    const char *src = "class A { constructor() {} run() {} }\n";
    lode_file_syms fs;
    cr_assert_eq(lode_syntax_symbols(lode_lang_for_id("javascript"), src, strlen(src), NULL, &fs, NULL), LODE_OK);
    cr_assert_eq(fs.n_syms, 2);
    cr_assert_str_eq(fs.syms[0].name, "A");
    cr_assert_str_eq(fs.syms[1].name, "run");
    lode_file_syms_clear(&fs);
    /* lode's imports.scm: require only when the callee is `require`. */
    const char *r = "const a = require('x'); const b = load('y');\n";
    cr_assert_eq(lode_syntax_symbols(lode_lang_for_id("javascript"), r, strlen(r), NULL, &fs, NULL), LODE_OK);
    cr_assert_eq(fs.n_imports, 1);
    cr_assert_str_eq(fs.imports[0].module, "x");
    lode_file_syms_clear(&fs);
}

Test(syntax, bad_input_never_crashes) {
    const char junk[] = "\xff\xfe}{)(\0\0def class struct #include <<<\n\r\r\"";
    for (size_t i = 0; i < lode_lang_count(); i++) {
        const lode_lang *l = lode_lang_at(i);
        lode_file_syms fs;
        cr_assert_eq(lode_syntax_symbols(l, junk, sizeof junk - 1, NULL, &fs, NULL), LODE_OK);
        lode_file_syms_clear(&fs);
    }
    lode_file_syms fs;
    cr_assert_eq(lode_syntax_symbols(NULL, "", 0, NULL, &fs, NULL), LODE_ERR_INVALID_ARG);
    cr_assert_eq(lode_syntax_symbols(lode_lang_for_id("c"), "", 0, NULL, &fs, NULL), LODE_OK);
    cr_assert_eq(fs.n_syms, 0);
    lode_file_syms_clear(&fs);
}

Test(syntax, references) {
    const char *src = "int f(int table, int n) {\n  return lookup(table, n) + lookup(n, MAX) + \"str\";\n}\n";
    const lode_lang *l = lode_lang_for_id("c");
    TSTree *t = lode_syntax_parse(l, src, strlen(src));
    const char *body = strstr(src, "return");
    char **names;
    size_t n = lode_syntax_refs(l, t, src, (uint32_t)(body - src), (uint32_t)strlen(src), &names);
    cr_assert_eq(n, 4);
    cr_assert_str_eq(names[0], "lookup");
    cr_assert_str_eq(names[1], "table");
    cr_assert_str_eq(names[2], "n");
    cr_assert_str_eq(names[3], "MAX");
    lode_syntax_refs_free(names, n);
    /* A range that cuts through an identifier does not report it. */
    n = lode_syntax_refs(l, t, src, (uint32_t)(body - src + 9), (uint32_t)(body - src + 17), &names);
    cr_assert_eq(n, 0, "got %zu", n);
    cr_assert_null(names);
    ts_tree_delete(t);

    const char *py = "import os\nx = os.path.join(a, b)  # comment ident\n";
    l = lode_lang_for_id("python");
    t = lode_syntax_parse(l, py, strlen(py));
    n = lode_syntax_refs(l, t, py, 10, (uint32_t)strlen(py), &names);
    cr_assert_eq(n, 6);
    const char *want[] = {"x", "os", "path", "join", "a", "b"};
    for (size_t i = 0; i < n; i++) cr_assert_str_eq(names[i], want[i]);
    lode_syntax_refs_free(names, n);
    ts_tree_delete(t);
}

Test(syntax, point_at) {
    const char *s = "ab\r\ncd\né\n";
    TSPoint p = lode_syntax_point_at(s, strlen(s), 0);
    cr_assert(p.row == 0 && p.column == 0);
    p = lode_syntax_point_at(s, strlen(s), 3); /* the \n of \r\n */
    cr_assert(p.row == 0 && p.column == 3);
    p = lode_syntax_point_at(s, strlen(s), 4);
    cr_assert(p.row == 1 && p.column == 0);
    p = lode_syntax_point_at(s, strlen(s), 9); /* after é: 2 bytes */
    cr_assert(p.row == 2 && p.column == 2);
    p = lode_syntax_point_at(s, strlen(s), 999);
    cr_assert(p.row == 3 && p.column == 0);
}

/* ---- incremental reparsing ------------------------------------------------------- */
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return n ? (uint32_t)(g_rng % n) : 0;
}

/* Round down to a UTF-8 code point start (editors never split one). */
static size_t cp_floor(const char *s, size_t len, size_t i) {
    while (i > 0 && i < len && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

static void check_same_as_fresh(lode_sdoc *d, const char *what) {
    size_t len;
    const char *text = lode_sdoc_text(d, &len);
    TSTree *fresh = lode_syntax_parse(lode_sdoc_lang(d), text, len);
    char *a = ts_node_string(ts_tree_root_node(lode_sdoc_tree(d)));
    char *b = ts_node_string(ts_tree_root_node(fresh));
    if (strcmp(a, b) != 0 && getenv("LODE_DUMP")) {
        FILE *o = fopen("/tmp/7a/diverge.txt", "w");
        fprintf(o, "TEXT:\n%.*s\nINCR:\n%s\nFRESH:\n%s\n", (int)len, text, a, b);
        fclose(o);
    }
    cr_assert_str_eq(a, b, "%s: incremental tree differs from a fresh parse", what);
    /* Byte and point ranges agree too (ts_node_string omits them). */
    TSNode ra = ts_tree_root_node(lode_sdoc_tree(d)), rb = ts_tree_root_node(fresh);
    cr_assert_eq(ts_node_end_byte(ra), ts_node_end_byte(rb));
    cr_assert_eq(ts_node_end_point(ra).row, ts_node_end_point(rb).row);
    cr_assert_eq(ts_node_end_point(ra).column, ts_node_end_point(rb).column);
    TSTreeCursor ca = ts_tree_cursor_new(ra), cb = ts_tree_cursor_new(rb);
    for (;;) {
        TSNode x = ts_tree_cursor_current_node(&ca), y = ts_tree_cursor_current_node(&cb);
        cr_assert_eq(ts_node_start_byte(x), ts_node_start_byte(y), "%s: node start", what);
        cr_assert_eq(ts_node_start_point(x).row, ts_node_start_point(y).row, "%s: node row", what);
        cr_assert_eq(ts_node_start_point(x).column, ts_node_start_point(y).column, "%s: node column", what);
        bool ga = ts_tree_cursor_goto_first_child(&ca), gb = ts_tree_cursor_goto_first_child(&cb);
        cr_assert_eq(ga, gb);
        if (ga) continue;
        bool done = false;
        while (!ts_tree_cursor_goto_next_sibling(&ca)) {
            cr_assert_not(ts_tree_cursor_goto_next_sibling(&cb));
            if (!ts_tree_cursor_goto_parent(&ca)) { done = true; break; }
            cr_assert(ts_tree_cursor_goto_parent(&cb));
        }
        if (done) break;
        cr_assert(ts_tree_cursor_goto_next_sibling(&cb));
    }
    ts_tree_cursor_delete(&ca);
    ts_tree_cursor_delete(&cb);
    lode_ts_free(a); /* tree-sitter's memory (lode_ts_alloc.h) */
    lode_ts_free(b);
    ts_tree_delete(fresh);
}

static const char *const k_snips[] = {"x", "é", "日本語", "\r\n", "\n", "{", "}", "(", ")", "\"", "'", ";",
                                      "  ", "if (a) { b(); }\n", "def f():\n    pass\n", "/* c */", "#", "\t",
                                      "😀", "end\n", "\r\n\r\n", "return 1;"};

/* Every node of the document's tree has the (row, column) that its byte
 * offsets have in the text: what a wrong point mapping in ts_tree_edit would
 * break, whatever error recovery did. */
static void check_points(lode_sdoc *d, const char *what) {
    size_t len;
    const char *text = lode_sdoc_text(d, &len);
    uint32_t *ls = malloc((len + 2) * sizeof *ls), nl = 0;
    ls[nl++] = 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n') ls[nl++] = (uint32_t)i + 1;
    TSTreeCursor c = ts_tree_cursor_new(ts_tree_root_node(lode_sdoc_tree(d)));
    for (;;) {
        TSNode n = ts_tree_cursor_current_node(&c);
        uint32_t offs[2] = {ts_node_start_byte(n), ts_node_end_byte(n)};
        TSPoint pts[2] = {ts_node_start_point(n), ts_node_end_point(n)};
        for (int k = 0; k < 2; k++) {
            uint32_t lo = 0, hi = nl; /* last line start <= off */
            while (hi - lo > 1) {
                uint32_t mid = (lo + hi) / 2;
                if (ls[mid] <= offs[k]) lo = mid;
                else hi = mid;
            }
            cr_assert(offs[k] <= len, "%s: node past the end", what);
            cr_assert(pts[k].row == lo && pts[k].column == offs[k] - ls[lo],
                      "%s: %s node at byte %u has point %u:%u, the text says %u:%u", what, ts_node_type(n), offs[k],
                      pts[k].row, pts[k].column, lo, offs[k] - ls[lo]);
        }
        if (ts_tree_cursor_goto_first_child(&c)) continue;
        bool done = false;
        while (!ts_tree_cursor_goto_next_sibling(&c))
            if (!ts_tree_cursor_goto_parent(&c)) { done = true; break; }
        if (done) break;
    }
    ts_tree_cursor_delete(&c);
    free(ls);
}

/* The edit mapping itself: the three points are where the offsets are in the
 * old and new texts, and after ts_tree_edit (before any reparse) every node
 * behind the edit sits at the point its shifted offset has in the new text.
 * (The reparse recomputes positions of what it re-lexes, so the final tree
 * alone would hide a wrong mapping.) */
static void check_edit_mapping(const lode_lang *l, const char *old, size_t old_len, const TSTree *old_tree, size_t a,
                               size_t b, const char *ins, const char *what) {
    size_t il = strlen(ins), nl = old_len - (b - a) + il;
    char *nt = malloc(nl + 1);
    memcpy(nt, old, a);
    memcpy(nt + a, ins, il);
    memcpy(nt + a + il, old + b, old_len - b);
    nt[nl] = 0;
    TSInputEdit e = lode_syntax_edit_for(old, old_len, a, b, ins, il);
    TSPoint p = lode_syntax_point_at(old, old_len, a);
    cr_assert(e.start_byte == a && e.old_end_byte == b && e.new_end_byte == a + il);
    cr_assert(e.start_point.row == p.row && e.start_point.column == p.column, "%s: start point", what);
    p = lode_syntax_point_at(old, old_len, b);
    cr_assert(e.old_end_point.row == p.row && e.old_end_point.column == p.column, "%s: old end point", what);
    p = lode_syntax_point_at(nt, nl, a + il);
    cr_assert(e.new_end_point.row == p.row && e.new_end_point.column == p.column, "%s: new end point", what);
    TSTree *t = ts_tree_copy(old_tree);
    ts_tree_edit(t, &e);
    TSTreeCursor c = ts_tree_cursor_new(ts_tree_root_node(t));
    size_t checked = 0;
    for (;;) {
        TSNode n = ts_tree_cursor_current_node(&c);
        uint32_t sb = ts_node_start_byte(n);
        if (sb >= e.new_end_byte + 1 && sb <= nl) {
            TSPoint want = lode_syntax_point_at(nt, nl, sb), got = ts_node_start_point(n);
            cr_assert(want.row == got.row && want.column == got.column, "%s: %s at byte %u: %u:%u, want %u:%u", what,
                      ts_node_type(n), sb, got.row, got.column, want.row, want.column);
            checked++;
        }
        if (ts_tree_cursor_goto_first_child(&c)) continue;
        bool done = false;
        while (!ts_tree_cursor_goto_next_sibling(&c))
            if (!ts_tree_cursor_goto_parent(&c)) { done = true; break; }
        if (done) break;
    }
    ts_tree_cursor_delete(&c);
    ts_tree_delete(t);
    free(nt);
    (void)l;
    (void)checked;
}

typedef struct undo {
    size_t start, new_end;
    char *old;
    size_t old_len;
} undo;

/* Random edits (inserts and deletes of ASCII, 2-4 byte UTF-8, emoji, CRLF,
 * brackets, quotes, whole statements) in bursts of 1-6, each burst then
 * undone in reverse order. After every edit: all node points agree with the
 * text, and when the fresh parse has no syntax error the incremental tree
 * equals it (tree-sitter's error recovery may legitimately differ between
 * the two on broken text). After every undo burst the text is the valid
 * original again and the trees must be identical. */
Test(syntax, incremental_matches_fresh_parse) {
    const char *files[] = {"sample.c",  "sample.cpp", "sample.py",   "sample.js",  "sample.ts",  "sample.tsx", "sample.go",
                           "sample.rs", "Sample.java", "sample.lua", "sample.sh", "sample.json", "sample.rb"};
    size_t exact_after_edit = 0, edits = 0;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char path[256];
        snprintf(path, sizeof path, FIX "%s", files[f]);
        size_t n;
        char *src = slurp(path, &n);
        /* Same text with CRLF line ends and a multibyte line in front. */
        char *crlf = malloc(2 * n + 64);
        const char *cm = lode_lang_line_comment(lode_lang_for_path(files[f]));
        size_t m = cm ? (size_t)sprintf(crlf, "%s ünïcødé 日本\r\n", cm) : 0;
        for (size_t i = 0; i < n; i++) {
            if (src[i] == '\n') crlf[m++] = '\r';
            crlf[m++] = src[i];
        }
        const char *texts[2] = {src, crlf};
        size_t lens[2] = {n, m};
        for (int v = 0; v < 2; v++) {
            lode_sdoc *d = lode_sdoc_new(lode_lang_for_path(path), texts[v], lens[v]);
            cr_assert(d);
            char what[160];
            snprintf(what, sizeof what, "%s v%d start", files[f], v);
            check_same_as_fresh(d, what);
            for (int burst = 0; burst < 25; burst++) {
                undo st[6];
                int k = 1 + (int)rnd(6);
                for (int e = 0; e < k; e++) {
                    size_t len;
                    const char *text = lode_sdoc_text(d, &len);
                    size_t a = cp_floor(text, len, rnd((uint32_t)len + 1));
                    size_t b = rnd(4) == 0 ? a : cp_floor(text, len, a + rnd(12));
                    if (b > len) b = len;
                    if (b < a) b = a;
                    const char *ins = rnd(5) == 0 ? "" : k_snips[rnd(sizeof k_snips / sizeof k_snips[0])];
                    st[e].start = a;
                    st[e].new_end = a + strlen(ins);
                    st[e].old_len = b - a;
                    st[e].old = malloc(b - a + 1);
                    memcpy(st[e].old, text + a, b - a);
                    snprintf(what, sizeof what, "%s v%d burst %d edit %d [%zu,%zu)+%zu", files[f], v, burst, e, a, b,
                             strlen(ins));
                    check_edit_mapping(lode_sdoc_lang(d), text, len, lode_sdoc_tree(d), a, b, ins, what);
                    lode_error err = {0};
                    cr_assert_eq(lode_sdoc_edit(d, a, b, ins, strlen(ins), &err), LODE_OK, "%s", err.text);
                    check_points(d, what);
                    size_t tl;
                    const char *t2 = lode_sdoc_text(d, &tl);
                    TSTree *fresh = lode_syntax_parse(lode_sdoc_lang(d), t2, tl);
                    bool clean = !ts_node_has_error(ts_tree_root_node(fresh));
                    ts_tree_delete(fresh);
                    if (clean) check_same_as_fresh(d, what), exact_after_edit++;
                    edits++;
                }
                for (int e = k - 1; e >= 0; e--) {
                    cr_assert_eq(lode_sdoc_edit(d, st[e].start, st[e].new_end, st[e].old, st[e].old_len, NULL), LODE_OK);
                    free(st[e].old);
                    snprintf(what, sizeof what, "%s v%d burst %d undo %d", files[f], v, burst, e);
                    check_points(d, what);
                }
                size_t len;
                const char *text = lode_sdoc_text(d, &len);
                cr_assert(len == lens[v] && memcmp(text, texts[v], len) == 0, "%s: undo did not restore the text", what);
                check_same_as_fresh(d, what);
            }
            lode_sdoc_free(d);
        }
        free(crlf);
        free(src);
    }
    cr_log_info("%zu of %zu forward edits compared exactly", exact_after_edit, edits);
    /* The exact comparison after forward edits is not vacuous. */
    cr_assert(exact_after_edit * 10 > edits, "only %zu of %zu edits compared exactly", exact_after_edit, edits);
}

Test(syntax, sdoc_edges) {
    const lode_lang *l = lode_lang_for_id("c");
    lode_sdoc *d = lode_sdoc_new(l, "int x;", 6);
    cr_assert(d);
    lode_error err = {0};
    cr_assert_eq(lode_sdoc_edit(d, 3, 99, "", 0, &err), LODE_ERR_RANGE);
    cr_assert_eq(lode_sdoc_edit(d, 4, 3, "", 0, NULL), LODE_ERR_RANGE);
    size_t len;
    cr_assert_str_eq(lode_sdoc_text(d, &len), "int x;");
    cr_assert_eq(lode_sdoc_version(d), 0);
    /* Growing past the initial buffer, deleting everything, inserting at the end. */
    for (int i = 0; i < 200; i++) cr_assert_eq(lode_sdoc_edit(d, 6, 6, "\nint yy;", 8, NULL), LODE_OK);
    check_same_as_fresh(d, "grow");
    lode_sdoc_text(d, &len);
    cr_assert_eq(len, 6 + 200 * 8);
    cr_assert_eq(lode_sdoc_edit(d, 0, len, "", 0, NULL), LODE_OK);
    cr_assert_str_eq(lode_sdoc_text(d, &len), "");
    check_same_as_fresh(d, "empty");
    cr_assert_eq(lode_sdoc_set(d, "void f(void) {}", 15, NULL), LODE_OK);
    check_same_as_fresh(d, "set");
    cr_assert_str_eq(ts_node_type(ts_node_named_child(ts_tree_root_node(lode_sdoc_tree(d)), 0)), "function_definition");
    lode_sdoc_free(d);
    lode_sdoc_free(NULL);
    cr_assert_null(lode_sdoc_new(NULL, "", 0));
}

/* ---- the table-driven walker against the query cursor ------------------------- */
/* Every field of every definition and import, one line each. */
static char *dump_fs(const lode_file_syms *fs) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    for (size_t i = 0; i < fs->n_syms; i++) {
        const lode_sym *s = &fs->syms[i];
        fprintf(f, "sym %s %s %u %u %u %u %u %d\n", lode_sym_kind_name(s->kind), s->name, s->start, s->end, s->sig_end,
                s->name_start, s->line, s->parent);
    }
    for (size_t i = 0; i < fs->n_imports; i++) {
        const lode_import *m = &fs->imports[i];
        fprintf(f, "imp [%s] [%s] %u %u %u %d\n", m->text, m->module, m->start, m->end, m->line, m->system);
    }
    fclose(f);
    return buf;
}

/* Both extractors on the same tree; returns the number of definitions. */
static size_t expect_same(const lode_lang *l, const char *src, size_t n, const char *what) {
    TSTree *t = lode_syntax_parse(l, src, n);
    cr_assert(t);
    lode_file_syms a, b;
    cr_assert_eq(lode_syntax_symbols(l, src, n, t, &a, NULL), LODE_OK);
    cr_assert_eq(lode_syntax_symbols_query(l, src, n, t, &b, NULL), LODE_OK);
    char *da = dump_fs(&a), *db = dump_fs(&b);
    cr_expect_str_eq(da, db, "%s (%s): walker and query cursor differ", what, lode_lang_name(l));
    size_t defs = b.n_syms;
    free(da);
    free(db);
    lode_file_syms_clear(&a);
    lode_file_syms_clear(&b);
    ts_tree_delete(t);
    return defs;
}

/* Units in the style of tests/bench/bench_index.c's generator. */
static const struct { const char *lang, *head, *unit; } k_gen[] = {
    {"c", "#include <stdio.h>\n#include \"common.h\"\n#define N 3\nenum { A, B };\nstatic int g = 1;\n",
     "static int item_%d(const int *v, int n) {\n    int s = 0;\n    return s + helper_%d(n) * %d + %d;\n}\n"
     "typedef struct s%d { int x; } s%d_t;\n"},
    {"cpp", "#include <vector>\nnamespace gen {\n", "int item_%d(const std::vector<int> &v) { return %d + %d; }\n"
     "class C%d { public: int get() const; };\nint C%d::get() const { return %d; }\nusing T%d = int;\n"},
    {"python", "import os\nfrom .common import helper\nX: int = 1\n",
     "def item_%d(values, n):\n    return helper(%d) + %d\n\nclass K%d:\n    def m(self):\n        return %d\n"},
    /* the anchored patterns: require's only argument, Lua's first name and value */
    {"javascript", "import { helper } from \"./common.js\";\nconst fs = require(\"fs\");\nexport const V = 1;\n"
                   "const a = require(x, \"m\"), b = require(\"n\", 1), c = require(/* c */ \"o\");\n",
     "export function item_%d(values, n) {\n  return helper(%d, %d);\n}\nclass C%d { m() { return %d; } }\n"
     "const f%d = () => %d;\n"},
    {"typescript", "import { helper } from \"./common\";\nexport type Id = string;\n",
     "export function item_%d(values: number[], n: number): number {\n  return helper(%d) + %d;\n}\n"
     "interface I%d { m(): number; }\nenum E%d { A }\n"},
    {"tsx", "import React from \"react\";\n", "export function Item%d() { return <div>{%d + %d}</div>; }\ntype P%d = {};\n"},
    {"go", "package gen\n\nimport \"fmt\"\n\nconst Max = 1\n",
     "func Item%d(values []int, n int) int {\n\tfmt.Println(%d)\n\treturn %d\n}\ntype T%d struct{}\n"
     "func (t T%d) M() int { return %d }\n"},
    {"rust", "use crate::common::helper;\nmod other;\n",
     "pub fn item_%d(values: &[i64], n: usize) -> i64 {\n    helper(%d) + %d\n}\nstruct S%d;\n"
     "impl S%d { fn m(&self) -> i64 { %d } }\nconst C%d: i32 = 1;\n"},
    {"java", "package gen;\n\nimport java.util.List;\n\npublic class Gen {\n    static final int K = 1;\n",
     "    public static int item%d(List<Integer> values, int n) {\n        return %d + %d;\n    }\n"},
    {"lua", "local common = require(\"gen.common\")\nlocal M = {}\nlocal q, M2 = 1, {}\nx, y = 1, function() end\n"
            "local --[[c]] z = {}\n",
     "function M.item_%d(values, n)\n  return common.helper(%d) + %d\nend\nlocal function f%d() return %d end\n"},
    {"bash", "source ./lib.sh\nPREFIX=/usr\n", "item_%d() {\n  echo %d %d\n}\nV%d=%d\n"},
    {"json", "{\n  \"a\": 1", ",\n  \"k%d\": [%d, %d]"},
    {"ruby", "require_relative \"common\"\n\nmodule Gen\n",
     "  def self.item_%d(values, n)\n    helper(%d) + %d\n  end\n  class K%d; def m; %d; end; end\n  C%d = 1\n"},
};

Test(syntax, walker_every_language_is_table_driven) {
    /* A language that needs the query cursor would still be right, only
     * slower; this says which one, so a query change that forces it is seen. */
    for (size_t i = 0; i < lode_lang_count(); i++)
        cr_expect(lode_syntax_symbols_walked(lode_lang_at(i)), "%s falls back to the query cursor",
                  lode_lang_name(lode_lang_at(i)));
}

Test(syntax, walker_matches_query_cursor) {
    /* Fixtures, then the same with random deletions (ERROR and MISSING nodes
     * in every position), then generated files. */
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    size_t defs = 0;
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, FIX "%s", k_cases[i].file);
        size_t n;
        char *src = slurp(path, &n);
        const lode_lang *l = lode_lang_for_path(path);
        defs += expect_same(l, src, n, k_cases[i].file);
        char *mut = malloc(n + 1);
        for (int k = 0; k < 60; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            size_t at = (size_t)(rng % (n + 1)), cut = (size_t)((rng >> 32) % 12);
            if (at + cut > n) cut = n - at;
            memcpy(mut, src, at);
            memcpy(mut + at, src + at + cut, n - at - cut);
            expect_same(l, mut, n - cut, k_cases[i].file);
        }
        free(mut);
        free(src);
    }
    for (size_t g = 0; g < sizeof k_gen / sizeof k_gen[0]; g++) {
        char *buf = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&buf, &n);
        fputs(k_gen[g].head, f);
        for (int u = 0; u < 12; u++) fprintf(f, k_gen[g].unit, u, u, u, u, u, u, u);
        if (!strcmp(k_gen[g].lang, "cpp")) fputs("}\n", f);
        if (!strcmp(k_gen[g].lang, "java") || !strcmp(k_gen[g].lang, "json")) fputs("}\n", f);
        if (!strcmp(k_gen[g].lang, "ruby")) fputs("end\n", f);
        fclose(f);
        const lode_lang *l = lode_lang_for_id(k_gen[g].lang);
        cr_assert(l, "%s", k_gen[g].lang);
        size_t d = expect_same(l, buf, n, "generated");
        cr_expect(d >= 12, "%s: only %zu definitions in the generated file", k_gen[g].lang, d);
        defs += d;
        free(buf);
    }
    cr_assert(defs > 200);
}

/* A real corpus: lode's own sources, the grammar packages' JS/TS/C/Rust/Go
 * bindings and tests, and (where installed) kernel and C++ headers; capped
 * per root so the test stays short (bench_index compare runs the whole lot). */
static size_t g_corpus_files, g_corpus_cap, g_corpus_defs;

static int corpus_visit(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)ftw;
    if (type != FTW_F || st->st_size > 256 * 1024 || g_corpus_files >= g_corpus_cap) return 0;
    if (strstr(path, "/src/parser.c") || strstr(path, "/.git/")) return 0; /* generated tables */
    const lode_lang *l = lode_lang_for_path(path);
    if (!l) return 0;
    size_t n;
    char *src = slurp(path, &n);
    if (!memchr(src, 0, n)) g_corpus_defs += expect_same(l, src, n, path), g_corpus_files++;
    free(src);
    return 0;
}

Test(syntax, walker_matches_query_cursor_on_a_corpus, .timeout = 300) {
    static const struct { const char *root; size_t cap; } roots[] = {
        {"lsp", 400},  {"engine", 400}, {"daemon", 200}, {"tests", 400}, {"grammars/node_modules", 600},
        {"/usr/include/linux", 150}, {"/usr/include/c++/12/bits", 100}, {"/usr/lib/python3/dist-packages/_pytest", 60},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++) {
        g_corpus_files = 0, g_corpus_cap = roots[i].cap;
        nftw(roots[i].root, corpus_visit, 16, FTW_PHYS);
        total += g_corpus_files;
    }
    cr_log_info("walker vs query cursor: %zu files, %zu definitions", total, g_corpus_defs);
    cr_assert(total >= 100, "corpus too small (%zu files)", total);
}
