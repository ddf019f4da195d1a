/*
 * bench_index.c — workspace-index and incremental-reparse benchmarks
 * (`make bench` runs it through tools/bench.sh).
 *
 *   bench_index gen DIR N          generate a mixed-language repository of N files under DIR
 *   bench_index index ROOT...      cold scan (no cache), then a restart from the disk cache
 *   bench_index reparse LINES      one-character edits in a LINES-line C and Python file
 *   bench_index phases ROOT        per-phase CPU time over every file under ROOT held in memory:
 *                                  parse, tree delete, walker and query-cursor extraction
 *   bench_index compare PATH...    the table-driven extractor against the query cursor on every
 *                                  file of a known language under PATH (exit 1 on any difference)
 *   bench_index dump PATH...       per file: a hash of its tree's S-expression and every field of
 *                                  its definitions and imports (diff two builds' output)
 *
 * Everything runs on one thread, so files/s is per core. Output: one JSON
 * object per line.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lode_index.h"
#include "lode_syntax.h"
#include "lode_ts_alloc.h"

/* CPU time of the process: the per-core cost even on a shared, loaded machine. */
static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *m) {
    fprintf(stderr, "bench_index: %s\n", m);
    exit(1);
}

static uint64_t g_rng = 88172645463325252ull;
static uint32_t rnd(uint32_t n) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng % n);
}

static void mkdir_p(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *s = buf + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        mkdir(buf, 0755);
        *s = '/';
    }
    mkdir(buf, 0755);
}

/* ---- generator ---------------------------------------------------------------- */
typedef struct tmpl {
    const char *ext, *head, *unit; /* unit: printf format with %d for a unique id (used 4x) */
} tmpl;

static const tmpl k_tmpl[] = {
    {".c", "#include <stdio.h>\n#include \"common.h\"\n\n",
     "/* Compute the value for item %d. */\nstatic int item_%d(const int *v, int n) {\n    int s = 0;\n"
     "    for (int i = 0; i < n; i++) s += v[i] * %d;\n    return s + helper_%d(n);\n}\n\n"},
    {".py", "import os\nfrom .common import helper\n\n",
     "def item_%d(values, n):\n    \"\"\"Compute the value.\"\"\"\n    total = 0\n    for v in values[:n]:\n"
     "        total += v * %d\n    return total + helper(%d) + %d\n\n\n"},
    {".js", "import { helper } from \"./common.js\";\n\n",
     "export function item_%d(values, n) {\n  let s = 0;\n  for (let i = 0; i < n; i++) s += values[i] * %d;\n"
     "  return s + helper(%d, %d);\n}\n\n"},
    {".ts", "import { helper } from \"./common\";\n\n",
     "export function item_%d(values: number[], n: number): number {\n  let s = 0;\n"
     "  for (let i = 0; i < n; i++) s += values[i] * %d;\n  return s + helper(%d) + %d;\n}\n\n"},
    {".go", "package gen\n\nimport \"fmt\"\n\n",
     "func Item%d(values []int, n int) int {\n\ts := 0\n\tfor i := 0; i < n; i++ {\n\t\ts += values[i] * %d\n\t}\n"
     "\tfmt.Println(%d)\n\treturn s + %d\n}\n\n"},
    {".rs", "use crate::common::helper;\n\n",
     "pub fn item_%d(values: &[i64], n: usize) -> i64 {\n    let mut s = 0;\n    for v in values.iter().take(n) {\n"
     "        s += v * %d;\n    }\n    s + helper(%d) + %d\n}\n\n"},
    {".java", "package gen;\n\nimport java.util.List;\n\npublic class Gen {\n",
     "    public static int item%d(List<Integer> values, int n) {\n        int s = 0;\n"
     "        for (int i = 0; i < n; i++) s += values.get(i) * %d;\n        return s + %d + %d;\n    }\n\n"},
    {".lua", "local common = require(\"gen.common\")\nlocal M = {}\n\n",
     "function M.item_%d(values, n)\n  local s = 0\n  for i = 1, n do s = s + values[i] * %d end\n"
     "  return s + common.helper(%d) + %d\nend\n\n"},
    {".rb", "require_relative \"common\"\n\nmodule Gen\n",
     "  def self.item_%d(values, n)\n    s = 0\n    values.first(n).each { |v| s += v * %d }\n"
     "    s + helper(%d) + %d\n  end\n\n"},
    {".cpp", "#include <vector>\n#include \"common.hpp\"\n\nnamespace gen {\n\n",
     "int item_%d(const std::vector<int> &v) {\n    int s = 0;\n    for (int x : v) s += x * %d;\n"
     "    return s + helper(%d) + %d;\n}\n\n"},
};

static int gen(const char *dir, int n) {
    char path[4096];
    for (int i = 0; i < n; i++) {
        const tmpl *t = &k_tmpl[i % (int)(sizeof k_tmpl / sizeof k_tmpl[0])];
        snprintf(path, sizeof path, "%s/pkg%02d/mod%02d", dir, i % 37, (i / 37) % 23);
        mkdir_p(path);
        snprintf(path + strlen(path), sizeof path - strlen(path), "/file%05d%s", i, t->ext);
        FILE *f = fopen(path, "w");
        if (!f) die(strerror(errno));
        fputs(t->head, f);
        int units = 4 + (int)rnd(28); /* ~30-260 lines per file */
        for (int u = 0; u < units; u++) {
            int id = i * 100 + u;
            fprintf(f, t->unit, id, id, id, id);
        }
        if (!strcmp(t->ext, ".java")) fputs("}\n", f);
        if (!strcmp(t->ext, ".rb")) fputs("end\n", f);
        if (!strcmp(t->ext, ".cpp")) fputs("}  // namespace gen\n", f);
        if (!strcmp(t->ext, ".lua")) fputs("return M\n", f);
        fclose(f);
    }
    return 0;
}

/* ---- index ----------------------------------------------------------------------- */
static int bench_index(const char *const *roots, size_t n_roots) {
    char cache[256];
    snprintf(cache, sizeof cache, "/tmp/lode-bench-index-%ld", (long)getpid());
    mkdir_p(cache);
    const char *te = getenv("LODE_INDEX_THREADS");
    unsigned threads = te ? (unsigned)atoi(te) : 1;
    lode_index_opts o = {.cache_dir = cache, .no_watch = true, .threads = threads ? threads : 1};
    lode_error err = {0};
    double t0 = lode_time_s(), c0 = cpu_s();
    lode_index *ix = lode_index_open(roots, n_roots, &o, &err);
    if (!ix) die(err.text);
    if (lode_index_scan(ix, &err) != LODE_OK) die(err.text);
    double t1 = lode_time_s(), c1 = cpu_s();
    lode_index_stats st;
    lode_index_get_stats(ix, &st);
    /* bytes parsed, for MB/s */
    size_t bytes = 0;
    for (size_t i = 0; i < lode_index_n_files(ix); i++) {
        struct stat s;
        if (stat(lode_index_file_at(ix, i), &s) == 0) bytes += (size_t)s.st_size;
    }
    /* lookups: every definition name of the first 500 files */
    size_t lookups = 0, hits = 0;
    double l0 = lode_time_s();
    for (size_t i = 0; i < lode_index_n_files(ix) && i < 500; i++) {
        const lode_file_syms *fs = lode_index_file(ix, lode_index_file_at(ix, i));
        for (size_t k = 0; fs && k < fs->n_syms; k++) {
            lode_def d[4];
            hits += lode_index_lookup(ix, fs->syms[k].name, d, 4) > 0;
            lookups++;
        }
    }
    double l1 = lode_time_s();
    lode_index_free(ix); /* also writes the cache */
    double t2 = lode_time_s();
    ix = lode_index_open(roots, n_roots, &o, &err);
    if (!ix || lode_index_scan(ix, &err) != LODE_OK) die(err.text);
    double t3 = lode_time_s();
    lode_index_stats st2;
    lode_index_get_stats(ix, &st2);
    lode_index_free(ix);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache);
    if (system(cmd) != 0) fprintf(stderr, "bench_index: could not remove %s\n", cache);
    printf("{\"threads\": %u, \"files\": %zu, \"defs\": %zu, \"mbytes\": %.1f, \"cold_cpu_s\": %.3f, \"cold_files_per_cpu_s\": %.0f, "
           "\"cold_s\": %.3f, \"cold_files_per_s\": %.0f, "
           "\"cold_mb_per_s\": %.1f, \"skipped_ignored\": %zu, \"skipped_large\": %zu, \"skipped_binary\": %zu, "
           "\"skipped_generated\": %zu, \"cache_save_s\": %.3f, \"warm_s\": %.3f, \"warm_files_per_s\": %.0f, "
           "\"warm_parsed\": %zu, \"warm_cache_hits\": %zu, \"lookup_us\": %.2f, \"lookup_hits\": %zu}\n",
           o.threads, st.files, st.defs, bytes / 1e6, c1 - c0, st.files / (c1 - c0), t1 - t0, st.files / (t1 - t0), bytes / 1e6 / (t1 - t0), st.skipped_ignored,
           st.skipped_large, st.skipped_binary, st.skipped_generated, t2 - l1, t3 - t2, st2.files / (t3 - t2),
           st2.parsed, st2.cache_hits, lookups ? (l1 - l0) * 1e6 / lookups : 0.0, hits);
    return 0;
}

/* ---- compare: walker vs query cursor ------------------------------------------------ */
/* One line per definition and import, every field. */
static char *dump_syms(const lode_file_syms *fs, size_t *n) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, n);
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

typedef struct cmp_stats {
    size_t files, same, differ, defs, imports;
} cmp_stats;

static bool g_dump; /* `dump` mode: print the walker's dump, no comparison */

static void compare_file(const char *path, cmp_stats *st) {
    const lode_lang *l = lode_lang_for_path(path);
    if (!l) return;
    FILE *f = fopen(path, "rb");
    if (!f) return;
    char *src = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&src, &len);
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, k, m);
    fclose(f);
    fclose(m);
    if (len > (1u << 20) || memchr(src, 0, len < 8192 ? len : 8192)) {
        free(src);
        return;
    }
    TSTree *t = lode_syntax_parse(l, src, len);
    lode_file_syms a = {0}, b = {0};
    if (g_dump) {
        /* The whole tree as an S-expression, hashed (FNV-1a), then every field
         * of every definition and import: equal across two builds means the
         * same trees and the same index. */
        char *sx = t ? ts_node_string(ts_tree_root_node(t)) : NULL;
        uint64_t h = 1469598103934665603ull;
        for (const char *c = sx; c && *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
        lode_ts_free(sx); /* tree-sitter's memory: its allocator */
        size_t na = 0;
        char *da = NULL;
        if (t && lode_syntax_symbols(l, src, len, t, &a, NULL) == LODE_OK) da = dump_syms(&a, &na);
        printf("== %s %016llx\n%s", path, (unsigned long long)h, da ? da : "(no symbols)\n");
        free(da);
        st->files++;
        st->defs += a.n_syms, st->imports += a.n_imports;
    } else if (t && lode_syntax_symbols(l, src, len, t, &a, NULL) == LODE_OK &&
        lode_syntax_symbols_query(l, src, len, t, &b, NULL) == LODE_OK) {
        size_t na, nb;
        char *da = dump_syms(&a, &na), *db = dump_syms(&b, &nb);
        st->files++;
        st->defs += b.n_syms, st->imports += b.n_imports;
        if (na == nb && memcmp(da, db, na) == 0) {
            st->same++;
        } else {
            st->differ++;
            if (st->differ <= 20) fprintf(stderr, "DIFF %s\n--- walker\n%s--- query\n%s", path, da, db);
        }
        free(da);
        free(db);
    }
    lode_file_syms_clear(&a);
    lode_file_syms_clear(&b);
    if (t) ts_tree_delete(t);
    free(src);
}

static void compare_tree(const char *path, cmp_stats *st, int depth) {
    struct stat s;
    if (lstat(path, &s) != 0) return;
    if (S_ISREG(s.st_mode)) {
        compare_file(path, st);
        return;
    }
    if (!S_ISDIR(s.st_mode) || depth > 32) return;
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    char sub[4096];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, ".git")) continue;
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        compare_tree(sub, st, depth + 1);
    }
    closedir(d);
}

static int bench_compare(char **paths, int n) {
    cmp_stats st = {0};
    for (int i = 0; i < n; i++) compare_tree(paths[i], &st, 0);
    if (g_dump) {
        fprintf(stderr, "{\"dump_files\": %zu, \"defs\": %zu, \"imports\": %zu}\n", st.files, st.defs, st.imports);
        return 0;
    }
    printf("{\"compare_files\": %zu, \"same\": %zu, \"differ\": %zu, \"defs\": %zu, \"imports\": %zu, \"walked\": \"",
           st.files, st.same, st.differ, st.defs, st.imports);
    for (size_t i = 0; i < lode_lang_count(); i++)
        if (lode_syntax_symbols_walked(lode_lang_at(i))) printf("%s%s", i ? " " : "", lode_lang_name(lode_lang_at(i)));
    printf("\"}\n");
    return st.differ ? 1 : 0;
}

/* ---- phases -------------------------------------------------------------------------- */
typedef struct mfile {
    const lode_lang *l;
    char *src;
    size_t len;
} mfile;

typedef struct mset {
    mfile *f;
    size_t n, cap;
} mset;

static void load_tree(const char *path, mset *ms, int depth) {
    struct stat s;
    if (lstat(path, &s) != 0) return;
    if (S_ISDIR(s.st_mode) && depth < 32) {
        DIR *d = opendir(path);
        if (!d) return;
        struct dirent *e;
        char sub[4096];
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            load_tree(sub, ms, depth + 1);
        }
        closedir(d);
        return;
    }
    const lode_lang *l = S_ISREG(s.st_mode) ? lode_lang_for_path(path) : NULL;
    if (!l || s.st_size > (1 << 20)) return;
    FILE *f = fopen(path, "rb");
    if (!f) return;
    char *src = malloc((size_t)s.st_size + 1);
    size_t n = fread(src, 1, (size_t)s.st_size, f);
    fclose(f);
    if (ms->n == ms->cap) ms->cap = ms->cap ? ms->cap * 2 : 1024, ms->f = realloc(ms->f, ms->cap * sizeof *ms->f);
    ms->f[ms->n++] = (mfile){l, src, n};
}

static int bench_phases(const char *root) {
    mset ms = {0};
    load_tree(root, &ms, 0);
    TSTree **trees = calloc(ms.n ? ms.n : 1, sizeof *trees);
    lode_syntax_scratch *ss = lode_syntax_scratch_new();
    /* warm-up: parsers made, walker tables and queries built */
    for (size_t i = 0; i < ms.n && i < 64; i++) {
        lode_file_syms fs;
        lode_syntax_symbols_with(ss, ms.f[i].l, ms.f[i].src, ms.f[i].len, NULL, &fs, NULL);
        lode_file_syms_clear(&fs);
        TSTree *t = lode_syntax_parse(ms.f[i].l, ms.f[i].src, ms.f[i].len);
        lode_syntax_symbols_query(ms.f[i].l, ms.f[i].src, ms.f[i].len, t, &fs, NULL);
        lode_file_syms_clear(&fs);
        ts_tree_delete(t);
    }
    /* One file at a time, as a scan does (parse, extract, delete), each phase
     * timed on its own; the query cursor runs on the same trees. */
    TSParser *ps[64] = {0};
    double tp = 0, tw = 0, tq = 0, td = 0;
    size_t defs_w = 0, defs_q = 0;
    for (size_t i = 0; i < ms.n; i++) {
        size_t li = 0;
        while (lode_lang_at(li) != ms.f[i].l) li++;
        if (!ps[li]) ps[li] = ts_parser_new(), ts_parser_set_language(ps[li], lode_lang_ts(ms.f[i].l));
        lode_file_syms fs;
        double c0 = cpu_s();
        TSTree *t = ts_parser_parse_string(ps[li], NULL, ms.f[i].src, (uint32_t)ms.f[i].len);
        double c1 = cpu_s();
        lode_syntax_symbols_with(ss, ms.f[i].l, ms.f[i].src, ms.f[i].len, t, &fs, NULL);
        double c2 = cpu_s();
        defs_w += fs.n_syms;
        lode_file_syms_clear(&fs);
        double c3 = cpu_s();
        lode_syntax_symbols_query(ms.f[i].l, ms.f[i].src, ms.f[i].len, t, &fs, NULL);
        double c4 = cpu_s();
        defs_q += fs.n_syms;
        lode_file_syms_clear(&fs);
        double c5 = cpu_s();
        ts_tree_delete(t);
        double c6 = cpu_s();
        tp += c1 - c0, tw += c2 - c1, tq += c4 - c3, td += c6 - c5;
    }
    (void)trees;
    printf("{\"files\": %zu, \"parse_cpu_s\": %.3f, \"walker_cpu_s\": %.3f, \"query_cpu_s\": %.3f, \"delete_cpu_s\": %.3f, "
           "\"defs_walker\": %zu, \"defs_query\": %zu}\n",
           ms.n, tp, tw, tq, td, defs_w, defs_q);
    for (size_t i = 0; i < 64; i++)
        if (ps[i]) ts_parser_delete(ps[i]);
    lode_syntax_scratch_free(ss);
    for (size_t i = 0; i < ms.n; i++) free(ms.f[i].src);
    free(ms.f);
    free(trees);
    return 0;
}

/* ---- reparse ------------------------------------------------------------------------ */
static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bench_reparse_lang(const char *lang, const char *unit, int lines_per_unit, int lines) {
    (void)lines_per_unit;
    size_t cap = (size_t)lines * 64 + 4096, n = 0;
    char *src = malloc(cap);
    int real_lines = 0;
    for (int u = 0; real_lines < lines && n + strlen(unit) + 64 < cap; u++) {
        size_t k = (size_t)snprintf(src + n, cap - n, unit, u, u, u, u);
        for (size_t i = n; i < n + k; i++) real_lines += src[i] == '\n';
        n += k;
    }
    const lode_lang *l = lode_lang_for_id(lang);
    double f0 = lode_time_s();
    lode_sdoc *d = lode_sdoc_new(l, src, n);
    double f1 = lode_time_s();
    if (!d) die("sdoc");
    enum { EDITS = 400 };
    double *t = malloc(EDITS * sizeof *t), *c = malloc(EDITS * sizeof *c);
    for (int e = 0; e < EDITS; e++) {
        /* a one-character edit at a random spot, alternating insert/delete so the
         * document stays the same size: type 'x', then delete it */
        size_t len;
        const char *txt = lode_sdoc_text(d, &len);
        static size_t at;
        if (e % 2 == 0) at = rnd((uint32_t)len);
        (void)txt;
        double a = lode_time_s(), ca = cpu_s();
        lode_status s = e % 2 == 0 ? lode_sdoc_edit(d, at, at, "x", 1, NULL) : lode_sdoc_edit(d, at, at + 1, "", 0, NULL);
        t[e] = lode_time_s() - a;
        c[e] = cpu_s() - ca;
        if (s != LODE_OK) die("edit");
    }
    qsort(t, EDITS, sizeof *t, cmp_d);
    qsort(c, EDITS, sizeof *c, cmp_d);
    double sum = 0, csum = 0;
    for (int e = 0; e < EDITS; e++) sum += t[e], csum += c[e];
    printf("{\"lang\": \"%s\", \"lines\": %d, \"bytes\": %zu, \"full_parse_ms\": %.2f, \"edits\": %d, "
           "\"reparse_ms_mean\": %.3f, \"reparse_ms_p50\": %.3f, \"reparse_ms_p99\": %.3f, \"reparse_ms_max\": %.3f, "
           "\"reparse_cpu_ms_mean\": %.3f, \"reparse_cpu_ms_p50\": %.3f, \"reparse_cpu_ms_p99\": %.3f}\n",
           lang, real_lines, n, (f1 - f0) * 1e3, EDITS, sum / EDITS * 1e3, t[EDITS / 2] * 1e3,
           t[EDITS * 99 / 100] * 1e3, t[EDITS - 1] * 1e3, csum / EDITS * 1e3, c[EDITS / 2] * 1e3,
           c[EDITS * 99 / 100] * 1e3);
    free(t);
    free(c);
    lode_sdoc_free(d);
    free(src);
}

static int bench_reparse(int lines) {
    bench_reparse_lang("c", k_tmpl[0].unit, 8, lines);
    bench_reparse_lang("python", k_tmpl[1].unit, 9, lines);
    bench_reparse_lang("typescript", k_tmpl[3].unit, 7, lines);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "gen")) return gen(argv[2], atoi(argv[3]));
    if (argc >= 3 && !strcmp(argv[1], "index")) return bench_index((const char *const *)argv + 2, (size_t)argc - 2);
    if (argc >= 3 && !strcmp(argv[1], "reparse")) return bench_reparse(atoi(argv[2]));
    if (argc >= 3 && !strcmp(argv[1], "compare")) return bench_compare(argv + 2, argc - 2);
    if (argc >= 3 && !strcmp(argv[1], "dump")) return g_dump = true, bench_compare(argv + 2, argc - 2);
    if (argc >= 3 && !strcmp(argv[1], "phases")) return bench_phases(argv[2]);
    fprintf(stderr, "usage: bench_index gen DIR N | index ROOT... | reparse LINES | compare PATH... | phases ROOT\n");
    return 2;
}
