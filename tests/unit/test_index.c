/*
 * test_index.c — the workspace index: walking (gitignore, skipped dirs,
 * binary/generated/large files, symlinks), lookups, documents, inotify,
 * the disk cache (reuse proven by the parse counter; corrupt caches
 * ignored), and import resolution on tests/fixtures/ctx/proj.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index_impl.h"
#include "lode_index.h"

#define PROJ "tests/fixtures/ctx/proj"

static char g_tmp[PATH_MAX];

static void mkdir_p(const char *path) {
    char buf[PATH_MAX + 64];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *s = buf + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        mkdir(buf, 0755);
        *s = '/';
    }
    mkdir(buf, 0755);
}

/* Write a file under the workspace root ws/ (creating dirs). */
static void put(const char *rel, const char *text) {
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/ws/%s", g_tmp, rel);
    char d[PATH_MAX + 64];
    snprintf(d, sizeof d, "%s", p);
    *strrchr(d, '/') = 0;
    mkdir_p(d);
    FILE *f = fopen(p, "wb");
    cr_assert(f, "write %s: %s", p, strerror(errno));
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

static char *at(const char *rel) {
    static char buf[4][PATH_MAX + 64];
    static int k;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_tmp, rel);
    return buf[k];
}

static void rm_rf(const char *p) {
    char cmd[PATH_MAX + 128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    cr_assert_eq(system(cmd), 0);
}

static void setup(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/lode-test-index-XXXXXX");
    cr_assert(mkdtemp(g_tmp));
    /* mkdtemp may sit under a symlinked /tmp: use the canonical path. */
    char *r = realpath(g_tmp, NULL);
    snprintf(g_tmp, sizeof g_tmp, "%s", r);
    free(r);
    mkdir_p(at("ws"));
    mkdir_p(at("cache"));
}

static void teardown(void) { rm_rf(g_tmp); }

static lode_index *open_ws(const char *cache) {
    const char *roots[] = {at("ws")};
    lode_index_opts o = {.cache_dir = cache};
    lode_error err = {0};
    lode_index *ix = lode_index_open(roots, 1, &o, &err);
    cr_assert(ix, "%s", err.text);
    cr_assert_eq(lode_index_scan(ix, &err), LODE_OK, "%s", err.text);
    return ix;
}

static bool has_file(lode_index *ix, const char *rel) {
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/ws/%s", g_tmp, rel);
    return lode_index_file(ix, p) != NULL;
}

static size_t n_defs(lode_index *ix, const char *name) { return lode_index_lookup(ix, name, NULL, 0); }

TestSuite(index, .init = setup, .fini = teardown);

Test(index, wildmatch_rules) {
    cr_assert(lode__wildmatch("*.c", "a.c"));
    cr_assert_not(lode__wildmatch("*.c", "d/a.c"));
    cr_assert(lode__wildmatch("**/a.c", "a.c"));
    cr_assert(lode__wildmatch("**/a.c", "x/y/a.c"));
    cr_assert(lode__wildmatch("x/**", "x/y/z"));
    cr_assert_not(lode__wildmatch("x/**", "xy/z"));
    cr_assert(lode__wildmatch("a/**/b", "a/b"));
    cr_assert(lode__wildmatch("a/**/b", "a/x/y/b"));
    cr_assert_not(lode__wildmatch("a/**/b", "a/xb"));
    cr_assert(lode__wildmatch("?.py", "a.py"));
    cr_assert_not(lode__wildmatch("?.py", "/.py"));
    cr_assert(lode__wildmatch("[a-c]x", "bx"));
    cr_assert_not(lode__wildmatch("[!a-c]x", "bx"));
    cr_assert(lode__wildmatch("[!a-c]x", "dx"));
    cr_assert(lode__wildmatch("\\*x", "*x"));
    cr_assert_not(lode__wildmatch("\\*x", "ax"));
    cr_assert_not(lode__wildmatch("[ab", "a"));
    char p[] = "/a//b/./c/../d/";
    lode__path_normalize(p);
    cr_assert_str_eq(p, "/a/b/d");
    char q[] = "/../..";
    lode__path_normalize(q);
    cr_assert_str_eq(q, "/");
}

Test(index, gitignore_semantics) {
    put(".gitignore",
        "# comment\n*.gen.c\n!keep.gen.c\nbuild/\n/anchored.py\ndeep/**/skip.go\n\\#hash.py\ntrailing.py   \n"
        "docs/*.js\n");
    put("a.gen.c", "int a_gen;\n");
    put("keep.gen.c", "int keep_gen;\n");
    put("build/x.c", "int in_build;\n");
    put("src/build/y.c", "int in_src_build;\n");
    put("anchored.py", "anchored_top = 1\n");
    put("src/anchored.py", "anchored_src = 1\n");
    put("deep/skip.go", "package d\nconst SkipTop = 1\n");
    put("deep/a/b/skip.go", "package d\nconst SkipDeep = 1\n");
    put("deep/other.go", "package d\nconst Other = 1\n");
    put("#hash.py", "hashed = 1\n");
    put("trailing.py", "trailing = 1\n");
    put("docs/x.js", "function docs_x() {}\n");
    put("docs/sub/y.js", "function docs_y() {}\n");
    put("sub/.gitignore", "*.py\n!main.py\n!sub.gen.c\n");
    put("sub/x.py", "sub_x = 1\n");
    put("sub/main.py", "sub_main = 1\n");
    put("sub/sub.gen.c", "int sub_gen;\n");
    put("sub/inner/y.py", "inner_y = 1\n");
    put("sub/inner/.gitignore", "!y2.py\n");
    put("sub/inner/y2.py", "inner_y2 = 1\n");
    put(".git/info/exclude", "# git's own\nexcluded.py\nkeep.gen.c\n"); /* lower precedence than .gitignore */
    put("excluded.py", "excluded = 1\n");
    put("logs/.gitignore", "*\n");
    put("logs/l.c", "int logged;\n");
    lode_index *ix = open_ws("");
    cr_assert_not(has_file(ix, "a.gen.c"));
    cr_assert(has_file(ix, "keep.gen.c"));
    cr_assert_not(has_file(ix, "build/x.c"));
    cr_assert_not(has_file(ix, "src/build/y.c"));
    cr_assert_not(has_file(ix, "anchored.py"));
    cr_assert(has_file(ix, "src/anchored.py"));
    cr_assert_not(has_file(ix, "deep/skip.go"));
    cr_assert_not(has_file(ix, "deep/a/b/skip.go"));
    cr_assert(has_file(ix, "deep/other.go"));
    cr_assert_not(has_file(ix, "#hash.py"));
    cr_assert_not(has_file(ix, "trailing.py"));
    cr_assert_not(has_file(ix, "docs/x.js"));
    cr_assert(has_file(ix, "docs/sub/y.js")); /* '*' does not cross '/' */
    cr_assert_not(has_file(ix, "sub/x.py"));
    cr_assert(has_file(ix, "sub/main.py"));
    cr_assert(has_file(ix, "sub/sub.gen.c")); /* the deeper file re-includes */
    cr_assert_not(has_file(ix, "sub/inner/y.py"));
    cr_assert(has_file(ix, "sub/inner/y2.py"));
    cr_assert_not(has_file(ix, "logs/l.c"));
    cr_assert_not(has_file(ix, "excluded.py"));
    cr_assert_eq(lode_index_n_files(ix), 7);
    cr_assert_eq(n_defs(ix, "keep_gen"), 1);
    cr_assert_eq(n_defs(ix, "a_gen"), 0);
    lode_index_stats st;
    lode_index_get_stats(ix, &st);
    cr_assert_eq(st.files, 7);
    cr_assert(st.skipped_ignored >= 10, "%zu", st.skipped_ignored);
    lode_index_free(ix);
}

Test(index, skipped_dirs_binary_generated_large) {
    put("ok.c", "int ok_fn(void) { return 1; }\n");
    put("node_modules/pkg/index.js", "function nm() {}\n");
    put(".git/hooks/x.sh", "f() { :; }\n");
    put("vendor/lib/v.go", "package v\nfunc V() {}\n");
    put("target/CACHEDIR.TAG", "Signature: 8a477f597d28d172789f06886806bc55\n");
    put("target/debug/gen.rs", "fn built() {}\n");
    put("gen.go", "// Code generated by protoc. DO NOT EDIT.\npackage p\nfunc Gen() {}\n");
    put("notes.txt", "int not_code;\n");
    char big[5000];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = 0;
    memcpy(big, "int big_fn(void);", 17);
    put("big.c", big);
    /* binary: a NUL byte */
    FILE *f = fopen(at("ws/bin.c"), "wb");
    fwrite("int bin_fn(void);\0\1\2", 1, 21, f);
    fclose(f);
    const char *roots[] = {at("ws")};
    lode_index_opts o = {.cache_dir = "", .max_file_bytes = 4096};
    lode_index *ix = lode_index_open(roots, 1, &o, NULL);
    cr_assert_eq(lode_index_scan(ix, NULL), LODE_OK);
    cr_assert_eq(lode_index_n_files(ix), 1);
    cr_assert_str_eq(lode_index_file_at(ix, 0), at("ws/ok.c"));
    cr_assert_null(lode_index_file_at(ix, 1));
    lode_index_stats st;
    lode_index_get_stats(ix, &st);
    cr_assert_eq(st.skipped_binary, 1);
    cr_assert_eq(st.skipped_large, 1);
    cr_assert_eq(st.skipped_generated, 1);
    cr_assert_eq(st.parsed, 1);
    /* the size cap applies to lode_index_read too */
    size_t n;
    cr_assert_null(lode_index_read(ix, at("ws/big.c"), &n));
    lode_index_free(ix);

    /* max_files */
    o.max_files = 1;
    put("ok2.c", "int ok2;\n");
    ix = lode_index_open(roots, 1, &o, NULL);
    cr_assert_eq(lode_index_scan(ix, NULL), LODE_OK);
    cr_assert_eq(lode_index_n_files(ix), 1);
    lode_index_get_stats(ix, &st);
    /* ok2.c and whichever of bin.c/gen.go come after the first file (readdir order) */
    cr_assert(st.skipped_limit >= 1 && st.skipped_limit <= 3, "%zu", st.skipped_limit);
    lode_index_free(ix);
}

Test(index, symlinks_never_escape) {
    mkdir_p(at("outside"));
    FILE *f = fopen(at("outside/secret.c"), "w");
    fputs("int secret_fn(void) { return 42; }\n", f);
    fclose(f);
    put("real.c", "int real_fn(void) { return 1; }\n");
    cr_assert_eq(symlink(at("outside/secret.c"), at("ws/link.c")), 0);
    cr_assert_eq(symlink(at("outside"), at("ws/linkdir")), 0);
    cr_assert_eq(symlink("real.c", at("ws/alias.c")), 0);
    cr_assert_eq(symlink("../../..", at("ws/up")), 0);
    lode_index *ix = open_ws("");
    cr_assert_eq(n_defs(ix, "secret_fn"), 0);
    cr_assert_eq(n_defs(ix, "real_fn"), 1); /* the in-root alias is the same file: once */
    cr_assert_eq(lode_index_n_files(ix), 1);
    size_t n = 123;
    cr_assert_null(lode_index_read(ix, at("ws/link.c"), &n));
    cr_assert_eq(n, 0);
    cr_assert_null(lode_index_read(ix, at("ws/linkdir/secret.c"), &n));
    cr_assert_null(lode_index_read(ix, at("outside/secret.c"), &n));
    cr_assert_null(lode_index_read(ix, at("ws/../outside/secret.c"), &n));
    cr_assert_null(lode_index_read(ix, "/etc/passwd", &n));
    cr_assert_not(lode_index_contains(ix, at("ws/link.c")));
    cr_assert_not(lode_index_contains(ix, at("ws/up/etc")));
    cr_assert(lode_index_contains(ix, at("ws/real.c")));
    cr_assert(lode_index_contains(ix, at("ws/not-yet-created.c")));
    char *t = lode_index_read(ix, at("ws/alias.c"), &n);
    cr_assert(t);
    cr_assert_str_eq(t, "int real_fn(void) { return 1; }\n");
    lode_free(t);
    /* Documents outside the roots are refused. */
    cr_assert_eq(lode_index_update(ix, at("outside/secret.c"), "int x;", 6), LODE_ERR_NOT_FOUND);
    cr_assert_eq(lode_index_update(ix, at("ws/link.c"), "int x;", 6), LODE_ERR_NOT_FOUND);
    lode_index_free(ix);
}

Test(index, lookup_order_and_update) {
    put("b/dup.c", "int dup(void) { return 2; }\n");
    put("a/dup.c", "int dup(void) { return 1; }\nint dup2;\n");
    put("c.py", "def dup():\n    pass\n");
    lode_index *ix = open_ws("");
    lode_def d[8];
    cr_assert_eq(lode_index_lookup(ix, "dup", d, 8), 3);
    cr_assert_str_eq(d[0].path, at("ws/a/dup.c"));
    cr_assert_str_eq(d[1].path, at("ws/b/dup.c"));
    cr_assert_str_eq(d[2].path, at("ws/c.py"));
    cr_assert_str_eq(lode_lang_name(d[2].lang), "python");
    cr_assert_str_eq(d[0].sym->name, "dup");
    cr_assert_eq(d[0].sym->kind, LODE_SYM_FUNCTION);
    cr_assert_eq(lode_index_lookup(ix, "dup", d, 1), 3); /* total, only one written */
    cr_assert_eq(lode_index_lookup(ix, "nope", d, 8), 0);

    /* A document edit replaces the file's definitions and overrides the disk. */
    const char *txt = "def renamed():\n    pass\n";
    cr_assert_eq(lode_index_update(ix, at("ws/c.py"), txt, strlen(txt)), LODE_OK);
    cr_assert_eq(n_defs(ix, "dup"), 2);
    cr_assert_eq(n_defs(ix, "renamed"), 1);
    size_t n;
    char *t = lode_index_read(ix, at("ws/c.py"), &n);
    cr_assert_str_eq(t, txt);
    lode_free(t);
    /* A new, unsaved document inside the root. */
    cr_assert_eq(lode_index_update(ix, at("ws/new.ts"), "export function fresh() {}", 26), LODE_OK);
    cr_assert_eq(n_defs(ix, "fresh"), 1);
    cr_assert_eq(lode_index_n_files(ix), 4);
    cr_assert_eq(lode_index_update(ix, at("ws/readme.txt"), "x", 1), LODE_ERR_UNSUPPORTED);
    /* A rescan keeps the open documents. */
    cr_assert_eq(lode_index_scan(ix, NULL), LODE_OK);
    cr_assert_eq(n_defs(ix, "renamed"), 1);
    cr_assert_eq(n_defs(ix, "fresh"), 1);
    /* Closing goes back to the disk contents; an unsaved one disappears. */
    cr_assert_eq(lode_index_close_doc(ix, at("ws/c.py")), LODE_OK);
    cr_assert_eq(n_defs(ix, "renamed"), 0);
    cr_assert_eq(n_defs(ix, "dup"), 3);
    cr_assert_eq(lode_index_close_doc(ix, at("ws/new.ts")), LODE_OK);
    cr_assert_eq(n_defs(ix, "fresh"), 0);
    cr_assert_eq(lode_index_n_files(ix), 3);
    /* Relative and non-canonical paths name the same file. */
    cr_assert(lode_index_file(ix, at("ws/a/../a/dup.c")));
    lode_index_stats st;
    lode_index_get_stats(ix, &st);
    cr_assert_eq(st.defs, 4);
    lode_index_free(ix);
}

static void wait_poll(lode_index *ix) {
    /* inotify events are queued by the time the syscall returns; poll twice
     * to be safe against a partial read. */
    cr_assert_eq(lode_index_poll(ix), LODE_OK);
    cr_assert_eq(lode_index_poll(ix), LODE_OK);
}

Test(index, inotify_updates) {
    put("one.c", "int one(void) { return 1; }\n");
    lode_index *ix = open_ws("");
    cr_assert(lode_index_watch_fd(ix) >= 0);
    cr_assert_eq(n_defs(ix, "one"), 1);
    put("two.go", "package x\nfunc Two() {}\n");
    wait_poll(ix);
    cr_assert_eq(n_defs(ix, "Two"), 1);
    put("one.c", "int uno(void) { return 1; }\n");
    wait_poll(ix);
    cr_assert_eq(n_defs(ix, "one"), 0);
    cr_assert_eq(n_defs(ix, "uno"), 1);
    unlink(at("ws/two.go"));
    wait_poll(ix);
    cr_assert_eq(n_defs(ix, "Two"), 0);
    /* a new directory with a file in it */
    put("pkg/deep/three.rs", "fn three() {}\n");
    wait_poll(ix);
    cr_assert_eq(n_defs(ix, "three"), 1);
    /* ... and a file created later in that new directory */
    put("pkg/deep/four.rs", "fn four() {}\n");
    wait_poll(ix);
    cr_assert_eq(n_defs(ix, "four"), 1);
    /* rename within the root */
    cr_assert_eq(rename(at("ws/pkg/deep/four.rs"), at("ws/pkg/five.rs")), 0);
    wait_poll(ix);
    cr_assert_eq(n_defs(ix, "four"), 1);
    cr_assert(has_file(ix, "pkg/five.rs"));
    cr_assert_not(has_file(ix, "pkg/deep/four.rs"));
    /* a .gitignore change applies */
    put(".gitignore", "pkg/\n");
    wait_poll(ix);
    cr_assert_eq(n_defs(ix, "three"), 0);
    cr_assert_eq(n_defs(ix, "uno"), 1);
    /* removing a whole directory */
    put(".gitignore", "");
    wait_poll(ix);
    cr_assert_eq(n_defs(ix, "three"), 1);
    rm_rf(at("ws/pkg"));
    wait_poll(ix);
    cr_assert_eq(n_defs(ix, "three"), 0);
    cr_assert_eq(lode_index_n_files(ix), 1);
    lode_index_stats st;
    lode_index_get_stats(ix, &st);
    cr_assert(st.events > 0);
    lode_index_free(ix);
}

static void make_tree(int n) {
    for (int i = 0; i < n; i++) {
        char rel[64], txt[128];
        snprintf(rel, sizeof rel, "d%d/f%d.py", i % 7, i);
        snprintf(txt, sizeof txt, "def fn_%d(x):\n    return x\n\nclass C%d:\n    pass\n", i, i);
        put(rel, txt);
    }
}

Test(index, cache_reuse) {
    make_tree(40);
    lode_index *ix = open_ws(at("cache"));
    lode_index_stats st;
    lode_index_get_stats(ix, &st);
    cr_assert_eq(st.parsed, 40);
    cr_assert_eq(st.cache_hits, 0);
    cr_assert_not(st.cache_loaded);
    const char *cp = lode_index_cache_path(ix, 0);
    cr_assert(cp && strncmp(cp, at("cache/"), strlen(at("cache/"))) == 0);
    struct stat cs;
    cr_assert_eq(stat(cp, &cs), 0, "cache file %s not written", cp);
    cr_assert_eq(cs.st_mode & 0777, 0600);
    lode_index_free(ix);

    /* A restart parses nothing. */
    ix = open_ws(at("cache"));
    lode_index_get_stats(ix, &st);
    cr_assert(st.cache_loaded);
    cr_assert_eq(st.parsed, 0);
    cr_assert_eq(st.cache_hits, 40);
    cr_assert_eq(st.files, 40);
    cr_assert_eq(n_defs(ix, "fn_17"), 1);
    lode_def d;
    lode_index_lookup(ix, "C17", &d, 1);
    cr_assert_eq(d.sym->kind, LODE_SYM_CLASS);
    cr_assert_eq(d.sym->line, 3);
    lode_index_free(ix);

    /* One file changed, one removed, one added: exactly two parses. */
    put("d3/f3.py", "def changed_fn():\n    pass\n");
    unlink(at("ws/d4/f4.py"));
    put("d9/new.py", "def new_fn():\n    pass\n");
    ix = open_ws(at("cache"));
    lode_index_get_stats(ix, &st);
    cr_assert(st.cache_loaded);
    cr_assert_eq(st.parsed, 2);
    cr_assert_eq(st.cache_hits, 38);
    cr_assert_eq(n_defs(ix, "fn_3"), 0);
    cr_assert_eq(n_defs(ix, "changed_fn"), 1);
    cr_assert_eq(n_defs(ix, "fn_4"), 0);
    cr_assert_eq(n_defs(ix, "new_fn"), 1);
    lode_index_free(ix);

    /* XDG_CACHE_HOME is the default location. */
    setenv("XDG_CACHE_HOME", at("xdg"), 1);
    const char *roots[] = {at("ws")};
    ix = lode_index_open(roots, 1, NULL, NULL);
    cr_assert(strncmp(lode_index_cache_path(ix, 0), at("xdg/lode/index/"), strlen(at("xdg/lode/index/"))) == 0);
    lode_index_free(ix);
}

static char *slurp_bin(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    char *b = malloc(*n);
    cr_assert(fread(b, 1, *n, f) == *n);
    fclose(f);
    return b;
}

static void spit(const char *p, const char *b, size_t n) {
    FILE *f = fopen(p, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

static uint64_t fnv64(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static void expect_rebuilt(int files) {
    lode_index *ix = open_ws(at("cache"));
    lode_index_stats st;
    lode_index_get_stats(ix, &st);
    cr_assert_not(st.cache_loaded);
    cr_assert_eq(st.parsed, (size_t)files);
    cr_assert_eq(st.cache_hits, 0);
    cr_assert_eq(n_defs(ix, "fn_5"), 1);
    cr_assert_eq(lode_index_n_files(ix), (size_t)files);
    lode_index_free(ix);
}

Test(index, corrupt_cache_ignored) {
    make_tree(12);
    lode_index *ix = open_ws(at("cache"));
    char cp[PATH_MAX];
    snprintf(cp, sizeof cp, "%s", lode_index_cache_path(ix, 0));
    lode_index_free(ix);
    size_t n;
    char *good = slurp_bin(cp, &n);
    cr_assert(n > 64);

    /* 1: a flipped payload byte (checksum mismatch) */
    char *b = malloc(n);
    memcpy(b, good, n);
    b[n / 2] ^= 0x40;
    spit(cp, b, n);
    expect_rebuilt(12);
    /* 2: truncated */
    spit(cp, good, n - 7);
    expect_rebuilt(12);
    /* 3: another version */
    memcpy(b, good, n);
    b[8] = 99;
    spit(cp, b, n);
    expect_rebuilt(12);
    /* 4: a well-formed checksum over invalid contents: an unknown language,
     * then a relative path escaping the root. Validation, not trust. */
    memcpy(b, good, n);
    char *lang = memmem(b + 32, n - 32, "python", 6);
    cr_assert(lang);
    memcpy(lang, "pythoX", 6);
    uint64_t sum = fnv64(b + 32, n - 32);
    memcpy(b + 24, &sum, 8);
    spit(cp, b, n);
    expect_rebuilt(12);
    memcpy(b, good, n);
    char *rel = memmem(b + 32, n - 32, "d0/f0.py", 8);
    cr_assert(rel);
    memcpy(rel, "../f0.py", 8);
    sum = fnv64(b + 32, n - 32);
    memcpy(b + 24, &sum, 8);
    spit(cp, b, n);
    expect_rebuilt(12);
    /* 5: garbage and empty */
    spit(cp, "not a cache at all, but long enough to have a header......", 58);
    expect_rebuilt(12);
    spit(cp, "", 0);
    expect_rebuilt(12);
    /* ...and after each rebuild the cache is valid again. */
    ix = open_ws(at("cache"));
    lode_index_stats st;
    lode_index_get_stats(ix, &st);
    cr_assert(st.cache_loaded);
    cr_assert_eq(st.parsed, 0);
    lode_index_free(ix);
    /* A cache of another root is never used for this one. */
    char other[PATH_MAX];
    snprintf(other, sizeof other, "%s", cp);
    mkdir_p(at("ws2"));
    const char *r2[] = {at("ws2")};
    lode_index_opts o = {.cache_dir = at("cache")};
    ix = lode_index_open(r2, 1, &o, NULL);
    spit(lode_index_cache_path(ix, 0), good, n); /* ws's cache under ws2's name */
    cr_assert_eq(lode_index_scan(ix, NULL), LODE_OK);
    lode_index_get_stats(ix, &st);
    cr_assert_not(st.cache_loaded);
    cr_assert_eq(lode_index_n_files(ix), 0);
    lode_index_free(ix);
    free(b);
    free(good);
}

Test(index, threads_do_not_change_the_result) {
    make_tree(150);
    put("bin.c", "int x;");
    const char *roots[] = {at("ws")};
    lode_index *ix[2];
    for (int k = 0; k < 2; k++) {
        lode_index_opts o = {.cache_dir = "", .no_watch = true, .threads = k ? 4 : 1};
        ix[k] = lode_index_open(roots, 1, &o, NULL);
        cr_assert_eq(lode_index_scan(ix[k], NULL), LODE_OK);
    }
    cr_assert_eq(lode_index_n_files(ix[0]), 151);
    cr_assert_eq(lode_index_n_files(ix[1]), 151);
    for (size_t i = 0; i < 151; i++) {
        const char *p = lode_index_file_at(ix[0], i);
        cr_assert_str_eq(p, lode_index_file_at(ix[1], i));
        const lode_file_syms *a = lode_index_file(ix[0], p), *b = lode_index_file(ix[1], p);
        cr_assert_eq(a->n_syms, b->n_syms);
        for (size_t k = 0; k < a->n_syms; k++) {
            cr_assert_str_eq(a->syms[k].name, b->syms[k].name);
            cr_assert_eq(a->syms[k].start, b->syms[k].start);
            cr_assert_eq(a->syms[k].sig_end, b->syms[k].sig_end);
        }
    }
    lode_index_stats s0, s1;
    lode_index_get_stats(ix[0], &s0);
    lode_index_get_stats(ix[1], &s1);
    cr_assert_eq(s0.parsed, 151);
    cr_assert_eq(s1.parsed, 151);
    cr_assert_eq(s0.defs, s1.defs);
    cr_assert_eq(s0.defs, 301); /* fn_i and Ci per file, and bin.c's x */
    lode_index_free(ix[0]);
    lode_index_free(ix[1]);
}

/* A file rewritten with the same size and mtime (coarse timestamps, tools
 * that restore them): the cache entry no longer matches its text and the
 * file is re-parsed. */
Test(index, cache_entry_checked_against_the_file) {
    put("a.py", "def alpha():\n    pass\n");
    lode_index *ix = open_ws(at("cache"));
    lode_index_free(ix);
    struct stat st;
    cr_assert_eq(stat(at("ws/a.py"), &st), 0);
    put("a.py", "def omega():\n    pass\n");
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    cr_assert_eq(utimensat(AT_FDCWD, at("ws/a.py"), ts, 0), 0);
    ix = open_ws(at("cache"));
    lode_index_stats s;
    lode_index_get_stats(ix, &s);
    cr_assert(s.cache_loaded);
    cr_assert_eq(s.parsed, 1);
    cr_assert_eq(s.cache_hits, 0);
    cr_assert_eq(n_defs(ix, "alpha"), 0);
    cr_assert_eq(n_defs(ix, "omega"), 1);
    lode_index_free(ix);
}

/* Random single-byte changes anywhere in the payload, each with a valid
 * checksum: the loader must never crash or let a bad entry through; the
 * index it produces is always right (entries whose stat no longer matches
 * are re-parsed). */
Test(index, cache_byte_mutations_with_valid_checksum) {
    make_tree(6);
    lode_index *ix = open_ws(at("cache"));
    char cp[PATH_MAX];
    snprintf(cp, sizeof cp, "%s", lode_index_cache_path(ix, 0));
    lode_index_free(ix);
    size_t n;
    char *good = slurp_bin(cp, &n);
    char *b = malloc(n);
    uint64_t rng = 12345;
    size_t loaded = 0, rejected = 0;
    for (int it = 0; it < 300; it++) {
        memcpy(b, good, n);
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t pos = 32 + (size_t)((rng >> 33) % (n - 32));
        b[pos] = (char)(b[pos] ^ (char)(1u << ((rng >> 20) % 8)));
        uint64_t sum = fnv64(b + 32, n - 32);
        memcpy(b + 24, &sum, 8);
        spit(cp, b, n);
        ix = open_ws(at("cache"));
        lode_index_stats st;
        lode_index_get_stats(ix, &st);
        if (st.cache_loaded) loaded++;
        else rejected++;
        cr_assert_eq(lode_index_n_files(ix), 6);
        for (int k = 0; k < 6; k++) {
            char nm[16];
            snprintf(nm, sizeof nm, "fn_%d", k);
            lode_def d;
            cr_assert_eq(lode_index_lookup(ix, nm, &d, 1), 1, "iteration %d pos %zu: %s", it, pos, nm);
            /* what cannot be checked without parsing stays within bounds */
            cr_assert((unsigned)d.sym->kind < LODE_SYM_KIND_COUNT);
            cr_assert(d.sym->start <= d.sym->name_start && d.sym->sig_end <= d.sym->end);
            cr_assert_eq(d.sym->line, 0);
        }
        lode_index_free(ix);
    }
    /* Both outcomes happen: the test exercises the validator, not only the checksum. */
    cr_assert(rejected > 0 && loaded > 0, "loaded %zu rejected %zu", loaded, rejected);
    free(b);
    free(good);
}

Test(index, open_errors) {
    lode_error err = {0};
    const char *bad[] = {at("does-not-exist")};
    cr_assert_null(lode_index_open(bad, 1, NULL, &err));
    cr_assert_eq(err.status, LODE_ERR_NOT_FOUND);
    cr_assert(strstr(err.text, "does-not-exist"));
    cr_assert_null(lode_index_open(NULL, 0, NULL, NULL));
    put("f.c", "int f;\n");
    const char *file[] = {at("ws/f.c")};
    cr_assert_null(lode_index_open(file, 1, NULL, NULL));
    /* Nested roots: files are indexed once. */
    put("sub/g.c", "int g;\n");
    const char *nested[] = {at("ws"), at("ws/sub")};
    lode_index_opts o = {.cache_dir = ""};
    lode_index *ix = lode_index_open(nested, 2, &o, NULL);
    cr_assert_eq(lode_index_scan(ix, NULL), LODE_OK);
    cr_assert_eq(lode_index_n_files(ix), 2);
    cr_assert_eq(n_defs(ix, "g"), 1);
    lode_index_free(ix);
    lode_index_free(NULL);
}

/* ---- import resolution on the committed fixture project ------------------------------ */
static const char *resolve(lode_index *ix, const char *from_rel, const char *module) {
    char from[PATH_MAX];
    char *r = realpath(PROJ, NULL);
    snprintf(from, sizeof from, "%s/%s", r, from_rel);
    free(r);
    const lode_file_syms *fs = lode_index_file(ix, from);
    cr_assert(fs, "%s not indexed", from);
    for (size_t i = 0; i < fs->n_imports; i++)
        if (strcmp(fs->imports[i].module, module) == 0) return lode_index_resolve_import(ix, from, &fs->imports[i]);
    cr_assert_fail("%s has no import %s", from_rel, module);
    return NULL;
}

static void expect_res(lode_index *ix, const char *from, const char *module, const char *want_rel) {
    const char *got = resolve(ix, from, module);
    if (!want_rel) {
        cr_assert_null(got, "%s: %s resolved to %s", from, module, got);
        return;
    }
    cr_assert(got, "%s: %s not resolved", from, module);
    char *r = realpath(PROJ, NULL);
    char want[PATH_MAX];
    snprintf(want, sizeof want, "%s/%s", r, want_rel);
    free(r);
    cr_assert_str_eq(got, want, "%s: %s", from, module);
}

Test(index_resolve, every_language) {
    const char *roots[] = {PROJ};
    lode_index_opts o = {.cache_dir = "", .no_watch = true};
    lode_index *ix = lode_index_open(roots, 1, &o, NULL);
    cr_assert(ix);
    cr_assert_eq(lode_index_scan(ix, NULL), LODE_OK);
    cr_assert_eq(lode_index_watch_fd(ix), -1);
    expect_res(ix, "c/src/main.c", "util.h", "c/src/util.h");
    expect_res(ix, "c/src/main.c", "geo/point.h", "c/include/geo/point.h");
    expect_res(ix, "c/src/main.c", "stdio.h", NULL);
    expect_res(ix, "c/src/main.c", "missing.h", NULL);
    expect_res(ix, "py/pkg/sub/views.py", "..models", "py/pkg/models.py");
    expect_res(ix, "py/pkg/sub/views.py", ".", "py/pkg/sub/__init__.py");
    expect_res(ix, "py/pkg/sub/views.py", "pkg.models", "py/pkg/models.py");
    expect_res(ix, "py/pkg/sub/views.py", "os", NULL);
    expect_res(ix, "js/app.js", "./lib/parse", "js/lib/parse.js");
    expect_res(ix, "js/app.js", "./lib", "js/lib/index.js");
    expect_res(ix, "js/app.js", "react", NULL);
    expect_res(ix, "js/app.js", "./config.json", NULL);
    expect_res(ix, "ts/main.ts", "./components/button.js", "ts/components/button.tsx");
    expect_res(ix, "ts/main.ts", "./components", "ts/components/index.ts");
    expect_res(ix, "go/main.go", "example.com/shop/internal/cache", "go/internal/cache/cache.go");
    expect_res(ix, "go/main.go", "fmt", NULL);
    expect_res(ix, "rs/src/main.rs", "net", "rs/src/net/mod.rs");
    expect_res(ix, "rs/src/main.rs", "crate::net::client::Client", "rs/src/net/client.rs");
    expect_res(ix, "rs/src/main.rs", "std::io", NULL);
    expect_res(ix, "rs/src/net/mod.rs", "client", "rs/src/net/client.rs");
    expect_res(ix, "java/src/com/acme/App.java", "com.acme.util.Strings", "java/src/com/acme/util/Strings.java");
    expect_res(ix, "java/src/com/acme/App.java", "java.util.List", NULL);
    expect_res(ix, "lua/main.lua", "app.greet", "lua/app/greet.lua");
    expect_res(ix, "rb/main.rb", "./lib/shop", "rb/lib/shop.rb");
    expect_res(ix, "rb/main.rb", "json", NULL);
    /* Definitions across the project. */
    lode_def d;
    cr_assert_eq(lode_index_lookup(ix, "util_add", &d, 1), 1);
    cr_assert(strstr(d.path, "c/src/util.h"));
    cr_assert_eq(lode_index_lookup(ix, "Client", &d, 1), 1);
    lode_index_free(ix);
}
