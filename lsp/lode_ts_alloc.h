/*
 * lode_ts_alloc.h — the allocator of the tree-sitter runtime (lsp/ts_alloc.c).
 *
 * When lode compiles the runtime from source (Makefile, TS_SRC), lib.c is
 * built with -Dts_malloc=lode_ts_malloc (and calloc, realloc, free) and
 * -include of this header, so every subtree, stack node and array of the
 * parser comes from here: per-thread size-class free lists in 64 KiB pages of
 * one reserved address range, blocks over LODE_TS_ALLOC_MAX_SMALL bytes from
 * malloc. Any thread may free any block (a block freed by a thread other
 * than the one that allocated it goes back to its owner through a lock-free
 * list). Pages are never returned to the system; a thread's free lists
 * outlive it and pass to the next thread that allocates.
 *
 * Consequence for callers: memory that tree-sitter hands out for the caller
 * to free (ts_node_string, ts_tree_get_changed_ranges) must be released with
 * lode_ts_free, not free(). With the system library (no TS_SRC) the runtime
 * uses malloc and these functions are unused, but lode_ts_free still accepts
 * what malloc returned.
 *
 * In ASan builds (and with LODE_TS_ALLOC_MALLOC defined) every function is
 * plain malloc/calloc/realloc/free, so the sanitizer sees each block.
 * Like tree-sitter's default, allocation failure aborts with a message.
 */
#ifndef LODE_TS_ALLOC_H
#define LODE_TS_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

/* Requests up to this many bytes are served from the size classes. */
#define LODE_TS_ALLOC_MAX_SMALL 256

void *lode_ts_malloc(size_t size);
void *lode_ts_calloc(size_t count, size_t size);
void *lode_ts_realloc(void *ptr, size_t size);
void lode_ts_free(void *ptr); /* NULL: no-op; also takes blocks from malloc */

/* ---- introspection (tests, benches) ---------------------------------------- */
typedef struct lode_ts_alloc_stats {
    size_t pages;       /* 64 KiB pages handed to size classes so far (never returned) */
    size_t page_bytes;  /* their total size */
    size_t heaps;       /* per-thread heaps created (live or waiting for a thread) */
} lode_ts_alloc_stats;

/* false in ASan builds, or when the address range could not be reserved:
 * then everything goes to malloc. */
bool lode_ts_alloc_pooled(void);
/* True when ptr is a size-class block (from lode_ts_malloc and not malloc). */
bool lode_ts_alloc_owns(const void *ptr);
/* Bytes usable at ptr for size-class blocks, 0 for others. */
size_t lode_ts_alloc_usable(const void *ptr);
void lode_ts_alloc_get_stats(lode_ts_alloc_stats *out);

#endif
