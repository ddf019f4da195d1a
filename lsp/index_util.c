/*
 * index_util.c — the index's string hash map, path normalisation, and
 * .gitignore parsing and matching (the rules of gitignore(5): comments,
 * escapes, trailing-space trimming, negation, directory-only patterns,
 * anchoring by an inner '/', "**" in all three positions).
 */
#include <string.h>

#include "index_impl.h"

/* ---- hash map ------------------------------------------------------------------ */
static const char g_tomb_key[1];
#define TOMB ((const char *)g_tomb_key)

uint64_t lode__hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static void smap_grow(lode__smap *m) {
    size_t nc = m->cap ? m->cap * 2 : 64;
    while (m->n * 2 >= nc) nc *= 2;
    const char **ok = m->keys;
    void **ov = m->vals;
    size_t oc = m->cap;
    m->keys = lode_xcalloc(nc, sizeof *m->keys);
    m->vals = lode_xcalloc(nc, sizeof *m->vals);
    m->cap = nc;
    m->n = m->used = 0;
    for (size_t i = 0; i < oc; i++)
        if (ok[i] && ok[i] != TOMB) lode__smap_put(m, ok[i], ov[i]);
    lode_free(ok);
    lode_free(ov);
}

static size_t smap_find(const lode__smap *m, const char *key, bool *found) {
    size_t mask = m->cap - 1, i = lode__hash(key, strlen(key)) & mask, tomb = SIZE_MAX;
    for (;;) {
        const char *k = m->keys[i];
        if (!k) {
            *found = false;
            return tomb != SIZE_MAX ? tomb : i;
        }
        if (k == TOMB) {
            if (tomb == SIZE_MAX) tomb = i;
        } else if (strcmp(k, key) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & mask;
    }
}

void *lode__smap_get(const lode__smap *m, const char *key) {
    if (!m->cap) return NULL;
    bool f;
    size_t i = smap_find(m, key, &f);
    return f ? m->vals[i] : NULL;
}

void lode__smap_put(lode__smap *m, const char *key, void *val) {
    if ((m->used + 1) * 4 >= m->cap * 3) smap_grow(m);
    bool f;
    size_t i = smap_find(m, key, &f);
    if (!f) {
        if (!m->keys[i]) m->used++;
        m->n++;
    }
    m->keys[i] = key;
    m->vals[i] = val;
}

void *lode__smap_del(lode__smap *m, const char *key) {
    if (!m->cap) return NULL;
    bool f;
    size_t i = smap_find(m, key, &f);
    if (!f) return NULL;
    void *v = m->vals[i];
    m->keys[i] = TOMB;
    m->vals[i] = NULL;
    m->n--;
    return v;
}

void *lode__smap_at(const lode__smap *m, size_t i) {
    return (i < m->cap && m->keys[i] && m->keys[i] != TOMB) ? m->vals[i] : NULL;
}

void lode__smap_free(lode__smap *m) {
    lode_free(m->keys);
    lode_free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- paths --------------------------------------------------------------------- */
void lode__path_normalize(char *p) {
    /* p is absolute. Rewrite in place: collapse "//", drop ".", resolve "..". */
    char *w = p;
    const char *r = p;
    if (*r != '/') return;
    while (*r) {
        while (*r == '/') r++;
        const char *seg = r;
        while (*r && *r != '/') r++;
        size_t n = (size_t)(r - seg);
        if (n == 0) break;
        if (n == 1 && seg[0] == '.') continue;
        if (n == 2 && seg[0] == '.' && seg[1] == '.') {
            while (w > p && *--w != '/') {
            }
            continue;
        }
        *w++ = '/';
        memmove(w, seg, n);
        w += n;
    }
    if (w == p) *w++ = '/';
    *w = 0;
}

/* ---- gitignore ----------------------------------------------------------------- */
static bool class_match(const char **pp, char c) {
    const char *p = *pp + 1; /* after '[' */
    bool neg = false, ok = false;
    if (*p == '!' || *p == '^') neg = true, p++;
    bool first = true;
    while (*p && (*p != ']' || first)) {
        first = false;
        char lo = *p;
        if (lo == '\\' && p[1]) lo = *++p;
        char hi = lo;
        if (p[1] == '-' && p[2] && p[2] != ']') {
            hi = p[2];
            if (hi == '\\' && p[3]) hi = p[3], p++;
            p += 2;
        }
        if (c >= lo && c <= hi) ok = true;
        p++;
    }
    if (*p != ']') return false; /* unterminated: no match */
    *pp = p + 1;
    return neg ? !ok : ok;
}

bool lode__wildmatch(const char *p, const char *s) {
    for (;;) {
        char c = *p;
        if (c == 0) return *s == 0;
        if (c == '*') {
            if (p[1] == '*') {
                /* a double star: leading, inner (slash star star slash) or trailing: any number of dirs */
                const char *q = p + 2;
                if (*q == '/') {
                    q++;
                    for (const char *t = s;; t++) {
                        if ((t == s || t[-1] == '/') && lode__wildmatch(q, t)) return true;
                        if (!*t) return false;
                    }
                }
                if (*q == 0) return true;
                for (const char *t = s;; t++) { /* "a**b": like '*' across '/' */
                    if (lode__wildmatch(q, t)) return true;
                    if (!*t) return false;
                }
            }
            p++;
            for (const char *t = s;; t++) {
                if (lode__wildmatch(p, t)) return true;
                if (!*t || *t == '/') return false;
            }
        }
        if (*s == 0) return false;
        if (c == '?') {
            if (*s == '/') return false;
            p++, s++;
            continue;
        }
        if (c == '[') {
            if (*s == '/') return false;
            const char *q = p;
            if (!class_match(&q, *s)) return false;
            p = q, s++;
            continue;
        }
        if (c == '\\' && p[1]) c = *++p;
        if (c != *s) return false;
        p++, s++;
    }
}

lode__gitignore *lode__gitignore_parse(const char *dir, const char *text, size_t len) {
    lode__gitignore *g = lode_xcalloc(1, sizeof *g);
    g->dir = lode_xstrdup(dir);
    size_t cap = 0;
    const char *end = text + len;
    for (const char *l = text; l < end;) {
        const char *nl = memchr(l, '\n', (size_t)(end - l));
        const char *le = nl ? nl : end;
        size_t n = (size_t)(le - l);
        if (n && l[n - 1] == '\r') n--;
        /* Trailing spaces are dropped unless escaped. */
        while (n && l[n - 1] == ' ' && !(n >= 2 && l[n - 2] == '\\')) n--;
        const char *s = l;
        l = nl ? nl + 1 : end;
        if (n == 0 || s[0] == '#') continue;
        lode__gipat pt = {0};
        if (s[0] == '!') pt.neg = true, s++, n--;
        else if (s[0] == '\\' && n > 1 && (s[1] == '#' || s[1] == '!')) s++, n--;
        if (n && s[n - 1] == '/') pt.dir_only = true, n--;
        if (n == 0) continue;
        /* A '/' at the start or in the middle anchors the pattern to this directory. */
        pt.anchored = memchr(s, '/', n) != NULL;
        if (s[0] == '/') s++, n--;
        if (n == 0) continue;
        pt.pat = lode_xmalloc(n + 1);
        memcpy(pt.pat, s, n);
        pt.pat[n] = 0;
        if (g->n == cap) cap = cap ? cap * 2 : 8, g->p = lode_xrealloc(g->p, cap * sizeof *g->p);
        g->p[g->n++] = pt;
    }
    return g;
}

void lode__gitignore_free(lode__gitignore *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n; i++) lode_free(g->p[i].pat);
    lode_free(g->p);
    lode_free(g->dir);
    lode_free(g);
}

int lode__gitignore_match(const lode__gitignore *g, const char *rel, bool is_dir) {
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    for (size_t i = g->n; i-- > 0;) {
        const lode__gipat *p = &g->p[i];
        if (p->dir_only && !is_dir) continue;
        if (lode__wildmatch(p->pat, p->anchored ? rel : base)) return p->neg ? 0 : 1;
    }
    return -1;
}
