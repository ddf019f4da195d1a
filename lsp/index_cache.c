/*
 * index_cache.c — the index's on-disk cache, one file per root.
 *
 * Layout (host byte order, checked by the byte-order word):
 *   "LODEIDX\0"  u32 version  u32 0x01020304  u64 payload bytes  u64 FNV-1a of the payload
 *   payload: str root, u32 n_files, then per file:
 *     str relpath, str lang, u64 size, u64 mtime_ns, u64 inode,
 *     u32 n_syms  { u8 kind, u32 start, end, sig_end, name_start, line, i32 parent, str name }
 *     u32 n_imports { u32 start, end, line, u8 system, str text, str module }
 *   str = u32 length + bytes (no NUL).
 * Everything is validated on load (bounds, language, kinds, ranges within
 * the recorded size, parents, relative paths inside the root); one fault
 * discards the whole cache. Files with an open-document overlay are not
 * saved (their symbols do not describe the disk contents).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index_impl.h"

#define CACHE_MAGIC "LODEIDX"
#define CACHE_VERSION 1u
#define CACHE_BOM 0x01020304u
#define CACHE_MAX_BYTES (1ull << 31)
#define HDR_BYTES (8 + 4 + 4 + 8 + 8)

typedef struct wbuf {
    char *b;
    size_t n, cap;
} wbuf;

static void wput(wbuf *w, const void *p, size_t n) {
    if (w->n + n > w->cap) {
        size_t nc = w->cap ? w->cap : 65536;
        while (nc < w->n + n) nc *= 2;
        w->b = lode_xrealloc(w->b, nc);
        w->cap = nc;
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void w32(wbuf *w, uint32_t v) { wput(w, &v, 4); }
static void w64(wbuf *w, uint64_t v) { wput(w, &v, 8); }
static void wstr(wbuf *w, const char *s) {
    size_t n = strlen(s);
    w32(w, (uint32_t)n);
    wput(w, s, n);
}

static uint64_t fnv(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static int mkdirs(const char *path) {
    char *p = lode_xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            lode_free(p);
            return -1;
        }
        *s = '/';
    }
    lode_free(p);
    return 0;
}

lode_status lode__cache_save(lode_index *ix, size_t r) {
    const char *cp = ix->cache_paths[r];
    if (!cp) return LODE_OK;
    wbuf w = {0};
    char hdr[HDR_BYTES] = {0};
    wput(&w, hdr, HDR_BYTES);
    wstr(&w, ix->roots[r]);
    size_t count_at = w.n;
    w32(&w, 0);
    uint32_t nf = 0;
    size_t rl = ix->root_len[r];
    for (size_t i = 0; i < ix->files.cap; i++) {
        lode__ixfile *f = lode__smap_at(&ix->files, i);
        if (!f || f->root != r || f->overlay || f->size == UINT64_MAX) continue;
        wstr(&w, f->path + rl + (rl == 1 ? 0 : 1));
        wstr(&w, lode_lang_name(f->lang));
        w64(&w, f->size);
        w64(&w, f->mtime_ns);
        w64(&w, f->ino);
        w32(&w, (uint32_t)f->syms.n_syms);
        for (size_t k = 0; k < f->syms.n_syms; k++) {
            const lode_sym *s = &f->syms.syms[k];
            uint8_t kind = (uint8_t)s->kind;
            wput(&w, &kind, 1);
            w32(&w, s->start), w32(&w, s->end), w32(&w, s->sig_end), w32(&w, s->name_start), w32(&w, s->line);
            w32(&w, (uint32_t)s->parent);
            wstr(&w, s->name);
        }
        w32(&w, (uint32_t)f->syms.n_imports);
        for (size_t k = 0; k < f->syms.n_imports; k++) {
            const lode_import *im = &f->syms.imports[k];
            w32(&w, im->start), w32(&w, im->end), w32(&w, im->line);
            uint8_t sys = im->system;
            wput(&w, &sys, 1);
            wstr(&w, im->text);
            wstr(&w, im->module);
        }
        nf++;
    }
    memcpy(w.b + count_at, &nf, 4);
    uint64_t plen = w.n - HDR_BYTES, sum = fnv(w.b + HDR_BYTES, plen);
    uint32_t ver = CACHE_VERSION, bom = CACHE_BOM;
    memcpy(w.b, CACHE_MAGIC, 8);
    memcpy(w.b + 8, &ver, 4);
    memcpy(w.b + 12, &bom, 4);
    memcpy(w.b + 16, &plen, 8);
    memcpy(w.b + 24, &sum, 8);

    lode_status st = LODE_OK;
    if (mkdirs(cp) != 0) {
        st = LODE_ERR_IO;
    } else {
        size_t tl = strlen(cp) + 32;
        char *tmp = lode_xmalloc(tl);
        snprintf(tmp, tl, "%s.%ld.tmp", cp, (long)getpid());
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            st = LODE_ERR_IO;
        } else {
            size_t off = 0;
            while (off < w.n) {
                ssize_t k = write(fd, w.b + off, w.n - off);
                if (k < 0 && errno == EINTR) continue;
                if (k <= 0) break;
                off += (size_t)k;
            }
            if (close(fd) != 0 || off != w.n || rename(tmp, cp) != 0) st = LODE_ERR_IO;
            if (st != LODE_OK) unlink(tmp);
        }
        lode_free(tmp);
    }
    lode_free(w.b);
    return st;
}

/* ---- loading ---------------------------------------------------------------------- */
typedef struct rbuf {
    const char *p, *end;
    bool bad;
} rbuf;

static bool rget(rbuf *r, void *out, size_t n) {
    if (r->bad || (size_t)(r->end - r->p) < n) return !(r->bad = true);
    memcpy(out, r->p, n);
    r->p += n;
    return true;
}
static uint32_t r32(rbuf *r) {
    uint32_t v = 0;
    rget(r, &v, 4);
    return v;
}
static uint64_t r64(rbuf *r) {
    uint64_t v = 0;
    rget(r, &v, 8);
    return v;
}
/* A string: copied, NUL-terminated; NULL (and r->bad) when malformed or it
 * holds a NUL byte. */
static char *rstr(rbuf *r, size_t max) {
    uint32_t n = r32(r);
    if (r->bad || n > max || (size_t)(r->end - r->p) < n || memchr(r->p, 0, n)) {
        r->bad = true;
        return NULL;
    }
    char *s = lode_xmalloc(n + 1);
    memcpy(s, r->p, n);
    s[n] = 0;
    r->p += n;
    return s;
}

static bool rel_ok(const char *rel) {
    if (!rel[0] || rel[0] == '/') return false;
    for (const char *s = rel; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return false;
        s += n + (e ? 1 : 0);
    }
    return true;
}

static const lode_lang *lang_named(const char *n) {
    for (size_t i = 0; i < lode_lang_count(); i++)
        if (strcmp(lode_lang_name(lode_lang_at(i)), n) == 0) return lode_lang_at(i);
    return NULL;
}

static void ixfile_discard(lode__ixfile *f) {
    if (!f) return;
    lode_file_syms_clear(&f->syms);
    lode_free(f->path);
    lode_free(f);
}

/* One file record; NULL when invalid. */
static lode__ixfile *read_record(lode_index *ix, size_t r, rbuf *rb) {
    lode__ixfile *f = lode_xcalloc(1, sizeof *f);
    char *rel = rstr(rb, 4096), *lang = rel ? rstr(rb, 64) : NULL;
    if (!rel || !lang || !rel_ok(rel) || !(f->lang = lang_named(lang))) goto bad;
    size_t rl = ix->root_len[r];
    f->path = lode_xmalloc(rl + strlen(rel) + 2);
    sprintf(f->path, "%s%s%s", ix->roots[r], rl == 1 ? "" : "/", rel);
    f->root = (uint32_t)r;
    f->size = r64(rb), f->mtime_ns = r64(rb), f->ino = r64(rb);
    if (rb->bad || f->size > ix->max_file_bytes || f->lang != lode_lang_for_path(f->path)) goto bad;
    uint32_t ns = r32(rb);
    if (rb->bad || ns > (size_t)(rb->end - rb->p) / 26) goto bad;
    f->syms.syms = lode_xcalloc(ns ? ns : 1, sizeof *f->syms.syms);
    for (uint32_t k = 0; k < ns; k++) {
        lode_sym *s = &f->syms.syms[k];
        uint8_t kind = 0;
        rget(rb, &kind, 1);
        s->kind = (lode_sym_kind)kind;
        s->start = r32(rb), s->end = r32(rb), s->sig_end = r32(rb), s->name_start = r32(rb), s->line = r32(rb);
        s->parent = (int32_t)r32(rb);
        s->name = rstr(rb, 4096);
        f->syms.n_syms = k + 1;
        if (rb->bad || kind >= LODE_SYM_KIND_COUNT || !s->name[0] || s->start > s->name_start ||
            s->name_start >= s->end || s->end > f->size || s->sig_end < s->start || s->sig_end > s->end ||
            s->line > s->start || s->parent < -1 || s->parent >= (int32_t)k)
            goto bad;
    }
    uint32_t ni = r32(rb);
    if (rb->bad || ni > (size_t)(rb->end - rb->p) / 21) goto bad;
    f->syms.imports = lode_xcalloc(ni ? ni : 1, sizeof *f->syms.imports);
    for (uint32_t k = 0; k < ni; k++) {
        lode_import *im = &f->syms.imports[k];
        im->start = r32(rb), im->end = r32(rb), im->line = r32(rb);
        uint8_t sys = 0;
        rget(rb, &sys, 1);
        im->system = sys != 0;
        im->text = rstr(rb, 1 << 16);
        im->module = im->text ? rstr(rb, 1 << 16) : NULL;
        f->syms.n_imports = k + 1;
        if (rb->bad || sys > 1 || im->start > im->end || im->end > f->size) goto bad;
    }
    lode_free(rel);
    lode_free(lang);
    return f;
bad:
    rb->bad = true;
    lode_free(rel);
    lode_free(lang);
    ixfile_discard(f);
    return NULL;
}

bool lode__cache_load(lode_index *ix, size_t r) {
    const char *cp = ix->cache_paths[r];
    if (!cp) return false;
    int fd = open(cp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return false;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < HDR_BYTES ||
        (uint64_t)st.st_size > CACHE_MAX_BYTES) {
        close(fd);
        return false;
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = lode_try_malloc(n);
    if (!buf) {
        close(fd);
        return false;
    }
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd);
    bool ok = false;
    lode__smap dups = {0};
    lode__ixfile **loaded = NULL;
    size_t nl = 0;
    uint32_t ver, bom;
    uint64_t plen, sum;
    memcpy(&ver, buf + 8, 4);
    memcpy(&bom, buf + 12, 4);
    memcpy(&plen, buf + 16, 8);
    memcpy(&sum, buf + 24, 8);
    if (got != n || memcmp(buf, CACHE_MAGIC, 8) != 0 || ver != CACHE_VERSION || bom != CACHE_BOM ||
        plen != n - HDR_BYTES || fnv(buf + HDR_BYTES, plen) != sum) {
        lode_log(LODE_LOG_INFO, "index: ignoring cache %s (invalid or another version)", cp);
        goto out;
    }
    rbuf rb = {buf + HDR_BYTES, buf + n, false};
    char *root = rstr(&rb, 1 << 16);
    bool root_ok = root && strcmp(root, ix->roots[r]) == 0;
    lode_free(root);
    if (!root_ok) goto out;
    uint32_t nf = r32(&rb);
    if (rb.bad || nf > (size_t)(rb.end - rb.p) / 40 + 1) goto out;
    loaded = lode_xcalloc(nf ? nf : 1, sizeof *loaded);
    for (uint32_t i = 0; i < nf; i++) {
        lode__ixfile *f = read_record(ix, r, &rb);
        if (!f) goto out;
        loaded[nl++] = f;
        /* A path twice (or already indexed): not a cache we wrote. */
        if (lode__ix_file(ix, f->path) || lode__smap_get(&dups, f->path)) goto out;
        lode__smap_put(&dups, f->path, f);
    }
    if (rb.p != rb.end) goto out;
    ok = true;
out:
    lode__smap_free(&dups);
    if (!ok && nl) lode_log(LODE_LOG_INFO, "index: ignoring corrupt cache %s", cp);
    for (size_t i = 0; i < nl; i++) {
        if (ok) {
            loaded[i]->from_cache = true;
            lode__ix_add_file(ix, loaded[i]);
        } else {
            ixfile_discard(loaded[i]);
        }
    }
    lode_free(loaded);
    lode_free(buf);
    return ok;
}
