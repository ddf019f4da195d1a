/*
 * index.c — the workspace index (lode_index.h): walking the roots, change
 * detection by stat, per-file extraction, the name table, documents and
 * file watching. The disk cache is in index_cache.c, import resolution in
 * index_resolve.c, the hash map and gitignore matching in index_util.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index_impl.h"

#define DEFAULT_MAX_BYTES (1u << 20)
#define DEFAULT_MAX_FILES 100000
#define SNIFF_BYTES 8192

/* Directories never walked: VCS metadata, dependency and tool caches,
 * virtualenvs. (Build outputs are normally in .gitignore; a directory with a
 * CACHEDIR.TAG is skipped too.) */
static const char *const k_skip_dirs[] = {
    ".git", ".hg", ".svn", "node_modules", "bower_components", "vendor", "__pycache__", ".venv", "venv",
    ".tox", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".gradle", ".idea", ".next", ".nuxt", ".cache",
    ".direnv", ".eggs", "site-packages", ".terraform", ".yarn", ".pnpm-store",
};

static bool skip_dir_name(const char *n) {
    for (size_t i = 0; i < sizeof k_skip_dirs / sizeof k_skip_dirs[0]; i++)
        if (strcmp(n, k_skip_dirs[i]) == 0) return true;
    return false;
}

static uint64_t mtime_ns(const struct stat *st) {
    return (uint64_t)st->st_mtim.tv_sec * 1000000000ull + (uint64_t)st->st_mtim.tv_nsec;
}

static char *path_join(const char *a, const char *b) {
    size_t al = strlen(a), bl = strlen(b);
    char *r = lode_xmalloc(al + bl + 2);
    memcpy(r, a, al);
    size_t o = al;
    if (!(al && a[al - 1] == '/')) r[o++] = '/';
    memcpy(r + o, b, bl + 1);
    return r;
}

/* Canonical form of a path that may not exist yet: realpath of the longest
 * existing prefix (its directory), then the rest lexically. */
static char *canon(const char *path) {
    if (!path || !*path) return NULL;
    char *r = realpath(path, NULL);
    if (r) {
        char *c = lode_xstrdup(r);
        free(r);
        return c;
    }
    char *abs;
    if (path[0] == '/') {
        abs = lode_xstrdup(path);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) return NULL;
        abs = path_join(cwd, path);
    }
    lode__path_normalize(abs);
    char *slash = strrchr(abs, '/');
    if (!slash || slash == abs) return abs;
    *slash = 0;
    char *d = realpath(abs, NULL);
    *slash = '/';
    if (!d) return abs;
    char *c = path_join(d, slash + 1);
    free(d);
    lode_free(abs);
    return c;
}

static int root_of(const lode_index *ix, const char *canon_path) {
    for (size_t i = 0; i < ix->n_roots; i++) {
        size_t n = ix->root_len[i];
        if (strncmp(canon_path, ix->roots[i], n) == 0 && (canon_path[n] == '/' || canon_path[n] == 0 || n == 1))
            return (int)i;
    }
    return -1;
}

bool lode_index_contains(const lode_index *ix, const char *path) {
    if (!ix || !path) return false;
    char *c = canon(path);
    bool ok = c && root_of(ix, c) >= 0;
    lode_free(c);
    return ok;
}

/* ---- files and the name table --------------------------------------------------- */
lode__ixfile *lode__ix_file(const lode_index *ix, const char *canon_path) {
    return lode__smap_get(&ix->files, canon_path);
}

static void names_add(lode_index *ix, lode__ixfile *f) {
    for (uint32_t i = 0; i < f->syms.n_syms; i++) {
        const char *nm = f->syms.syms[i].name;
        lode__namelist *nl = lode__smap_get(&ix->names, nm);
        if (!nl) {
            size_t nl_len = strlen(nm);
            nl = lode_xmalloc(sizeof *nl + nl_len + 1);
            memset(nl, 0, sizeof *nl);
            memcpy(nl->name, nm, nl_len + 1);
            nl->e = &nl->one;
            nl->cap = 1;
            lode__smap_put(&ix->names, nl->name, nl);
        }
        if (nl->n == nl->cap) {
            nl->cap *= 2;
            if (nl->e == &nl->one) nl->e = memcpy(lode_xmalloc(nl->cap * sizeof *nl->e), &nl->one, sizeof nl->one);
            else nl->e = lode_xrealloc(nl->e, nl->cap * sizeof *nl->e);
        }
        nl->e[nl->n++] = (lode__nent){f, i};
        nl->sorted = false;
    }
    ix->st.defs += f->syms.n_syms;
}

static void names_remove(lode_index *ix, lode__ixfile *f) {
    for (uint32_t i = 0; i < f->syms.n_syms; i++) {
        lode__namelist *nl = lode__smap_get(&ix->names, f->syms.syms[i].name);
        if (!nl) continue;
        size_t w = 0;
        for (size_t k = 0; k < nl->n; k++)
            if (nl->e[k].f != f) nl->e[w++] = nl->e[k];
        nl->n = w;
        if (w == 0) {
            lode__smap_del(&ix->names, nl->name);
            if (nl->e != &nl->one) lode_free(nl->e);
            lode_free(nl);
        }
    }
    ix->st.defs -= f->syms.n_syms;
}

void lode__ix_add_file(lode_index *ix, lode__ixfile *f) {
    lode__smap_put(&ix->files, f->path, f);
    names_add(ix, f);
    ix->sorted_dirty = ix->basenames_dirty = true;
    ix->st.files = ix->files.n;
}

static void file_free(lode__ixfile *f) {
    lode_file_syms_clear(&f->syms);
    lode_free(f->overlay);
    lode_free(f->path);
    lode_free(f);
}

void lode__ix_remove_file(lode_index *ix, lode__ixfile *f) {
    names_remove(ix, f);
    lode__smap_del(&ix->files, f->path);
    file_free(f);
    ix->sorted_dirty = ix->basenames_dirty = ix->cache_dirty = true;
    ix->st.files = ix->files.n;
}

/* Replace a file's symbols (names table kept in step). */
static void file_set_syms(lode_index *ix, lode__ixfile *f, lode_file_syms *fs) {
    names_remove(ix, f);
    lode_file_syms_clear(&f->syms);
    f->syms = *fs;
    memset(fs, 0, sizeof *fs);
    names_add(ix, f);
}

/* ---- gitignore lookups -------------------------------------------------------------- */
/* Append the contents of a small regular file (no symlink) to *buf. */
static void append_small_file(const char *path, char **buf, size_t *n) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size < (1 << 20)) {
        *buf = lode_xrealloc(*buf, *n + (size_t)st.st_size + 2);
        size_t want = *n + (size_t)st.st_size;
        ssize_t r;
        while (*n < want && (r = read(fd, *buf + *n, want - *n)) > 0) *n += (size_t)r;
        (*buf)[(*n)++] = '\n';
    }
    close(fd);
}

/* The patterns of dir/.gitignore; at a root, .git/info/exclude comes first
 * (lower precedence, as in git). */
static const lode__gitignore *gitignore_for(lode_index *ix, const char *dir) {
    lode__gitignore *g = lode__smap_get(&ix->ignores, dir);
    if (g) return g;
    char *buf = NULL;
    size_t n = 0;
    for (size_t i = 0; i < ix->n_roots; i++) {
        if (strcmp(dir, ix->roots[i]) != 0) continue;
        char *ex = path_join(dir, ".git/info/exclude");
        append_small_file(ex, &buf, &n);
        lode_free(ex);
    }
    char *p = path_join(dir, ".gitignore");
    append_small_file(p, &buf, &n);
    lode_free(p);
    g = lode__gitignore_parse(dir, buf ? buf : "", n);
    lode_free(buf);
    lode__smap_put(&ix->ignores, g->dir, g);
    return g;
}

static void ignores_clear(lode_index *ix) {
    for (size_t i = 0; i < ix->ignores.cap; i++) lode__gitignore_free(lode__smap_at(&ix->ignores, i));
    lode__smap_free(&ix->ignores);
}

/* Whether `path` (canonical, inside root r) is ignored by the .gitignore
 * files of its ancestors up to the root (deepest decides). Its ancestors
 * themselves are not checked (the walk never enters an ignored dir). */
static bool ignored_here(lode_index *ix, size_t r, const char *path, bool is_dir) {
    size_t rl = ix->root_len[r];
    char *dir = lode_xstrdup(path);
    bool res = false;
    for (;;) {
        char *slash = strrchr(dir, '/');
        if (!slash) break;
        if (slash == dir) slash[1] = 0;
        else *slash = 0;
        size_t dl = strlen(dir);
        if (dl < rl) break;
        const lode__gitignore *g = gitignore_for(ix, dir);
        const char *rel = path + dl + (dir[dl - 1] == '/' ? 0 : 1);
        int m = lode__gitignore_match(g, rel, is_dir);
        if (m >= 0) {
            res = m == 1;
            break;
        }
        if (dl == rl) break;
    }
    lode_free(dir);
    return res;
}

/* Whether path or any directory between it and its root is ignored or skipped. */
static bool ignored_any(lode_index *ix, size_t r, const char *path, bool is_dir) {
    size_t rl = ix->root_len[r];
    char *p = lode_xstrdup(path);
    bool res = false;
    for (char *s = p + rl + 1; *s && !res; s++) {
        if (*s != '/') continue;
        *s = 0;
        const char *base = strrchr(p, '/') + 1;
        res = skip_dir_name(base) || ignored_here(ix, r, p, true);
        *s = '/';
    }
    if (!res) res = ignored_here(ix, r, path, is_dir);
    lode_free(p);
    return res;
}

/* ---- reading and extracting one file ------------------------------------------------ */
static bool looks_binary(const char *b, size_t n) { return memchr(b, 0, n < SNIFF_BYTES ? n : SNIFF_BYTES) != NULL; }

static bool looks_generated(const char *b, size_t n) {
    size_t k = n < 1024 ? n : 1024;
    return memmem(b, k, "@generated", 10) || memmem(b, k, "Code generated", 14) || memmem(b, k, "DO NOT EDIT", 11) ||
           memmem(b, k, "Generated by", 12) || memmem(b, k, "automatically generated", 23);
}

/* Read a regular file (no symlink at the last component), at most max bytes,
 * into *bufp (grown as needed; NULL: a new buffer). NULL: unreadable, not
 * regular, or too large (*too_big set); *bufp is kept for reuse. */
static char *read_file_into(const char *path, size_t max, char **bufp, size_t *cap, size_t *len, struct stat *st,
                            bool *too_big) {
    *too_big = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return NULL;
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return NULL;
    }
    if ((uint64_t)st->st_size > max) {
        *too_big = true;
        close(fd);
        return NULL;
    }
    size_t want = (size_t)st->st_size;
    if (!*bufp || *cap < want + 1) {
        char *nb = lode_try_realloc(*bufp, want + 1);
        if (!nb) {
            close(fd);
            return NULL;
        }
        *bufp = nb, *cap = want + 1;
    }
    char *buf = *bufp;
    size_t n = 0;
    while (n < want) {
        ssize_t r = read(fd, buf + n, want - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *len = n;
    return buf;
}

/* read_file_into a new buffer (the caller frees it). */
static char *read_file(const char *path, size_t max, size_t *len, struct stat *st, bool *too_big) {
    char *buf = NULL;
    size_t cap = 0;
    char *r = read_file_into(path, max, &buf, &cap, len, st, too_big);
    if (!r) lode_free(buf);
    return r;
}

static void worker_free(lode__ixworker *w) {
    lode_syntax_scratch_free(w->ss);
    lode_free(w->buf);
    memset(w, 0, sizeof *w);
}

static bool extract(lode_syntax_scratch *ss, const lode_lang *l, const char *text, size_t len, lode_file_syms *out) {
    lode_error err = {0};
    if (lode_syntax_symbols_with(ss, l, text, len, NULL, out, &err) != LODE_OK) {
        lode_log(LODE_LOG_WARN, "index: %s", err.text);
        memset(out, 0, sizeof *out);
        return false;
    }
    return true;
}

typedef enum { IX_ADDED, IX_SAME, IX_SKIPPED } ix_result;
enum { JOB_OK, JOB_BIG, JOB_BINARY, JOB_GENERATED, JOB_UNREADABLE };

/* Read + check + parse one file: touches nothing shared but w, which
 * belongs to the calling thread (runs on worker threads). */
static void job_run(lode__ixjob *j, size_t max_bytes, lode__ixworker *w) {
    size_t len = 0;
    bool big;
    char *text = read_file_into(j->path, max_bytes, &w->buf, &w->cap, &len, &j->st, &big);
    if (!text) j->outcome = big ? JOB_BIG : JOB_UNREADABLE;
    else if (looks_binary(text, len)) j->outcome = JOB_BINARY;
    else if (looks_generated(text, len)) j->outcome = JOB_GENERATED;
    else {
        j->outcome = JOB_OK;
        if (!j->overlay) {
            if (!w->ss) w->ss = lode_syntax_scratch_new();
            extract(w->ss, j->lang, text, len, &j->fs);
            j->parsed = true;
        }
    }
}

/* Merge a finished job into the index (main thread). */
static ix_result job_apply(lode_index *ix, lode__ixjob *j) {
    lode__ixfile *f = lode__ix_file(ix, j->path);
    if (j->parsed) ix->st.parsed++;
    if (j->outcome != JOB_OK) {
        if (j->outcome == JOB_BIG) ix->st.skipped_large++;
        else if (j->outcome == JOB_BINARY) ix->st.skipped_binary++;
        else if (j->outcome == JOB_GENERATED) ix->st.skipped_generated++;
        if (f && !f->overlay) lode__ix_remove_file(ix, f);
        else if (f) f->seen = true;
        return IX_SKIPPED;
    }
    ix->cache_dirty = true;
    const struct stat *st = &j->st;
    if (f && f->overlay) {
        /* The open document wins; remember the disk state only. */
        f->size = (uint64_t)st->st_size, f->mtime_ns = mtime_ns(st), f->ino = (uint64_t)st->st_ino;
        f->seen = true;
        lode_file_syms_clear(&j->fs);
        return IX_SAME;
    }
    if (!f && ix->files.n >= ix->max_files) { /* queued before the limit was reached */
        ix->st.skipped_limit++;
        lode_file_syms_clear(&j->fs);
        return IX_SKIPPED;
    }
    if (!f) {
        f = lode_xcalloc(1, sizeof *f);
        f->path = lode_xstrdup(j->path);
        f->root = (uint32_t)j->root;
        f->lang = j->lang;
        f->syms = j->fs;
        memset(&j->fs, 0, sizeof j->fs);
        lode__ix_add_file(ix, f);
    } else {
        file_set_syms(ix, f, &j->fs);
        f->lang = j->lang;
    }
    f->from_cache = false;
    f->size = (uint64_t)st->st_size, f->mtime_ns = mtime_ns(st), f->ino = (uint64_t)st->st_ino;
    f->seen = true;
    return IX_ADDED;
}

/* A cache entry is used only when the file still says what it recorded:
 * every name at its offset, every import's text at its offset, every line
 * number right. (The checksum catches corruption; this catches a cache that
 * is well-formed but wrong, and files changed within the mtime's
 * granularity.) Kinds and body offsets cannot be checked without parsing. */
static bool cache_entry_matches(lode_index *ix, lode__ixfile *f) {
    size_t len = 0;
    struct stat st;
    bool big;
    char *text = read_file(f->path, ix->max_file_bytes, &len, &st, &big);
    bool ok = text && len == f->size;
    uint32_t line = 0, at = 0;
    for (size_t i = 0; ok && i < f->syms.n_syms; i++) {
        const lode_sym *s = &f->syms.syms[i];
        size_t nl = strlen(s->name);
        ok = s->end <= len && s->name_start + nl <= len && memcmp(text + s->name_start, s->name, nl) == 0;
        if (!ok) break;
        if (s->start < at) line = 0, at = 0; /* not sorted: count from the top */
        for (; at < s->start; at++) line += text[at] == '\n';
        ok = line == s->line;
    }
    for (size_t i = 0; ok && i < f->syms.n_imports; i++) {
        const lode_import *im = &f->syms.imports[i];
        size_t tl = strlen(im->text);
        ok = im->end <= len && tl <= im->end - im->start && memcmp(text + im->start, im->text, tl) == 0;
    }
    lode_free(text);
    if (!ok) lode_log(LODE_LOG_INFO, "index: cache entry of %s does not match the file: re-parsing", f->path);
    return ok;
}

/* Index one regular file (canonical path inside root r; ignore rules already
 * applied). Reuses the entry when size/mtime/inode are unchanged. During a
 * scan the work is queued (run_jobs parses the queue on several threads);
 * otherwise it is done now. */
static ix_result index_one(lode_index *ix, size_t r, const char *path, const struct stat *pre, const lode_lang *l) {
    if (!l) l = lode_lang_for_path(path);
    if (!l) return IX_SKIPPED;
    lode__ixfile *f = lode__ix_file(ix, path);
    if (pre && f && f->size == (uint64_t)pre->st_size && f->mtime_ns == mtime_ns(pre) &&
        f->ino == (uint64_t)pre->st_ino && (!f->from_cache || f->seen || cache_entry_matches(ix, f))) {
        if (f->from_cache && !f->seen) ix->st.cache_hits++;
        f->seen = true;
        return IX_SAME;
    }
    if (pre && (uint64_t)pre->st_size > ix->max_file_bytes) {
        ix->st.skipped_large++;
        if (f && !f->overlay) lode__ix_remove_file(ix, f);
        return IX_SKIPPED;
    }
    if (!f && ix->files.n >= ix->max_files) {
        ix->st.skipped_limit++;
        return IX_SKIPPED;
    }
    if (f) f->seen = true; /* not dropped while its job is pending */
    lode__ixjob j = {.path = lode_xstrdup(path), .root = r, .lang = l, .overlay = f && f->overlay};
    if (ix->collect) {
        if (ix->n_jobs == ix->cap_jobs) {
            ix->cap_jobs = ix->cap_jobs ? ix->cap_jobs * 2 : 256;
            ix->jobs = lode_xrealloc(ix->jobs, ix->cap_jobs * sizeof *ix->jobs);
        }
        ix->jobs[ix->n_jobs++] = j;
        return IX_ADDED;
    }
    job_run(&j, ix->max_file_bytes, &ix->worker);
    ix_result res = job_apply(ix, &j);
    lode_free(j.path);
    return res;
}

typedef struct job_pool {
    lode__ixjob *jobs;
    size_t n, max_bytes;
    _Atomic size_t next;
} job_pool;

static void job_loop(job_pool *p, lode__ixworker *w) {
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n) break;
        job_run(&p->jobs[i], p->max_bytes, w);
    }
}

static void *job_worker(void *arg) {
    lode__ixworker w = {0};
    job_loop(arg, &w);
    worker_free(&w);
    return NULL;
}

/* Parse the queued files on ix->threads threads, then merge them in queue
 * order (the result does not depend on the thread count). */
static void run_jobs(lode_index *ix) {
    job_pool p = {.jobs = ix->jobs, .n = ix->n_jobs, .max_bytes = ix->max_file_bytes};
    atomic_init(&p.next, 0);
    unsigned nt = ix->threads;
    if (nt > 1 && p.n >= 16) {
        pthread_t th[LODE_INDEX_MAX_THREADS];
        unsigned started = 0;
        for (unsigned t = 0; t + 1 < nt && t < LODE_INDEX_MAX_THREADS; t++) {
            if (pthread_create(&th[started], NULL, job_worker, &p) == 0) started++;
        }
        job_loop(&p, &ix->worker);
        for (unsigned t = 0; t < started; t++) pthread_join(th[t], NULL);
    } else {
        job_loop(&p, &ix->worker);
    }
    for (size_t i = 0; i < ix->n_jobs; i++) {
        job_apply(ix, &ix->jobs[i]);
        lode_file_syms_clear(&ix->jobs[i].fs);
        lode_free(ix->jobs[i].path);
    }
    ix->n_jobs = 0;
}

/* ---- watching ------------------------------------------------------------------------ */
#define WATCH_MASK                                                                                       \
    (IN_CREATE | IN_DELETE | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | \
     IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)

static void watch_dir(lode_index *ix, const char *dir) {
    if (ix->ifd < 0) return;
    int wd = inotify_add_watch(ix->ifd, dir, WATCH_MASK);
    if (wd < 0) {
        static bool warned;
        if (!warned) lode_log(LODE_LOG_WARN, "index: cannot watch %s: %s", dir, strerror(errno)), warned = true;
        return;
    }
    if ((size_t)wd >= ix->n_wd) {
        size_t nn = ix->n_wd ? ix->n_wd : 64;
        while (nn <= (size_t)wd) nn *= 2;
        ix->wd_dirs = lode_xrealloc(ix->wd_dirs, nn * sizeof *ix->wd_dirs);
        memset(ix->wd_dirs + ix->n_wd, 0, (nn - ix->n_wd) * sizeof *ix->wd_dirs);
        ix->n_wd = nn;
    }
    lode_free(ix->wd_dirs[wd]);
    ix->wd_dirs[wd] = lode_xstrdup(dir);
}

int lode_index_watch_fd(const lode_index *ix) { return ix ? ix->ifd : -1; }

/* ---- walking --------------------------------------------------------------------------- */
static bool has_cachedir_tag(const char *dir) {
    char *p = path_join(dir, "CACHEDIR.TAG");
    bool r = access(p, F_OK) == 0;
    lode_free(p);
    return r;
}

/* Walk dir (canonical, inside root r, not ignored) and everything below. */
static void walk(lode_index *ix, size_t r, const char *start) {
    char **stack = lode_xmalloc(16 * sizeof *stack);
    size_t sp = 0, cap = 16;
    stack[sp++] = lode_xstrdup(start);
    while (sp) {
        char *dir = stack[--sp];
        DIR *d = opendir(dir);
        if (!d) {
            lode_free(dir);
            continue;
        }
        watch_dir(ix, dir);
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            const char *nm = de->d_name;
            if (nm[0] == '.' && (nm[1] == 0 || (nm[1] == '.' && nm[2] == 0))) continue;
            char *p = path_join(dir, nm);
            unsigned char t = de->d_type;
            struct stat st;
            bool have_st = false;
            const lode_lang *fl = t == DT_REG || t == DT_UNKNOWN || t == DT_LNK ? lode_lang_for_path(nm) : NULL;
            if (t == DT_REG && !fl) goto next; /* not source: no syscall */
            /* A regular file the index does not have yet needs no stat here:
             * its job's fstat is what gets recorded. */
            if (t == DT_REG && !lode__ix_file(ix, p)) {
                if (ignored_here(ix, r, p, false)) {
                    ix->st.skipped_ignored++;
                    goto next;
                }
                index_one(ix, r, p, NULL, fl);
                goto next;
            }
            if (t == DT_UNKNOWN || t == DT_REG) {
                if (lstat(p, &st) != 0) goto next;
                have_st = true;
                t = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : S_ISLNK(st.st_mode) ? DT_LNK : 0;
            }
            if (t == DT_DIR) {
                if (skip_dir_name(nm) || ignored_here(ix, r, p, true) || has_cachedir_tag(p)) {
                    if (!skip_dir_name(nm)) ix->st.skipped_ignored++;
                    goto next;
                }
                if (sp == cap) cap *= 2, stack = lode_xrealloc(stack, cap * sizeof *stack);
                stack[sp++] = p;
                continue;
            }
            if (t == DT_LNK) {
                /* Follow a file symlink only when its target lies inside a root;
                 * directory symlinks are never followed (cycles, escapes). */
                if (!fl) goto next;
                char *real = realpath(p, NULL);
                struct stat ts;
                if (real && root_of(ix, real) >= 0 && stat(real, &ts) == 0 && S_ISREG(ts.st_mode) &&
                    !lode__ix_file(ix, real) && !ignored_here(ix, r, p, false)) {
                    int rr = root_of(ix, real);
                    if (!ignored_any(ix, (size_t)rr, real, false)) index_one(ix, (size_t)rr, real, &ts, NULL);
                }
                free(real);
                goto next;
            }
            if (t == DT_REG) {
                if (!fl) goto next;
                if (ignored_here(ix, r, p, false)) {
                    ix->st.skipped_ignored++;
                    goto next;
                }
                index_one(ix, r, p, have_st ? &st : NULL, fl);
            }
        next:
            lode_free(p);
        }
        closedir(d);
        lode_free(dir);
    }
    lode_free(stack);
}

/* ---- open / scan / free ------------------------------------------------------------------ */
static char *default_cache_dir(void) {
    const char *x = getenv("XDG_CACHE_HOME");
    if (x && x[0] == '/') return path_join(x, "lode/index");
    const char *h = getenv("HOME");
    if (h && h[0] == '/') return path_join(h, ".cache/lode/index");
    return NULL;
}

lode_index *lode_index_open(const char *const *roots, size_t n_roots, const lode_index_opts *o, lode_error *err) {
    if (!roots || n_roots == 0) {
        lode_error_set(err, LODE_ERR_INVALID_ARG, "index: no workspace roots");
        return NULL;
    }
    lode_index *ix = lode_xcalloc(1, sizeof *ix);
    ix->ifd = -1;
    ix->max_file_bytes = o && o->max_file_bytes ? o->max_file_bytes : DEFAULT_MAX_BYTES;
    ix->max_files = o && o->max_files ? o->max_files : DEFAULT_MAX_FILES;
    ix->no_watch = o && o->no_watch;
    if (o && o->threads) {
        ix->threads = o->threads;
    } else {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        ix->threads = nc > 0 ? (unsigned)nc : 1;
    }
    if (ix->threads > LODE_INDEX_MAX_THREADS) ix->threads = LODE_INDEX_MAX_THREADS;
    ix->roots = lode_xcalloc(n_roots, sizeof *ix->roots);
    ix->root_len = lode_xcalloc(n_roots, sizeof *ix->root_len);
    ix->cache_paths = lode_xcalloc(n_roots, sizeof *ix->cache_paths);
    for (size_t i = 0; i < n_roots; i++) {
        char *r = roots[i] ? realpath(roots[i], NULL) : NULL;
        struct stat st;
        if (!r || stat(r, &st) != 0 || !S_ISDIR(st.st_mode)) {
            lode_error_set(err, LODE_ERR_NOT_FOUND, "index: workspace root %s: %s", roots[i] ? roots[i] : "(null)",
                           r ? "not a directory" : strerror(errno));
            free(r);
            lode_index_free(ix);
            return NULL;
        }
        /* Nested or duplicate roots would index files twice: keep the outer one. */
        bool dup = false;
        for (size_t k = 0; k < ix->n_roots; k++) {
            size_t a = strlen(r), b = ix->root_len[k];
            if ((a >= b && strncmp(r, ix->roots[k], b) == 0 && (r[b] == '/' || r[b] == 0 || b == 1))) dup = true;
        }
        if (dup) {
            free(r);
            continue;
        }
        ix->roots[ix->n_roots] = lode_xstrdup(r);
        ix->root_len[ix->n_roots] = strlen(r);
        ix->n_roots++;
        free(r);
    }
    char *cdir = NULL;
    if (!o || !o->cache_dir) cdir = default_cache_dir();
    else if (o->cache_dir[0]) cdir = lode_xstrdup(o->cache_dir);
    if (cdir) {
        for (size_t i = 0; i < ix->n_roots; i++) {
            char name[64];
            snprintf(name, sizeof name, "%016llx.idx",
                     (unsigned long long)lode__hash(ix->roots[i], ix->root_len[i]));
            ix->cache_paths[i] = path_join(cdir, name);
        }
        lode_free(cdir);
    }
    if (!ix->no_watch) {
        ix->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (ix->ifd < 0) lode_log(LODE_LOG_WARN, "index: inotify unavailable (%s): no file watching", strerror(errno));
    }
    return ix;
}

static void drop_unseen(lode_index *ix) {
    lode__ixfile **gone = NULL;
    size_t n = 0;
    for (size_t i = 0; i < ix->files.cap; i++) {
        lode__ixfile *f = lode__smap_at(&ix->files, i);
        if (f && !f->seen && !f->overlay) {
            gone = lode_xrealloc(gone, (n + 1) * sizeof *gone);
            gone[n++] = f;
        }
    }
    for (size_t i = 0; i < n; i++) lode__ix_remove_file(ix, gone[i]);
    lode_free(gone);
}

lode_status lode_index_scan(lode_index *ix, lode_error *err) {
    if (!ix) return lode_error_set(err, LODE_ERR_INVALID_ARG, "index: NULL");
    if (!ix->scanned) {
        ix->st.cache_loaded = false;
        for (size_t r = 0; r < ix->n_roots; r++)
            if (ix->cache_paths[r] && lode__cache_load(ix, r)) ix->st.cache_loaded = true;
    }
    ignores_clear(ix);
    for (size_t i = 0; i < ix->files.cap; i++) {
        lode__ixfile *f = lode__smap_at(&ix->files, i);
        if (f) f->seen = false;
    }
    ix->collect = true;
    for (size_t r = 0; r < ix->n_roots; r++) walk(ix, r, ix->roots[r]);
    ix->collect = false;
    run_jobs(ix);
    drop_unseen(ix);
    ix->scanned = true;
    lode_status s = LODE_OK;
    if (ix->cache_dirty || !ix->st.cache_loaded) {
        for (size_t r = 0; r < ix->n_roots; r++) {
            if (!ix->cache_paths[r]) continue;
            lode_status s2 = lode__cache_save(ix, r);
            if (s2 != LODE_OK && s == LODE_OK) s = s2;
        }
        if (s == LODE_OK) ix->cache_dirty = false;
    }
    /* A cache that cannot be written is not fatal: the index works without it. */
    if (s != LODE_OK) lode_log(LODE_LOG_WARN, "index: cache not saved (%s)", lode_status_str(s));
    return LODE_OK;
}

void lode_index_free(lode_index *ix) {
    if (!ix) return;
    if (ix->scanned && ix->cache_dirty)
        for (size_t r = 0; r < ix->n_roots; r++)
            if (ix->cache_paths[r]) lode__cache_save(ix, r);
    for (size_t i = 0; i < ix->files.cap; i++) {
        lode__ixfile *f = lode__smap_at(&ix->files, i);
        if (f) file_free(f);
    }
    lode__smap_free(&ix->files);
    for (size_t i = 0; i < ix->names.cap; i++) {
        lode__namelist *nl = lode__smap_at(&ix->names, i);
        if (!nl) continue;
        if (nl->e != &nl->one) lode_free(nl->e);
        lode_free(nl);
    }
    lode__smap_free(&ix->names);
    lode__basenames_clear(ix);
    ignores_clear(ix);
    for (size_t i = 0; i < ix->n_roots; i++) lode_free(ix->roots[i]), lode_free(ix->cache_paths[i]);
    lode_free(ix->roots);
    lode_free(ix->root_len);
    lode_free(ix->cache_paths);
    for (size_t i = 0; i < ix->n_wd; i++) lode_free(ix->wd_dirs[i]);
    lode_free(ix->wd_dirs);
    if (ix->ifd >= 0) close(ix->ifd);
    lode_free(ix->sorted);
    lode_free(ix->jobs);
    worker_free(&ix->worker);
    lode_free(ix);
}

/* ---- documents ------------------------------------------------------------------------- */
lode_status lode_index_update(lode_index *ix, const char *path, const char *text, size_t len) {
    if (!ix || !path || (!text && len)) return LODE_ERR_INVALID_ARG;
    char *c = canon(path);
    int r = c ? root_of(ix, c) : -1;
    if (r < 0) {
        lode_free(c);
        return LODE_ERR_NOT_FOUND;
    }
    const lode_lang *l = lode_lang_for_path(c);
    if (!l) {
        lode_free(c);
        return LODE_ERR_UNSUPPORTED;
    }
    if (len > ix->max_file_bytes * 4) {
        lode_free(c);
        return LODE_ERR_RANGE;
    }
    lode__ixfile *f = lode__ix_file(ix, c);
    if (f && f->overlay && f->overlay_len == len && memcmp(f->overlay, text, len) == 0) {
        lode_free(c);
        return LODE_OK; /* unchanged */
    }
    lode_file_syms fs;
    if (!ix->worker.ss) ix->worker.ss = lode_syntax_scratch_new();
    extract(ix->worker.ss, l, text ? text : "", len, &fs);
    ix->st.parsed++;
    char *copy = lode_xmalloc(len + 1);
    if (len) memcpy(copy, text, len);
    copy[len] = 0;
    if (!f) {
        f = lode_xcalloc(1, sizeof *f);
        f->path = c;
        c = NULL;
        f->root = (uint32_t)r;
        f->lang = l;
        f->syms = fs;
        f->seen = true;
        lode__ix_add_file(ix, f);
    } else {
        file_set_syms(ix, f, &fs);
    }
    lode_free(f->overlay);
    f->overlay = copy;
    f->overlay_len = len;
    f->from_cache = false;
    lode_free(c);
    return LODE_OK;
}

lode_status lode_index_close_doc(lode_index *ix, const char *path) {
    if (!ix || !path) return LODE_ERR_INVALID_ARG;
    char *c = canon(path);
    lode__ixfile *f = c ? lode__ix_file(ix, c) : NULL;
    if (!f || !f->overlay) {
        lode_free(c);
        return f ? LODE_OK : LODE_ERR_NOT_FOUND;
    }
    lode_free(f->overlay);
    f->overlay = NULL;
    f->overlay_len = 0;
    size_t r = f->root;
    struct stat st;
    if (lstat(c, &st) != 0 || !S_ISREG(st.st_mode) || ignored_any(ix, r, c, false)) {
        lode__ix_remove_file(ix, f);
    } else {
        f->size = UINT64_MAX; /* force a re-read */
        index_one(ix, r, c, &st, NULL);
    }
    lode_free(c);
    return LODE_OK;
}

char *lode_index_read(lode_index *ix, const char *path, size_t *len) {
    if (len) *len = 0;
    if (!ix || !path) return NULL;
    char *c = canon(path);
    if (!c || root_of(ix, c) < 0) {
        lode_free(c);
        return NULL;
    }
    lode__ixfile *f = lode__ix_file(ix, c);
    char *out = NULL;
    size_t n = 0;
    if (f && f->overlay) {
        out = lode_xmalloc(f->overlay_len + 1);
        memcpy(out, f->overlay, f->overlay_len + 1);
        n = f->overlay_len;
    } else {
        struct stat st;
        bool big;
        out = read_file(c, ix->max_file_bytes, &n, &st, &big);
    }
    lode_free(c);
    if (out && len) *len = n;
    return out;
}

/* ---- lookups ------------------------------------------------------------------------------ */
static int cmp_nent(const void *a, const void *b) {
    const lode__nent *x = a, *y = b;
    int c = strcmp(x->f->path, y->f->path);
    if (c) return c;
    uint32_t sx = x->f->syms.syms[x->sym].start, sy = y->f->syms.syms[y->sym].start;
    return sx < sy ? -1 : sx > sy;
}

size_t lode_index_lookup(lode_index *ix, const char *name, lode_def *out, size_t max) {
    if (!ix || !name) return 0;
    lode__namelist *nl = lode__smap_get(&ix->names, name);
    if (!nl) return 0;
    if (!nl->sorted) {
        qsort(nl->e, nl->n, sizeof *nl->e, cmp_nent);
        nl->sorted = true;
    }
    for (size_t i = 0; i < nl->n && i < max; i++)
        out[i] = (lode_def){nl->e[i].f->path, &nl->e[i].f->syms.syms[nl->e[i].sym], nl->e[i].f->lang};
    return nl->n;
}

const lode_file_syms *lode_index_file(lode_index *ix, const char *path) {
    if (!ix || !path) return NULL;
    lode__ixfile *f = lode__ix_file(ix, path);
    if (f) return &f->syms;
    char *c = canon(path);
    f = c ? lode__ix_file(ix, c) : NULL;
    lode_free(c);
    return f ? &f->syms : NULL;
}

static int cmp_fileptr(const void *a, const void *b) {
    return strcmp((*(lode__ixfile *const *)a)->path, (*(lode__ixfile *const *)b)->path);
}

static void ensure_sorted(lode_index *ix) {
    if (!ix->sorted_dirty && ix->sorted) return;
    ix->sorted = lode_xrealloc(ix->sorted, (ix->files.n + 1) * sizeof *ix->sorted);
    size_t n = 0;
    for (size_t i = 0; i < ix->files.cap; i++) {
        lode__ixfile *f = lode__smap_at(&ix->files, i);
        if (f) ix->sorted[n++] = f;
    }
    qsort(ix->sorted, n, sizeof *ix->sorted, cmp_fileptr);
    ix->n_sorted = n;
    ix->sorted_dirty = false;
}

size_t lode_index_n_files(const lode_index *ix) { return ix ? ix->files.n : 0; }

const char *lode_index_file_at(const lode_index *ix, size_t i) {
    if (!ix) return NULL;
    ensure_sorted((lode_index *)ix);
    return i < ix->n_sorted ? ix->sorted[i]->path : NULL;
}

void lode_index_get_stats(const lode_index *ix, lode_index_stats *out) {
    if (!out) return;
    if (!ix) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = ix->st;
    out->files = ix->files.n;
}

const char *lode_index_cache_path(const lode_index *ix, size_t root) {
    return ix && root < ix->n_roots ? ix->cache_paths[root] : NULL;
}

/* ---- file watching ------------------------------------------------------------------------ */
static void remove_under(lode_index *ix, const char *dir) {
    size_t dl = strlen(dir);
    lode__ixfile **gone = NULL;
    size_t n = 0;
    for (size_t i = 0; i < ix->files.cap; i++) {
        lode__ixfile *f = lode__smap_at(&ix->files, i);
        if (f && !f->overlay && strncmp(f->path, dir, dl) == 0 && (f->path[dl] == '/' || f->path[dl] == 0)) {
            gone = lode_xrealloc(gone, (n + 1) * sizeof *gone);
            gone[n++] = f;
        }
    }
    for (size_t i = 0; i < n; i++) lode__ix_remove_file(ix, gone[i]);
    lode_free(gone);
}

static void apply_path(lode_index *ix, const char *path) {
    int r = root_of(ix, path);
    if (r < 0) return;
    struct stat st;
    if (lstat(path, &st) != 0) {
        lode__ixfile *f = lode__ix_file(ix, path);
        if (f && !f->overlay) lode__ix_remove_file(ix, f);
        remove_under(ix, path);
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        if (!ignored_any(ix, (size_t)r, path, true) && !has_cachedir_tag(path)) walk(ix, (size_t)r, path);
        return;
    }
    if (!S_ISREG(st.st_mode)) return;
    if (ignored_any(ix, (size_t)r, path, false)) {
        lode__ixfile *f = lode__ix_file(ix, path);
        if (f && !f->overlay) lode__ix_remove_file(ix, f);
        return;
    }
    index_one(ix, (size_t)r, path, &st, NULL);
}

lode_status lode_index_poll(lode_index *ix) {
    if (!ix) return LODE_ERR_INVALID_ARG;
    if (ix->ifd < 0) return LODE_OK;
    char **paths = NULL;
    size_t n = 0;
    bool rescan = false;
    _Alignas(struct inotify_event) char buf[16384];
    for (;;) {
        ssize_t got = read(ix->ifd, buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        for (char *p = buf; p < buf + got;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            ix->st.events++;
            if (ev->mask & IN_Q_OVERFLOW) {
                rescan = true;
                continue;
            }
            if (ev->wd < 0 || (size_t)ev->wd >= ix->n_wd || !ix->wd_dirs[ev->wd]) continue;
            if (ev->mask & IN_IGNORED) {
                lode_free(ix->wd_dirs[ev->wd]);
                ix->wd_dirs[ev->wd] = NULL;
                continue;
            }
            if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
                paths = lode_xrealloc(paths, (n + 1) * sizeof *paths);
                paths[n++] = lode_xstrdup(ix->wd_dirs[ev->wd]);
                continue;
            }
            if (!ev->len || !ev->name[0]) continue;
            if (strcmp(ev->name, ".gitignore") == 0) rescan = true;
            paths = lode_xrealloc(paths, (n + 1) * sizeof *paths);
            paths[n++] = path_join(ix->wd_dirs[ev->wd], ev->name);
        }
    }
    if (rescan) {
        for (size_t i = 0; i < n; i++) lode_free(paths[i]);
        lode_free(paths);
        return lode_index_scan(ix, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        for (size_t k = 0; k < i && !dup; k++) dup = strcmp(paths[k], paths[i]) == 0;
        if (!dup) apply_path(ix, paths[i]);
    }
    for (size_t i = 0; i < n; i++) lode_free(paths[i]);
    lode_free(paths);
    return LODE_OK;
}
