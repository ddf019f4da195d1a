/*
 * ts_alloc.c — size-class allocator for the tree-sitter runtime
 * (lode_ts_alloc.h; the Makefile compiles the runtime's lib.c with
 * -Dts_malloc=lode_ts_malloc and friends).
 *
 * Why: parsing a file allocates and frees about 1,500 blocks, nearly all of
 * them subtrees, child arrays and stack nodes of 80-144 bytes (measured on
 * the 5,000-file index benchmark: 99.2% at most 128 bytes, 99.9% at most
 * 256), and tree-sitter 0.20.7 frees a tree one subtree at a time. glibc's
 * per-thread cache holds only 7 blocks per size, so most of those calls go
 * on to the fastbins and the arena.
 *
 * Layout: one address range of LODE_TS_RESERVE bytes, reserved PROT_NONE at
 * the first allocation and made writable COMMIT_STEP at a time; it is cut
 * into 64 KiB pages, each serving one size class (16-byte steps up to
 * LODE_TS_ALLOC_MAX_SMALL) for one heap. A page starts with its header
 * (owner heap and class), so a block's size and owner are one load away
 * from its address, and "is this ours" is a range check. Anything larger,
 * and everything once the range is used up, comes from malloc.
 *
 * Threads: each thread that allocates gets a heap (thread-local pointer,
 * no locks on the fast paths). A block freed by its owner thread goes on the
 * owner's free list; a block freed by any other thread is pushed (CAS) onto
 * the owner's `remote` stack, which the owner takes whole (atomic exchange)
 * when a free list runs dry: pushes only, one consumer, so no ABA. The
 * index parses on worker threads and the trees or parsers may be freed on
 * the main thread; that is the remote path. When a thread exits, its heap
 * (with its free lists and pages) goes to an orphan list and the next new
 * thread adopts it, so memory is bounded by the peak of concurrent threads;
 * pages themselves are never given back to the system.
 *
 * ASan/MSan/TSan builds (or LODE_TS_ALLOC_MALLOC): plain malloc, so the
 * sanitizer checks every tree-sitter block.
 */
#include "lode_ts_alloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__) || defined(LODE_TS_ALLOC_MALLOC)
#define TS_ALLOC_PLAIN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || __has_feature(thread_sanitizer)
#define TS_ALLOC_PLAIN 1
#endif
#endif

/* tree-sitter assumes its allocator never fails (its default exits). */
static void *ts_checked(void *p, size_t size) {
    if (!p && size) {
        fprintf(stderr, "lode: tree-sitter allocator: out of memory (%zu bytes)\n", size);
        abort();
    }
    return p;
}

#ifdef TS_ALLOC_PLAIN

void *lode_ts_malloc(size_t size) { return ts_checked(malloc(size), size); }
void *lode_ts_calloc(size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) return ts_checked(NULL, SIZE_MAX); /* as the pooled variant */
    return ts_checked(calloc(count, size), count * size);
}
void *lode_ts_realloc(void *ptr, size_t size) { return ts_checked(realloc(ptr, size), size); }
void lode_ts_free(void *ptr) { free(ptr); }
bool lode_ts_alloc_pooled(void) { return false; }
bool lode_ts_alloc_owns(const void *ptr) { return (void)ptr, false; }
size_t lode_ts_alloc_usable(const void *ptr) { return (void)ptr, 0; }
void lode_ts_alloc_get_stats(lode_ts_alloc_stats *out) { memset(out, 0, sizeof *out); }

#else

#define PAGE_SHIFT 16
#define PAGE_SIZE ((size_t)1 << PAGE_SHIFT)
#define PAGE_HDR 64                           /* ts_page, padded: blocks stay 16-aligned */
#define CLASS_STEP 16
#define N_CLASS (LODE_TS_ALLOC_MAX_SMALL / CLASS_STEP)
#define LODE_TS_RESERVE ((size_t)16 << 30)    /* address space only: PROT_NONE until used */
#define COMMIT_STEP ((size_t)1 << 20)         /* pages made writable per mprotect */

typedef struct ts_block {
    struct ts_block *next;
} ts_block;

typedef struct ts_heap ts_heap;

/* At the start of every page. */
typedef struct ts_page {
    ts_heap *owner;
    uint32_t cls;
} ts_page;
_Static_assert(sizeof(ts_page) <= PAGE_HDR, "page header fits its slot");

struct ts_heap {
    ts_block *free[N_CLASS];        /* owner thread only */
    char *bump[N_CLASS];            /* next unused block of the class's current page */
    char *end[N_CLASS];             /* end of that page */
    _Atomic(ts_block *) remote;     /* pushed by other threads, taken whole by the owner */
    ts_heap *next_orphan;           /* under g_lock */
};

/* The reserved range, set once (relaxed atomics: lode_ts_free reads them
 * without the lock, and 0/0 means "no range": everything is malloc's). */
static _Atomic uintptr_t g_base, g_end;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_key;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static char *g_next_page, *g_committed; /* under g_lock */
static ts_heap *g_orphans;              /* under g_lock */
static size_t g_pages, g_heaps;         /* under g_lock */
static _Thread_local ts_heap *t_heap;

/* Thread exit: the heap waits for the next thread (blocks it owns may
 * still be freed meanwhile; those land on its remote stack). */
static void heap_release(void *arg) {
    ts_heap *h = arg;
    if (t_heap == h) t_heap = NULL;
    pthread_mutex_lock(&g_lock);
    h->next_orphan = g_orphans;
    g_orphans = h;
    pthread_mutex_unlock(&g_lock);
}

static void ts_alloc_init(void) {
    void *m = mmap(NULL, LODE_TS_RESERVE + PAGE_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return;
    if (pthread_key_create(&g_key, heap_release) != 0) {
        munmap(m, LODE_TS_RESERVE + PAGE_SIZE);
        return;
    }
    uintptr_t b = ((uintptr_t)m + PAGE_SIZE - 1) & ~(uintptr_t)(PAGE_SIZE - 1);
    g_next_page = g_committed = (char *)b;
    atomic_store_explicit(&g_end, b + LODE_TS_RESERVE, memory_order_relaxed);
    atomic_store_explicit(&g_base, b, memory_order_release);
}

/* The calling thread's heap: adopted from a finished thread or new. NULL
 * when there is no range (then the caller uses malloc). */
static ts_heap *heap_get(void) {
    pthread_once(&g_once, ts_alloc_init);
    if (!atomic_load_explicit(&g_base, memory_order_acquire)) return NULL;
    pthread_mutex_lock(&g_lock);
    ts_heap *h = g_orphans;
    if (h) g_orphans = h->next_orphan;
    pthread_mutex_unlock(&g_lock);
    if (!h) {
        h = calloc(1, sizeof *h);
        if (!h) return NULL;
        pthread_mutex_lock(&g_lock);
        g_heaps++;
        pthread_mutex_unlock(&g_lock);
    }
    h->next_orphan = NULL;
    t_heap = h;
    pthread_setspecific(g_key, h);
    return h;
}

static inline ts_page *page_of(const void *ptr) {
    return (ts_page *)((uintptr_t)ptr & ~(uintptr_t)(PAGE_SIZE - 1));
}

static inline bool in_range(const void *ptr) {
    uintptr_t a = (uintptr_t)ptr;
    return a >= atomic_load_explicit(&g_base, memory_order_relaxed) &&
           a < atomic_load_explicit(&g_end, memory_order_relaxed);
}

/* A fresh page for class c of h; false when the range is used up. */
static bool page_new(ts_heap *h, unsigned c) {
    char *p = NULL;
    pthread_mutex_lock(&g_lock);
    char *end = (char *)atomic_load_explicit(&g_end, memory_order_relaxed);
    if (g_next_page + PAGE_SIZE > g_committed && g_committed < end &&
        mprotect(g_committed, COMMIT_STEP, PROT_READ | PROT_WRITE) == 0)
        g_committed += COMMIT_STEP;
    if (g_next_page + PAGE_SIZE <= g_committed) {
        p = g_next_page;
        g_next_page += PAGE_SIZE;
        g_pages++;
    }
    pthread_mutex_unlock(&g_lock);
    if (!p) return false;
    ts_page *pg = (ts_page *)p;
    pg->owner = h;
    pg->cls = c;
    h->bump[c] = p + PAGE_HDR;
    h->end[c] = p + PAGE_SIZE;
    return true;
}

/* Class c's free list is empty: take back what other threads freed, else
 * cut a block from the current page or a new one. NULL: use malloc. */
static void *small_slow(ts_heap *h, unsigned c) {
    ts_block *r = atomic_exchange_explicit(&h->remote, NULL, memory_order_acquire);
    while (r) {
        ts_block *next = r->next;
        unsigned rc = page_of(r)->cls;
        r->next = h->free[rc];
        h->free[rc] = r;
        r = next;
    }
    ts_block *b = h->free[c];
    if (b) {
        h->free[c] = b->next;
        return b;
    }
    size_t size = (size_t)(c + 1) * CLASS_STEP;
    if ((size_t)(h->end[c] - h->bump[c]) < size && !page_new(h, c)) return NULL;
    void *p = h->bump[c];
    h->bump[c] += size;
    return p;
}

void *lode_ts_malloc(size_t size) {
    if (size <= LODE_TS_ALLOC_MAX_SMALL) {
        ts_heap *h = t_heap;
        if (!h) h = heap_get();
        if (h) {
            unsigned c = size ? (unsigned)((size - 1) / CLASS_STEP) : 0;
            ts_block *b = h->free[c];
            if (b) {
                /* Blocks on the list are seldom in cache (a tree is freed
                 * whole, well before its blocks are reused): start loading
                 * the next head now, so that the next call's b->next does
                 * not wait on memory (prefetching NULL is harmless). */
                ts_block *next = b->next;
                h->free[c] = next;
                __builtin_prefetch(next, 1);
                return b;
            }
            void *p = small_slow(h, c);
            if (p) return p;
        }
    }
    return ts_checked(malloc(size), size);
}

void *lode_ts_calloc(size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) return ts_checked(NULL, SIZE_MAX);
    size_t n = count * size;
    void *p = lode_ts_malloc(n);
    memset(p, 0, n);
    return p;
}

void lode_ts_free(void *ptr) {
    if (!in_range(ptr)) {
        free(ptr);
        return;
    }
    ts_block *b = ptr;
    ts_page *pg = page_of(ptr);
    ts_heap *h = t_heap, *owner = pg->owner;
    if (owner == h) {
        b->next = h->free[pg->cls];
        h->free[pg->cls] = b;
        return;
    }
    ts_block *old = atomic_load_explicit(&owner->remote, memory_order_relaxed);
    do b->next = old;
    while (!atomic_compare_exchange_weak_explicit(&owner->remote, &old, b, memory_order_release, memory_order_relaxed));
}

size_t lode_ts_alloc_usable(const void *ptr) {
    return in_range(ptr) ? (size_t)(page_of(ptr)->cls + 1) * CLASS_STEP : 0;
}

void *lode_ts_realloc(void *ptr, size_t size) {
    if (!ptr) return lode_ts_malloc(size);
    size_t old = lode_ts_alloc_usable(ptr);
    if (!old) return ts_checked(realloc(ptr, size), size); /* malloc's block stays malloc's */
    if (size <= old) return ptr;
    void *p = lode_ts_malloc(size);
    memcpy(p, ptr, old);
    lode_ts_free(ptr);
    return p;
}

bool lode_ts_alloc_pooled(void) {
    pthread_once(&g_once, ts_alloc_init);
    return atomic_load_explicit(&g_base, memory_order_acquire) != 0;
}

bool lode_ts_alloc_owns(const void *ptr) { return ptr && in_range(ptr); }

void lode_ts_alloc_get_stats(lode_ts_alloc_stats *out) {
    pthread_mutex_lock(&g_lock);
    out->pages = g_pages;
    out->page_bytes = g_pages * PAGE_SIZE;
    out->heaps = g_heaps;
    pthread_mutex_unlock(&g_lock);
}

#endif
