/*
 * index_impl.h — private to lsp/index*.c: the workspace index's structures,
 * the string hash map, gitignore matching and the disk cache.
 */
#ifndef LODE_INDEX_IMPL_H
#define LODE_INDEX_IMPL_H

#include <sys/stat.h>

#include "lode_index.h"

/* ---- string-keyed hash map (open addressing, tombstones) -------------------- */
typedef struct lode__smap {
    const char **keys; /* borrowed: the value owns its key */
    void **vals;
    size_t cap, n, used; /* used: live + tombstones */
} lode__smap;

void *lode__smap_get(const lode__smap *m, const char *key);
/* Insert or replace; key must stay valid while present. */
void lode__smap_put(lode__smap *m, const char *key, void *val);
void *lode__smap_del(lode__smap *m, const char *key);
void lode__smap_free(lode__smap *m);
/* Iterate: i from 0 while i < m->cap; NULL for empty slots. */
void *lode__smap_at(const lode__smap *m, size_t i);
uint64_t lode__hash(const char *s, size_t n);

/* ---- gitignore ---------------------------------------------------------------- */
typedef struct lode__gipat {
    char *pat;
    bool neg, dir_only, anchored;
} lode__gipat;

typedef struct lode__gitignore {
    char *dir; /* the directory holding the .gitignore (canonical, no trailing '/') */
    lode__gipat *p;
    size_t n;
} lode__gitignore;

/* Parse a .gitignore text into patterns (dir copied). */
lode__gitignore *lode__gitignore_parse(const char *dir, const char *text, size_t len);
void lode__gitignore_free(lode__gitignore *g);
/* 1: ignored, 0: re-included (negation), -1: no pattern matched. rel: the
 * path relative to g->dir; base: its last component. */
int lode__gitignore_match(const lode__gitignore *g, const char *rel, bool is_dir);
/* Glob with gitignore rules: '*' and '?' do not cross '/', "**" does. */
bool lode__wildmatch(const char *pat, const char *s);

/* ---- the index ---------------------------------------------------------------- */
typedef struct lode__ixfile {
    char *path; /* canonical absolute; the key of files map */
    uint32_t root;
    const lode_lang *lang;
    lode_file_syms syms;
    uint64_t size, mtime_ns, ino;
    char *overlay; /* open document text, or NULL */
    size_t overlay_len;
    bool seen, from_cache;
} lode__ixfile;

/* A file to read and parse during a scan (index.c). */
typedef struct lode__ixjob {
    char *path;
    size_t root;
    const lode_lang *lang;
    bool overlay;   /* an open document: read for the checks, not parsed */
    int outcome;    /* results, filled by the worker */
    bool parsed;
    struct stat st;
    lode_file_syms fs;
} lode__ixjob;

#define LODE_INDEX_MAX_THREADS 16

/* Per-thread scan state (index.c): extraction scratch and read buffer. */
typedef struct lode__ixworker {
    lode_syntax_scratch *ss;
    char *buf;
    size_t cap;
} lode__ixworker;

typedef struct lode__nent {
    lode__ixfile *f;
    uint32_t sym;
} lode__nent;

/* The definitions of one name: one allocation holding the key, with the
 * first entry inline (most names have one definition). */
typedef struct lode__namelist {
    lode__nent *e; /* &one while cap == 1 */
    size_t n, cap;
    bool sorted;
    lode__nent one;
    char name[];
} lode__namelist;

struct lode_index {
    char **roots;
    size_t *root_len;
    size_t n_roots;
    char **cache_paths; /* per root, NULL when disabled */
    size_t max_file_bytes, max_files;
    bool no_watch;
    lode__smap files;     /* path -> ixfile */
    lode__smap names;     /* name -> namelist */
    lode__smap ignores;   /* dir -> gitignore (NULL patterns when none) */
    lode__ixfile **sorted;
    size_t n_sorted;
    bool sorted_dirty;
    lode__smap basenames; /* basename -> lode__ixlist (for resolution) */
    bool basenames_dirty;
    int ifd;              /* inotify, or -1 */
    char **wd_dirs;       /* wd -> dir path */
    size_t n_wd;
    bool cache_dirty, scanned;
    lode_index_stats st;
    unsigned threads;     /* parse threads for scans */
    lode__ixjob *jobs;    /* files queued by the walk of a scan */
    size_t n_jobs, cap_jobs;
    bool collect;         /* queue instead of parsing now (during a scan's walk) */
    lode__ixworker worker; /* the calling thread's: scans, documents, watch updates */
};

typedef struct lode__ixlist {
    char *key;
    lode__ixfile **f;
    size_t n, cap;
} lode__ixlist;

/* index.c internals used by the cache and the resolver */
void lode__ix_add_file(lode_index *ix, lode__ixfile *f);
void lode__ix_remove_file(lode_index *ix, lode__ixfile *f);
lode__ixfile *lode__ix_file(const lode_index *ix, const char *canon);
/* Cache (index_cache.c): load entries of root r into the files map (from_cache
 * set, seen false); false when missing or invalid (nothing added). */
bool lode__cache_load(lode_index *ix, size_t r);
lode_status lode__cache_save(lode_index *ix, size_t r);
/* Resolver (index_resolve.c): free the basename map. */
void lode__basenames_clear(lode_index *ix);

/* Lexically normalise an absolute path in place ("//", ".", ".."). */
void lode__path_normalize(char *p);

#endif /* LODE_INDEX_IMPL_H */
