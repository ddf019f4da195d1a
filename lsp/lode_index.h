/*
 * lode_index.h — the workspace index: definitions and imports of every
 * source file under the workspace roots, kept current by document changes
 * and file watching (inotify), cached on disk so a restart does not re-parse
 * unchanged files.
 *
 * What is indexed: regular files under each root whose language lode knows
 * (lode_lang_for_path), not ignored by a .gitignore (nested ones, negation,
 * directory patterns, anchors, `**`), not inside .git or vendored/generated
 * directories (node_modules, vendor, third_party, target, dist, build, out,
 * __pycache__, .venv, ...), at most max_file_bytes long, with no NUL byte in
 * the first 8 KiB. Symlinks are never followed out of a root; the index
 * opens only files whose realpath lies inside a root.
 *
 * Paths: every path the index returns is absolute and canonical (realpath);
 * paths passed in may be relative (to the cwd) or non-canonical.
 *
 * Cache: $XDG_CACHE_HOME/lode/index/<hash of the root>.idx (fallback
 * ~/.cache/lode/index/), one per root, a versioned binary format validated
 * on load (magic, version, root, sizes, checksum); a file is reused when
 * its size, mtime (ns) and inode match. A corrupt or foreign cache is
 * ignored and rewritten. docs/context.md ("## Index") describes it.
 *
 * Threading: one thread at a time.
 */
#ifndef LODE_INDEX_H
#define LODE_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lode_base.h"
#include "lode_syntax.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lode_index lode_index;

typedef struct lode_index_opts {
    size_t max_file_bytes; /* 0: 1 MiB */
    size_t max_files;      /* 0: 100000; files past it are skipped (counted) */
    const char *cache_dir; /* NULL: $XDG_CACHE_HOME/lode/index or ~/.cache/lode/index; "" disables the cache */
    bool no_watch;         /* true: no inotify (lode_index_poll does nothing) */
    unsigned threads;      /* threads parsing during a scan: 0 = one per CPU (at most 16), 1 = the caller's only */
} lode_index_opts;

/* roots: directories (copied, canonicalised; a missing one is an error).
 * opts may be NULL (defaults). Nothing is read until lode_index_scan.
 * Caller frees with lode_index_free. */
lode_index *lode_index_open(const char *const *roots, size_t n_roots, const lode_index_opts *opts, lode_error *err);
/* Walk the roots; files unchanged since the cache (or since the previous
 * scan) are not re-parsed; files gone are dropped; the cache is saved.
 * Sets up the inotify watches. */
lode_status lode_index_scan(lode_index *ix, lode_error *err);
/* A document changed (open/edit in the editor): re-extract from `text`
 * (copied; it overrides the disk contents for lode_index_read until
 * lode_index_close_doc). A path outside the roots is LODE_ERR_NOT_FOUND;
 * an unknown language LODE_ERR_UNSUPPORTED (nothing changes). */
lode_status lode_index_update(lode_index *ix, const char *path, const char *text, size_t len);
/* The editor closed the document: drop the overlay, re-read from disk. */
lode_status lode_index_close_doc(lode_index *ix, const char *path);
/* Apply file-watch events (inotify) since the last call, without blocking:
 * changed/created files are re-extracted, deleted ones dropped, new
 * directories watched, .gitignore changes re-applied. LODE_OK when there was
 * nothing to do. */
lode_status lode_index_poll(lode_index *ix);
/* The inotify fd (readable when lode_index_poll has work), or -1. For an
 * event loop (uv_poll); borrowed. */
int lode_index_watch_fd(const lode_index *ix);

/* A definition: borrowed until the next change to the index (scan, update,
 * close_doc, poll). */
typedef struct lode_def {
    const char *path;
    const lode_sym *sym;
    const lode_lang *lang;
} lode_def;

/* Definitions named `name` (exact match), in a deterministic order (path,
 * then start offset). Writes at most max into out; returns the total number
 * (may exceed max). */
size_t lode_index_lookup(lode_index *ix, const char *name, lode_def *out, size_t max);
/* The symbols of one indexed file (borrowed until the next change), NULL if
 * not indexed. */
const lode_file_syms *lode_index_file(lode_index *ix, const char *path);
/* Indexed files, sorted by path: i in [0, lode_index_n_files()). Borrowed
 * until the next change. */
size_t lode_index_n_files(const lode_index *ix);
const char *lode_index_file_at(const lode_index *ix, size_t i);
/* Where an import of from_path leads: an indexed file path (borrowed until
 * the next change), or NULL (system header, external package, not found).
 * C/C++: relative to the including file, then each root and its include/
 * and src/ dirs, then by unique path suffix; Python: package modules
 * relative to the file (dots) and to each root; JS/TS: relative specifiers
 * with the usual extensions and index files; Go: the first file of the
 * package directory (module path suffix); Rust: `mod foo;` → foo.rs or
 * foo/mod.rs, `use crate::a::b` → a.rs / a/mod.rs; Java: package path under
 * any root or source dir; Lua: require("a.b") → a/b.lua; Ruby: require_relative. */
const char *lode_index_resolve_import(lode_index *ix, const char *from_path, const lode_import *imp);

/* Contents of a file inside the roots: the open document's text when there
 * is one, else the disk contents. NULL when the path is outside the roots
 * (or unreadable / over max_file_bytes). Caller frees with lode_free; the
 * buffer is NUL-terminated. */
char *lode_index_read(lode_index *ix, const char *path, size_t *len);
/* Whether path (canonicalised) lies inside one of the roots. */
bool lode_index_contains(const lode_index *ix, const char *path);

typedef struct lode_index_stats {
    size_t files;        /* indexed now */
    size_t defs;         /* definitions in all */
    size_t parsed;       /* files parsed since open (counter) */
    size_t cache_hits;   /* files taken from the disk cache since open */
    size_t skipped_ignored, skipped_binary, skipped_generated, skipped_large, skipped_limit;
    size_t events;       /* inotify events applied since open */
    bool cache_loaded;   /* a valid cache was found by the last scan */
} lode_index_stats;
void lode_index_get_stats(const lode_index *ix, lode_index_stats *out);
/* The cache file of root i (borrowed), or NULL when the cache is disabled. */
const char *lode_index_cache_path(const lode_index *ix, size_t root);

void lode_index_free(lode_index *ix);

#ifdef __cplusplus
}
#endif
#endif /* LODE_INDEX_H */
