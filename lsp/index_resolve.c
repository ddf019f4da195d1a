/*
 * index_resolve.c — import/include → indexed file, per language, best effort
 * (rules in lode_index.h). Only indexed files are ever returned, so nothing
 * outside the roots (or ignored) can come back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index_impl.h"

/* ---- helpers -------------------------------------------------------------------- */
static const char *indexed(lode_index *ix, const char *path) {
    char *p = lode_xstrdup(path);
    lode__path_normalize(p);
    lode__ixfile *f = lode__ix_file(ix, p);
    lode_free(p);
    return f ? f->path : NULL;
}

static const char *try_join(lode_index *ix, const char *dir, const char *rel, const char *suffix) {
    size_t n = strlen(dir) + strlen(rel) + strlen(suffix) + 3;
    char *p = lode_xmalloc(n);
    snprintf(p, n, "%s/%s%s", dir, rel, suffix);
    const char *r = indexed(ix, p);
    lode_free(p);
    return r;
}

static char *dir_of(const char *path) {
    char *d = lode_xstrdup(path);
    char *s = strrchr(d, '/');
    if (s && s != d) *s = 0;
    else if (s) s[1] = 0;
    return d;
}

static int cmp_path(const void *a, const void *b) {
    return strcmp((*(lode__ixfile *const *)a)->path, (*(lode__ixfile *const *)b)->path);
}

void lode__basenames_clear(lode_index *ix) {
    for (size_t i = 0; i < ix->basenames.cap; i++) {
        lode__ixlist *l = lode__smap_at(&ix->basenames, i);
        if (!l) continue;
        lode_free(l->f);
        lode_free(l->key);
        lode_free(l);
    }
    lode__smap_free(&ix->basenames);
}

static void basenames_build(lode_index *ix) {
    if (!ix->basenames_dirty && ix->basenames.cap) return;
    lode__basenames_clear(ix);
    for (size_t i = 0; i < ix->files.cap; i++) {
        lode__ixfile *f = lode__smap_at(&ix->files, i);
        if (!f) continue;
        const char *b = strrchr(f->path, '/') + 1;
        lode__ixlist *l = lode__smap_get(&ix->basenames, b);
        if (!l) {
            l = lode_xcalloc(1, sizeof *l);
            l->key = lode_xstrdup(b);
            lode__smap_put(&ix->basenames, l->key, l);
        }
        if (l->n == l->cap) l->cap = l->cap ? l->cap * 2 : 2, l->f = lode_xrealloc(l->f, l->cap * sizeof *l->f);
        l->f[l->n++] = f;
    }
    for (size_t i = 0; i < ix->basenames.cap; i++) {
        lode__ixlist *l = lode__smap_at(&ix->basenames, i);
        if (l && l->n > 1) qsort(l->f, l->n, sizeof *l->f, cmp_path);
    }
    ix->basenames_dirty = false;
}

static size_t common_prefix(const char *a, const char *b) {
    size_t n = 0;
    while (a[n] && a[n] == b[n]) n++;
    return n;
}

/* The indexed file whose path ends with "/suffix"; among several, the one
 * sharing the longest prefix with `near` (then the first by path). */
static const char *by_suffix(lode_index *ix, const char *suffix, const char *near) {
    basenames_build(ix);
    const char *b = strrchr(suffix, '/');
    b = b ? b + 1 : suffix;
    lode__ixlist *l = lode__smap_get(&ix->basenames, b);
    if (!l) return NULL;
    size_t sl = strlen(suffix);
    const char *best = NULL;
    size_t best_cp = 0;
    for (size_t i = 0; i < l->n; i++) {
        const char *p = l->f[i]->path;
        size_t pl = strlen(p);
        if (pl <= sl || p[pl - sl - 1] != '/' || strcmp(p + pl - sl, suffix) != 0) continue;
        size_t cp = common_prefix(p, near);
        if (!best || cp > best_cp) best = p, best_cp = cp;
    }
    return best;
}

/* First indexed file (by path) directly inside a directory whose path ends
 * with "/dsuffix", with extension ext, not ending in `not_suffix`. */
static const char *first_in_dir(lode_index *ix, const char *dsuffix, const char *ext, const char *not_suffix) {
    size_t dl = strlen(dsuffix), el = strlen(ext), nl = not_suffix ? strlen(not_suffix) : 0;
    size_t n = lode_index_n_files(ix);
    for (size_t i = 0; i < n; i++) {
        const char *p = lode_index_file_at(ix, i);
        const char *slash = strrchr(p, '/');
        size_t pl = strlen(p), dirl = (size_t)(slash - p);
        if (pl < el || strcmp(p + pl - el, ext) != 0) continue;
        if (nl && pl >= nl && strcmp(p + pl - nl, not_suffix) == 0) continue;
        if (dirl < dl + 1 || p[dirl - dl - 1] != '/' || strncmp(p + dirl - dl, dsuffix, dl) != 0) continue;
        return p;
    }
    return NULL;
}

static char *replace_chr(const char *s, char from, char to) {
    char *r = lode_xstrdup(s);
    for (char *p = r; *p; p++)
        if (*p == from) *p = to;
    return r;
}

static const lode_lang *L(const char *n) { return lode_lang_for_id(n); }

/* ---- per language ----------------------------------------------------------------- */
static const char *resolve_c(lode_index *ix, const char *from, const lode_import *imp) {
    const char *m = imp->module;
    if (!m[0] || m[0] == '/') return NULL;
    char *d = dir_of(from);
    const char *r = imp->system ? NULL : try_join(ix, d, m, "");
    lode_free(d);
    for (size_t i = 0; !r && i < ix->n_roots; i++) {
        const char *rt = ix->roots[i];
        if (!(r = try_join(ix, rt, m, ""))) {
            char *inc = lode_xmalloc(strlen(m) + 16);
            sprintf(inc, "include/%s", m);
            if (!(r = try_join(ix, rt, inc, ""))) {
                sprintf(inc, "src/%s", m);
                r = try_join(ix, rt, inc, "");
            }
            lode_free(inc);
        }
    }
    if (!r) r = by_suffix(ix, m, from);
    return r;
}

static const char *py_at(lode_index *ix, const char *base, const char *rel) {
    if (!rel[0]) return try_join(ix, base, "__init__.py", "");
    const char *r = try_join(ix, base, rel, ".py");
    if (!r) r = try_join(ix, base, rel, "/__init__.py");
    if (!r) r = try_join(ix, base, rel, ".pyi");
    return r;
}

static const char *resolve_python(lode_index *ix, const char *from, const lode_import *imp) {
    const char *m = imp->module;
    size_t dots = 0;
    while (m[dots] == '.') dots++;
    char *rel = replace_chr(m + dots, '.', '/');
    char *d = dir_of(from);
    const char *r = NULL;
    if (dots) {
        for (size_t k = 1; k < dots; k++) {
            char *s = strrchr(d, '/');
            if (s && s != d) *s = 0;
        }
        r = py_at(ix, d, rel);
    } else if (rel[0]) {
        /* The file's own directory and its ancestors (src layouts, packages). */
        int root = -1;
        for (size_t i = 0; i < ix->n_roots; i++)
            if (strncmp(from, ix->roots[i], ix->root_len[i]) == 0) root = (int)i;
        for (;;) {
            if ((r = py_at(ix, d, rel))) break;
            char *s = strrchr(d, '/');
            if (!s || s == d || (root >= 0 && strlen(d) <= ix->root_len[root])) break;
            *s = 0;
        }
        for (size_t i = 0; !r && i < ix->n_roots; i++) {
            char *src = lode_xmalloc(ix->root_len[i] + 8);
            sprintf(src, "%s/src", ix->roots[i]);
            r = py_at(ix, src, rel);
            lode_free(src);
        }
    }
    lode_free(d);
    lode_free(rel);
    return r;
}

static const char *resolve_js(lode_index *ix, const char *from, const lode_import *imp) {
    const char *m = imp->module;
    if (m[0] != '.' && m[0] != '/') return NULL; /* a package: node_modules is not indexed */
    static const char *const ext[] = {"", ".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts"};
    static const char *const idx[] = {"/index.ts", "/index.tsx", "/index.d.ts", "/index.js", "/index.jsx", "/index.mjs"};
    char *d = m[0] == '/' ? lode_xstrdup("") : dir_of(from);
    const char *r = NULL;
    for (size_t i = 0; !r && i < sizeof ext / sizeof ext[0]; i++) r = try_join(ix, d, m, ext[i]);
    for (size_t i = 0; !r && i < sizeof idx / sizeof idx[0]; i++) r = try_join(ix, d, m, idx[i]);
    /* TypeScript ESM: "./x.js" names ./x.ts */
    size_t ml = strlen(m);
    if (!r && ml > 3 && strcmp(m + ml - 3, ".js") == 0) {
        char *b = lode_xstrdup(m);
        b[ml - 3] = 0;
        if (!(r = try_join(ix, d, b, ".ts"))) r = try_join(ix, d, b, ".tsx");
        lode_free(b);
    }
    lode_free(d);
    return r;
}

static const char *resolve_go(lode_index *ix, const char *from, const lode_import *imp) {
    (void)from;
    const char *m = imp->module;
    const char *slash = strchr(m, '/');
    size_t first = slash ? (size_t)(slash - m) : strlen(m);
    if (!memchr(m, '.', first)) return NULL; /* the standard library */
    /* Longest suffix of the import path that names a directory with Go files. */
    for (const char *s = m; s; s = strchr(s, '/') ? strchr(s, '/') + 1 : NULL) {
        if (!strchr(s, '/') && s != m) break; /* need at least two components unless the whole path */
        const char *r = first_in_dir(ix, s, ".go", "_test.go");
        if (r) return r;
    }
    return NULL;
}

static const char *rs_mod(lode_index *ix, const char *base, const char *name) {
    const char *r = try_join(ix, base, name, ".rs");
    if (!r) r = try_join(ix, base, name, "/mod.rs");
    return r;
}

static const char *resolve_rust(lode_index *ix, const char *from, const lode_import *imp) {
    const char *m = imp->module;
    char *d = dir_of(from);
    const char *r = NULL;
    const char *fb = strrchr(from, '/') + 1;
    bool is_modroot = !strcmp(fb, "mod.rs") || !strcmp(fb, "lib.rs") || !strcmp(fb, "main.rs");
    if (!strstr(m, "::")) {
        if (strstr(imp->text, "mod ")) { /* mod foo; */
            if (is_modroot) {
                r = rs_mod(ix, d, m);
            } else {
                char *stem = lode_xstrdup(fb);
                stem[strlen(stem) - 3] = 0;
                char *base = lode_xmalloc(strlen(d) + strlen(stem) + 2);
                sprintf(base, "%s/%s", d, stem);
                r = rs_mod(ix, base, m);
                lode_free(base);
                lode_free(stem);
            }
        }
        lode_free(d);
        return r;
    }
    /* use crate::a::b::{C, D} / super::x / self::x */
    char *path = lode_xstrdup(m);
    char *cut = strstr(path, "::{");
    if (cut) *cut = 0;
    if ((cut = strstr(path, " as "))) *cut = 0;
    if ((cut = strstr(path, "::*"))) *cut = 0;
    char *base = NULL;
    const char *rest = NULL;
    if (!strncmp(path, "crate::", 7)) {
        /* the crate root: nearest ancestor with lib.rs or main.rs */
        char *a = lode_xstrdup(d);
        for (;;) {
            if (try_join(ix, a, "lib.rs", "") || try_join(ix, a, "main.rs", "")) {
                base = a;
                break;
            }
            char *s = strrchr(a, '/');
            if (!s || s == a) {
                lode_free(a);
                break;
            }
            *s = 0;
        }
        rest = path + 7;
    } else if (!strncmp(path, "super::", 7)) {
        base = lode_xstrdup(d);
        if (!is_modroot) { /* foo.rs's parent module is its directory */
        } else {
            char *s = strrchr(base, '/');
            if (s && s != base) *s = 0;
        }
        rest = path + 7;
    } else if (!strncmp(path, "self::", 6)) {
        base = lode_xstrdup(d);
        rest = path + 6;
    }
    if (base && rest) {
        char *rel = lode_xstrdup(rest);
        /* a::b::C → try a/b/C, a/b, a */
        for (char *p; (p = strstr(rel, "::"));) *p = '/', memmove(p + 1, p + 2, strlen(p + 2) + 1);
        for (;;) {
            if ((r = rs_mod(ix, base, rel))) break;
            char *s = strrchr(rel, '/');
            if (!s) break;
            *s = 0;
        }
        lode_free(rel);
    }
    lode_free(base);
    lode_free(path);
    lode_free(d);
    return r;
}

static const char *resolve_java(lode_index *ix, const char *from, const lode_import *imp) {
    const char *m = imp->module;
    size_t ml = strlen(m);
    char *rel = replace_chr(m, '.', '/');
    const char *r = NULL;
    if (ml > 2 && strcmp(m + ml - 2, ".*") == 0) {
        rel[ml - 2] = 0;
        r = first_in_dir(ix, rel, ".java", NULL);
    } else {
        char *s = lode_xmalloc(ml + 8);
        for (int tries = 0; tries < 2 && !r; tries++) { /* static import: drop the member */
            sprintf(s, "%s.java", rel);
            r = by_suffix(ix, s, from);
            char *dot = strrchr(rel, '/');
            if (!dot) break;
            *dot = 0;
        }
        lode_free(s);
    }
    lode_free(rel);
    return r;
}

static const char *resolve_lua(lode_index *ix, const char *from, const lode_import *imp) {
    char *rel = replace_chr(imp->module, '.', '/');
    char *d = dir_of(from);
    const char *r = try_join(ix, d, rel, ".lua");
    for (size_t i = 0; !r && i < ix->n_roots; i++) {
        if (!(r = try_join(ix, ix->roots[i], rel, ".lua"))) r = try_join(ix, ix->roots[i], rel, "/init.lua");
    }
    if (!r) {
        char *s = lode_xmalloc(strlen(rel) + 8);
        sprintf(s, "%s.lua", rel);
        r = by_suffix(ix, s, from);
        lode_free(s);
    }
    lode_free(d);
    lode_free(rel);
    return r;
}

static const char *resolve_ruby(lode_index *ix, const char *from, const lode_import *imp) {
    const char *m = imp->module;
    size_t ml = strlen(m);
    const char *ext = ml > 3 && !strcmp(m + ml - 3, ".rb") ? "" : ".rb";
    const char *r = NULL;
    if (!strncmp(m, "./", 2) || !strncmp(m, "../", 3)) {
        char *d = dir_of(from);
        r = try_join(ix, d, m, ext);
        lode_free(d);
        return r;
    }
    for (size_t i = 0; !r && i < ix->n_roots; i++) {
        char *lib = lode_xmalloc(ml + 8);
        sprintf(lib, "lib/%s", m);
        if (!(r = try_join(ix, ix->roots[i], lib, ext))) r = try_join(ix, ix->roots[i], m, ext);
        lode_free(lib);
    }
    if (!r && strchr(m, '/')) {
        char *s = lode_xmalloc(ml + 4);
        sprintf(s, "%s%s", m, ext);
        r = by_suffix(ix, s, from);
        lode_free(s);
    }
    return r;
}

static const char *resolve_bash(lode_index *ix, const char *from, const lode_import *imp) {
    const char *m = imp->module;
    if (!m[0] || strchr(m, '$') || strchr(m, '`')) return NULL;
    if (m[0] == '/') return indexed(ix, m);
    char *d = dir_of(from);
    const char *r = try_join(ix, d, m, "");
    for (size_t i = 0; !r && i < ix->n_roots; i++) r = try_join(ix, ix->roots[i], m, "");
    lode_free(d);
    return r;
}

const char *lode_index_resolve_import(lode_index *ix, const char *from_path, const lode_import *imp) {
    if (!ix || !from_path || !imp || !imp->module || !imp->text) return NULL;
    lode__ixfile *ff = lode__ix_file(ix, from_path);
    char *c = NULL;
    if (!ff) {
        char *r = realpath(from_path, NULL);
        if (r) c = lode_xstrdup(r), free(r);
        else c = lode_xstrdup(from_path);
    }
    const char *from = ff ? ff->path : c;
    const lode_lang *l = ff ? ff->lang : lode_lang_for_path(from);
    const char *r = NULL;
    if (!l || from[0] != '/') r = NULL;
    else if (l == L("c") || l == L("cpp")) r = resolve_c(ix, from, imp);
    else if (l == L("python")) r = resolve_python(ix, from, imp);
    else if (l == L("javascript") || l == L("typescript") || l == L("tsx")) r = resolve_js(ix, from, imp);
    else if (l == L("go")) r = resolve_go(ix, from, imp);
    else if (l == L("rust")) r = resolve_rust(ix, from, imp);
    else if (l == L("java")) r = resolve_java(ix, from, imp);
    else if (l == L("lua")) r = resolve_lua(ix, from, imp);
    else if (l == L("ruby")) r = resolve_ruby(ix, from, imp);
    else if (l == L("bash")) r = resolve_bash(ix, from, imp);
    lode_free(c);
    /* Never the importing file itself. */
    if (r && strcmp(r, from_path) == 0) r = NULL;
    return r;
}
