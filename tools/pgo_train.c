/*
 * pgo_train.c — the training run of the profile-guided build of the
 * tree-sitter runtime and grammars (Makefile, LODE_PGO).
 *
 *   pgo_train [-n FILES_PER_LANGUAGE] [-s MAX_BYTES] ROOT...
 *
 * Linked against the instrumented objects (-fprofile-generate), it does what
 * the index does with every file (lsp/syntax.c, lsp/syntax_walk.c): parse
 * the whole text with one parser per language, walk every node with a tree
 * cursor, reading its symbol, type, field and byte range, then delete the
 * tree. The gcda files it leaves behind steer the final -fprofile-use
 * compile. Roots are walked in sorted order (the profile does not depend on
 * readdir order); missing roots are skipped, symlinks are not followed.
 *
 * Standalone on purpose: it needs neither liblode nor a build folder, so
 * the ASan build (which shares the grammar archive) can train it too. The
 * extension table is a subset of g_langs in lsp/syntax.c.
 *
 * Exit status: 0 when at least one file was parsed, 1 otherwise (the
 * Makefile then builds without profiles).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../lsp/ts_grammars.h"

typedef struct train_lang {
    const char *name;
    const TSLanguage *(*ts)(void);
    const char *exts; /* " .a .b " */
    TSParser *parser;
    unsigned files;
    size_t bytes;
} train_lang;

static train_lang g_train[] = {
    {.name = "c", .ts = tree_sitter_c, .exts = " .c .h "},
    {.name = "cpp", .ts = tree_sitter_cpp, .exts = " .cc .cpp .cxx .hh .hpp .hxx .tcc "},
    {.name = "python", .ts = tree_sitter_python, .exts = " .py .pyi "},
    {.name = "javascript", .ts = tree_sitter_javascript, .exts = " .js .mjs .cjs .jsx "},
    {.name = "typescript", .ts = tree_sitter_typescript, .exts = " .ts .mts .cts "},
    {.name = "tsx", .ts = tree_sitter_tsx, .exts = " .tsx "},
    {.name = "go", .ts = tree_sitter_go, .exts = " .go "},
    {.name = "rust", .ts = tree_sitter_rust, .exts = " .rs "},
    {.name = "java", .ts = tree_sitter_java, .exts = " .java "},
    {.name = "lua", .ts = tree_sitter_lua, .exts = " .lua "},
    {.name = "bash", .ts = tree_sitter_bash, .exts = " .sh .bash "},
    {.name = "json", .ts = tree_sitter_json, .exts = " .json "},
    {.name = "ruby", .ts = tree_sitter_ruby, .exts = " .rb .rake .gemspec "},
};
#define N_TRAIN (sizeof g_train / sizeof g_train[0])

static unsigned g_max_files = 300;
static size_t g_max_bytes = 256 * 1024;
static char *g_buf;
static size_t g_cap;

static train_lang *lang_for(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot || strlen(dot) > 12) return NULL;
    char key[16];
    snprintf(key, sizeof key, " %s ", dot);
    for (size_t i = 0; i < N_TRAIN; i++)
        if (strstr(g_train[i].exts, key)) return &g_train[i];
    return NULL;
}

/* Every node once, depth first, as the index's walker visits them. */
static unsigned long walk(TSTree *tree) {
    TSTreeCursor c = ts_tree_cursor_new(ts_tree_root_node(tree));
    unsigned long n = 0, sink = 0;
    for (;;) {
        TSNode node = ts_tree_cursor_current_node(&c);
        sink += ts_node_symbol(node) + ts_node_start_byte(node) + ts_tree_cursor_current_field_id(&c);
        if (ts_node_is_named(node)) sink += (unsigned long)ts_node_type(node)[0] + ts_node_end_byte(node);
        n++;
        if (ts_tree_cursor_goto_first_child(&c)) continue;
        while (!ts_tree_cursor_goto_next_sibling(&c))
            if (!ts_tree_cursor_goto_parent(&c)) {
                ts_tree_cursor_delete(&c);
                return n + (sink & 1);
            }
    }
}

static void train_file(train_lang *l, const char *path, size_t size) {
    if (l->files >= g_max_files || size == 0 || size > g_max_bytes) return;
    FILE *f = fopen(path, "rb");
    if (!f) return;
    if (size > g_cap) {
        char *nb = realloc(g_buf, size);
        if (!nb) {
            fclose(f);
            return;
        }
        g_buf = nb;
        g_cap = size;
    }
    size_t len = fread(g_buf, 1, size, f);
    fclose(f);
    if (memchr(g_buf, 0, len)) return; /* binary */
    if (!l->parser) {
        l->parser = ts_parser_new();
        if (!ts_parser_set_language(l->parser, l->ts())) {
            fprintf(stderr, "pgo_train: %s: ABI mismatch\n", l->name);
            exit(1);
        }
    }
    TSTree *t = ts_parser_parse_string(l->parser, NULL, g_buf, (uint32_t)len);
    if (!t) return;
    walk(t);
    ts_tree_delete(t);
    l->files++;
    l->bytes += len;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void train_dir(const char *dir, int depth) {
    if (depth > 24) return;
    DIR *d = opendir(dir);
    if (!d) return;
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue; /* ., .., .git and other hidden entries */
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn) break;
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        if (names[i] && (size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) < sizeof path &&
            lstat(path, &st) == 0) {
            if (S_ISDIR(st.st_mode)) train_dir(path, depth + 1);
            else if (S_ISREG(st.st_mode)) {
                train_lang *l = lang_for(names[i]);
                if (l) train_file(l, path, (size_t)st.st_size);
            }
        }
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv) {
    int i = 1;
    for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        if (!strcmp(argv[i], "-n")) g_max_files = (unsigned)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-s")) g_max_bytes = (size_t)atol(argv[i + 1]);
        else break;
    }
    if (i >= argc) {
        fprintf(stderr, "usage: pgo_train [-n FILES_PER_LANGUAGE] [-s MAX_BYTES] ROOT...\n");
        return 2;
    }
    for (; i < argc; i++) train_dir(argv[i], 0);
    unsigned total = 0;
    size_t bytes = 0;
    printf("pgo_train:");
    for (size_t k = 0; k < N_TRAIN; k++) {
        train_lang *l = &g_train[k];
        if (l->parser) ts_parser_delete(l->parser);
        printf(" %s %u", l->name, l->files);
        total += l->files;
        bytes += l->bytes;
    }
    printf("; %u files, %.1f MB\n", total, (double)bytes / 1e6);
    free(g_buf);
    return total ? 0 : 1;
}
