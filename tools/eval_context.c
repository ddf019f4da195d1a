/*
 * eval_context.c — recall of the project context on real code (`make
 * eval-context`, tools/eval-context.sh). No model is involved.
 *
 *   eval_context [--sites N] [--budgets 2048,4096,8192] [--tokenizer VOCAB] [--json] NAME=ROOT...
 *
 * For each project: index ROOT; collect call sites `name(` whose callee is
 * a function/method/macro defined in another indexed file of the project
 * and nowhere in the calling file; take N of them spread evenly over the
 * project (deterministic); mask each (the file is cut from the callee's
 * name to the end of its line, the cursor left there) and assemble the
 * context for the masked file at each budget; a site is a hit when the
 * prompt holds a definition or declaration of `name` from another file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lode_context.h"

typedef struct site {
    const char *path; /* index-owned, stable while the index does not change */
    uint32_t at, line_end;
    char *name;
} site;

typedef struct sites {
    site *v;
    size_t n, cap;
} sites;

static bool callee_node(const char *ty) {
    return !strcmp(ty, "identifier") || !strcmp(ty, "field_identifier") || !strcmp(ty, "property_identifier");
}

static bool defined_elsewhere(lode_index *ix, const char *path, const lode_file_syms *own, const char *name) {
    for (size_t i = 0; i < own->n_syms; i++)
        if (!strcmp(own->syms[i].name, name)) return false;
    lode_def d[32];
    size_t n = lode_index_lookup(ix, name, d, 32);
    if (n > 32) n = 32;
    for (size_t i = 0; i < n; i++) {
        lode_sym_kind k = d[i].sym->kind;
        if (strcmp(d[i].path, path) && (k == LODE_SYM_FUNCTION || k == LODE_SYM_METHOD || k == LODE_SYM_MACRO))
            return true;
    }
    return false;
}

static void walk(TSNode n, const char *t, size_t len, lode_index *ix, const char *path, const lode_file_syms *own,
                 sites *out) {
    uint32_t nc = ts_node_child_count(n);
    if (!nc) {
        if (!callee_node(ts_node_type(n))) return;
        uint32_t s = ts_node_start_byte(n), e = ts_node_end_byte(n);
        size_t k = e;
        while (k < len && (t[k] == ' ' || t[k] == '\t')) k++;
        if (k >= len || t[k] != '(' || e - s < 3 || e - s > 60) return;
        for (size_t i = 0; i < own->n_syms; i++)
            if (own->syms[i].name_start == s) return; /* a definition, not a call */
        char name[64];
        memcpy(name, t + s, e - s);
        name[e - s] = 0;
        if (!defined_elsewhere(ix, path, own, name)) return;
        uint32_t le = e;
        while (le < len && t[le] != '\n') le++;
        if (out->n == out->cap) out->v = realloc(out->v, (out->cap = out->cap * 2 + 64) * sizeof *out->v);
        out->v[out->n++] = (site){path, s, le, strdup(name)};
        return;
    }
    for (uint32_t i = 0; i < nc; i++) walk(ts_node_child(n, i), t, len, ix, path, own, out);
}

static int eval_project(const char *name, const char *root, size_t max_sites, const size_t *budgets, size_t nb,
                        const lode_tok *tok, bool json) {
    const char *roots[1] = {root};
    lode_index_opts o = {.no_watch = true};
    lode_error e = {0};
    double t0 = lode_time_s();
    lode_index *ix = lode_index_open(roots, 1, &o, &e);
    if (!ix || lode_index_scan(ix, &e)) {
        fprintf(stderr, "eval_context: %s: %s\n", root, e.text);
        lode_index_free(ix);
        return 1;
    }
    double t_scan = lode_time_s() - t0;
    sites all = {0};
    size_t nf = lode_index_n_files(ix);
    /* languages seen, by files */
    char langs[128] = "";
    for (size_t i = 0; i < nf; i++) {
        const char *path = lode_index_file_at(ix, i);
        const lode_lang *lang = lode_lang_for_path(path);
        const lode_file_syms *fs = lode_index_file(ix, path);
        if (!lang || !fs) continue;
        const char *ln = lode_lang_name(lang);
        if (!strstr(langs, ln) && strlen(langs) + strlen(ln) + 2 < sizeof langs) {
            if (*langs) strcat(langs, ",");
            strcat(langs, ln);
        }
        size_t len;
        char *t = lode_index_read(ix, path, &len);
        if (!t) continue;
        TSTree *tr = lode_syntax_parse(lang, t, len);
        if (tr) walk(ts_tree_root_node(tr), t, len, ix, path, fs, &all);
        if (tr) ts_tree_delete(tr);
        lode_free(t);
    }
    size_t take = all.n < max_sites ? all.n : max_sites;
    size_t hits[8] = {0}, tok_sum[8] = {0};
    double t_build = 0;
    size_t builds = 0;
    lode_ctx *c = lode_ctx_new(ix, roots, 1, tok);
    for (size_t k = 0; k < take; k++) {
        const site *s = &all.v[take == all.n ? k : k * all.n / take];
        size_t len;
        char *t = lode_index_read(ix, s->path, &len);
        if (!t) continue;
        /* mask: drop [callee, end of line) */
        size_t ml = len - (s->line_end - s->at);
        memmove(t + s->at, t + s->line_end, len - s->line_end + 1);
        const lode_lang *lang = lode_lang_for_path(s->path);
        TSTree *tr = lode_syntax_parse(lang, t, ml);
        for (size_t b = 0; b < nb; b++) {
            lode_ctx_input in = {s->path, lang, t, ml, s->at, tr, budgets[b]};
            lode_ctx_prompt p;
            double a = lode_time_s();
            if (lode_ctx_build(c, &in, &p, &e)) continue;
            t_build += lode_time_s() - a;
            builds++;
            tok_sum[b] += p.tokens;
            bool hit = false;
            for (size_t i = 0; i < p.n_defs && !hit; i++) {
                const char *d = p.defs[i], *tab = strchr(d, '\t');
                hit = tab && !strcmp(tab + 1, s->name) && strncmp(d, s->path, (size_t)(tab - d));
            }
            hits[b] += hit;
            lode_ctx_prompt_clear(&p);
        }
        if (tr) ts_tree_delete(tr);
        lode_free(t);
    }
    if (json) {
        printf("{\"project\": \"%s\", \"languages\": \"%s\", \"files\": %zu, \"call_sites\": %zu, \"sampled\": %zu, "
               "\"scan_s\": %.2f, \"build_ms_mean\": %.3f",
               name, langs, nf, all.n, take, t_scan, builds ? t_build * 1000 / (double)builds : 0);
        for (size_t b = 0; b < nb; b++)
            printf(", \"recall_%zu\": %.4f", budgets[b], take ? (double)hits[b] / (double)take : 0);
        printf("}\n");
    } else {
        printf("| %s | %s | %zu | %zu | %zu |", name, langs, nf, all.n, take);
        for (size_t b = 0; b < nb; b++)
            printf(" %.1f%% (%zu) |", take ? 100.0 * (double)hits[b] / (double)take : 0, take ? tok_sum[b] / take : 0);
        printf(" %.2f |\n", builds ? t_build * 1000 / (double)builds : 0);
    }
    fflush(stdout);
    for (size_t i = 0; i < all.n; i++) free(all.v[i].name);
    free(all.v);
    lode_ctx_free(c);
    lode_index_free(ix);
    return 0;
}

int main(int argc, char **argv) {
    size_t max_sites = 300, budgets[8] = {2048, 4096, 8192}, nb = 3;
    const char *vocab = NULL;
    bool json = false;
    int first = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sites") && i + 1 < argc) max_sites = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) vocab = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--budgets") && i + 1 < argc) {
            nb = 0;
            for (char *s = argv[++i]; *s && nb < 8;) {
                budgets[nb++] = strtoul(s, &s, 10);
                if (*s == ',') s++;
            }
        } else if (argv[i][0] != '-') {
            first = i;
            break;
        } else {
            fprintf(stderr, "usage: eval_context [--sites N] [--budgets 2048,4096,8192] [--tokenizer VOCAB] [--json] NAME=ROOT...\n");
            return 2;
        }
    }
    if (first == argc || !max_sites || !nb) {
        fprintf(stderr, "usage: eval_context [--sites N] [--budgets 2048,4096,8192] [--tokenizer VOCAB] [--json] NAME=ROOT...\n");
        return 2;
    }
    lode_tok *tok = NULL;
    lode_error e = {0};
    if (vocab && lode_tok_load(vocab, &tok, &e)) {
        fprintf(stderr, "eval_context: %s\n", e.text);
        return 1;
    }
    if (!json) {
        printf("tokens: %s\n\n", tok ? "counted with the DeepSeek-Coder tokenizer" : "estimated (bytes / 2.5)");
        printf("| project | languages | files | call sites | sampled |");
        for (size_t b = 0; b < nb; b++) printf(" hit @%zu (mean tokens) |", budgets[b]);
        printf(" build ms (mean) |\n|---|---|---|---|---|");
        for (size_t b = 0; b < nb; b++) printf("---|");
        printf("---|\n");
    }
    int rc = 0;
    for (int i = first; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) {
            fprintf(stderr, "eval_context: '%s' is not NAME=ROOT\n", argv[i]);
            return 2;
        }
        *eq = 0;
        rc |= eval_project(argv[i], eq + 1, max_sites, budgets, nb, tok, json);
    }
    lode_tok_free(tok);
    return rc;
}
