/*
 * cmd_context.c — `lode context` and `lode complete`: the project-context
 * prompt for a cursor, and a completion from it, without a daemon.
 *
 *   lode context FILE:LINE:COL [--root DIR] [--budget N] [-m MODEL] [--recent FILE[:LINE]]... [--no-recent] [--json]
 *       The exact FIM prompt (markers as text) on stdout, a table of its
 *       sections on stderr; --json: {sections, prefix, suffix, prompt, ...}.
 *   lode complete FILE:LINE:COL [--root DIR] [--budget N] [-m MODEL] [-n N] [--recent ...] [--json]
 *       Runs the model in-process (greedy), post-processes the output for
 *       the cursor and prints the completion.
 *
 * LINE and COL are 1-based; COL counts characters (code points). The root
 * defaults to the nearest directory above FILE holding .git, else FILE's
 * directory. Without -m tokens are estimated (ceil(bytes / 2.5)); with -m
 * the budget is capped at the model's context (n_ctx_train) less the tokens
 * kept for generation (-n for complete, RESERVE_CONTEXT for context).
 *
 * RECENT sections, as `lode lsp` makes them from the edits it sees: the
 * files of --recent flags (the first is the most recent; the chunk is
 * centred on LINE, else on the top of the file), or by default the indexed
 * files modified within RECENT_WINDOW_S (newest mtime first, then path; not
 * the current file), each as if edited at its top. --no-recent: none.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "cli_util.h"
#include "lode_context.h"
#include "lode_engine.h"
#include "lode_sampler.h"
#include "lode_gguf.h"
#include "lode_tok.h"
#include "model_config.h"

#define MAX_RECENT_FLAGS 8      /* what lode_ctx remembers */
#define RECENT_WINDOW_S 86400   /* default RECENT: files modified within the last 24 h */
#define RESERVE_CONTEXT 64      /* `lode context -m`: tokens kept for generation (complete's default -n) */

typedef struct copts {
    const char *loc, *root, *model;
    int64_t budget, n_gen;
    bool json, complete, no_recent;
    const char *recent[MAX_RECENT_FLAGS]; /* --recent FILE[:LINE], borrowed from argv */
    size_t n_recent;
    lode_model_params mp;
} copts;

/* One file fed to the builder as recently edited. */
typedef struct recent_in {
    char *path;    /* canonical; owned */
    int64_t line;  /* 1-based, 0: none given */
    bool by_mtime; /* from the default (mtime), else from --recent */
} recent_in;

static void usage(FILE *f, bool complete) {
    if (complete)
        fprintf(f, "usage: lode complete FILE:LINE:COL [--root DIR] [--budget N] -m MODEL [-n N] [--recent FILE[:LINE]]... "
                   "[--no-recent] [--json] " LODE_CLI_MODEL_FLAGS_HELP "\n");
    else
        fprintf(f, "usage: lode context FILE:LINE:COL [--root DIR] [--budget N] [-m MODEL] [--recent FILE[:LINE]]... "
                   "[--no-recent] [--json]\n");
    fprintf(f, "  LINE and COL are 1-based (COL in characters); --budget in tokens (default %d; with -m at most the\n"
               "  model's context less the tokens kept for generation)\n"
               "  --recent: a recently edited file (repeatable, most recent first; up to %d); default: the indexed\n"
               "  files modified within the last 24 h, newest first; --no-recent: none\n",
            LODE_CTX_DEFAULT_BUDGET, MAX_RECENT_FLAGS);
}

/* "path:LINE:COL" from the right (the path may hold ':'). */
static bool parse_loc(const char *s, char **path, int64_t *line, int64_t *col) {
    const char *c2 = strrchr(s, ':');
    if (!c2 || c2 == s) return false;
    const char *c1 = c2 - 1;
    while (c1 > s && *c1 != ':') c1--;
    if (c1 == s) return false;
    char a[32], b[32];
    if ((size_t)(c2 - c1 - 1) >= sizeof a || strlen(c2 + 1) >= sizeof b) return false;
    memcpy(a, c1 + 1, (size_t)(c2 - c1 - 1));
    a[c2 - c1 - 1] = 0;
    strcpy(b, c2 + 1);
    if (!lode_cli_parse_i64(a, line) || !lode_cli_parse_i64(b, col) || *line < 1 || *col < 1) return false;
    *path = lode_xmalloc((size_t)(c1 - s) + 1);
    memcpy(*path, s, (size_t)(c1 - s));
    (*path)[c1 - s] = 0;
    return true;
}

static char *read_file(const char *path, size_t *len, lode_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        lode_error_set(err, LODE_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *b = lode_xmalloc(cap);
    size_t k;
    while ((k = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (n + 1 == cap) b = lode_xrealloc(b, cap *= 2);
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        lode_free(b);
        lode_error_set(err, LODE_ERR_IO, "cannot read %s", path);
        return NULL;
    }
    b[n] = 0;
    *len = n;
    return b;
}

/* The byte offset of LINE:COL (1-based; COL in code points; COL may be one
 * past the line's last character). */
static bool offset_of(const char *t, size_t len, int64_t line, int64_t col, size_t *off) {
    size_t i = 0;
    for (int64_t l = 1; l < line; l++) {
        while (i < len && t[i] != '\n') i++;
        if (i >= len) return false;
        i++;
    }
    for (int64_t c = 1; c < col; c++) {
        if (i >= len || t[i] == '\n' || (t[i] == '\r' && i + 1 < len && t[i + 1] == '\n')) return false;
        i++;
        while (i < len && ((unsigned char)t[i] & 0xC0) == 0x80) i++;
    }
    *off = i;
    return true;
}

static char *default_root(const char *file) {
    char *r = realpath(file, NULL);
    if (!r) return NULL;
    char *dir = lode_xstrdup(r);
    free(r);
    char *s = strrchr(dir, '/');
    if (s == dir) s[1] = 0;
    else if (s) *s = 0;
    char *best = lode_xstrdup(dir);
    for (;;) {
        char probe[4200];
        struct stat st;
        snprintf(probe, sizeof probe, "%s/.git", dir);
        if (stat(probe, &st) == 0) {
            lode_free(best);
            return dir;
        }
        s = strrchr(dir, '/');
        if (!s || s == dir) break;
        *s = 0;
    }
    lode_free(dir);
    return best;
}

static int parse_args(int argc, char **argv, copts *o) {
    bool complete = o->complete;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout, complete);
            return 0;
        } else if (!strcmp(a, "--root") && v) o->root = v, i++;
        else if (!strcmp(a, "-m") && v) o->model = v, i++;
        else if (!strcmp(a, "--json")) o->json = true;
        else if (!strcmp(a, "--no-recent")) o->no_recent = true;
        else if (!strcmp(a, "--recent") && v && (ok = o->n_recent < MAX_RECENT_FLAGS)) o->recent[o->n_recent++] = v, i++;
        else if (!strcmp(a, "--budget") && v && (ok = lode_cli_parse_i64(v, &o->budget) && o->budget >= LODE_CTX_MIN_BUDGET &&
                                                       o->budget <= (int64_t)LODE_CTX_MAX_BUDGET)) i++;
        else if (complete && !strcmp(a, "-n") && v && (ok = lode_cli_parse_i64(v, &o->n_gen) && o->n_gen > 0 && o->n_gen <= 4096)) i++;
        else if (complete && (x = lode_cli_model_flag("complete", a, v, &o->mp)) != 0) {
            if (x < 0) return 2;
            i += (int)x - 1;
        } else if (a[0] != '-' && !o->loc) o->loc = a;
        else ok = false;
        if (!ok) {
            fprintf(stderr, "lode %s: bad argument '%s'\n", complete ? "complete" : "context", a);
            usage(stderr, complete);
            return 2;
        }
    }
    if (!o->loc || (complete && !o->model)) {
        usage(stderr, complete);
        return 2;
    }
    return -1;
}

/* ---- recently edited files ------------------------------------------------------ */
typedef struct mtime_ent {
    const char *path; /* borrowed from the index */
    int64_t mtime_ns;
} mtime_ent;

static int cmp_mtime(const void *a, const void *b) {
    const mtime_ent *x = a, *y = b;
    if (x->mtime_ns != y->mtime_ns) return x->mtime_ns > y->mtime_ns ? -1 : 1;
    return strcmp(x->path, y->path);
}

/* The default RECENT files: indexed files other than `cur` modified within
 * RECENT_WINDOW_S of now (or later), newest first, ties by path; at most
 * LODE_CTX_RECENT_FILES. */
static size_t recent_by_mtime(lode_index *ix, const char *cur, recent_in *out) {
    size_t nf = lode_index_n_files(ix), n = 0;
    mtime_ent *e = lode_xmalloc((nf ? nf : 1) * sizeof *e);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t since = ((int64_t)now.tv_sec - RECENT_WINDOW_S) * 1000000000ll + now.tv_nsec;
    for (size_t i = 0; i < nf; i++) {
        const char *fp = lode_index_file_at(ix, i);
        struct stat st;
        if (!fp || (cur && !strcmp(fp, cur)) || stat(fp, &st) != 0) continue;
        int64_t m = (int64_t)st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
        if (m >= since) e[n++] = (mtime_ent){fp, m};
    }
    qsort(e, n, sizeof *e, cmp_mtime);
    if (n > LODE_CTX_RECENT_FILES) n = LODE_CTX_RECENT_FILES;
    for (size_t i = 0; i < n; i++) out[i] = (recent_in){lode_xstrdup(e[i].path), 0, true};
    lode_free(e);
    return n;
}

/* "FILE[:LINE]": LINE only when what follows the last ':' is a number. */
static bool parse_recent(const char *s, char **path, int64_t *line) {
    const char *c = strrchr(s, ':');
    *line = 0;
    size_t pl = strlen(s);
    if (c && c[1] && strspn(c + 1, "0123456789") == strlen(c + 1)) {
        if (!lode_cli_parse_i64(c + 1, line) || *line < 1) return false;
        pl = (size_t)(c - s);
    }
    if (!pl) return false;
    *path = lode_xmalloc(pl + 1);
    memcpy(*path, s, pl);
    (*path)[pl] = 0;
    return true;
}

/* Resolve the --recent flags (each file must be readable and have LINE). */
static lode_status recent_from_flags(const copts *o, recent_in *out, size_t *n, lode_error *err) {
    *n = 0;
    for (size_t i = 0; i < o->n_recent; i++) {
        char *p = NULL;
        int64_t line;
        if (!parse_recent(o->recent[i], &p, &line))
            return lode_error_set(err, LODE_ERR_INVALID_ARG, "--recent '%s' is not FILE[:LINE] (LINE 1-based)", o->recent[i]);
        char *rp = realpath(p, NULL);
        if (!rp) {
            lode_error_set(err, LODE_ERR_NOT_FOUND, "--recent %s: %s", p, strerror(errno));
            lode_free(p);
            return LODE_ERR_NOT_FOUND;
        }
        lode_free(p);
        out[(*n)++] = (recent_in){lode_xstrdup(rp), line, false};
        free(rp);
    }
    return LODE_OK;
}

/* Byte offset of the start of 1-based `line` in path (0 for line 0). */
static lode_status recent_offset(const recent_in *r, size_t *at, lode_error *err) {
    *at = 0;
    if (r->line <= 1) return LODE_OK;
    size_t len;
    char *t = read_file(r->path, &len, err);
    if (!t) return LODE_ERR_IO;
    size_t i = 0;
    for (int64_t l = 1; l < r->line && i <= len; l++) {
        const char *nl = memchr(t + i, '\n', len - i);
        i = nl ? (size_t)(nl - t) + 1 : len + 1;
    }
    lode_free(t);
    if (i > len) return lode_error_set(err, LODE_ERR_RANGE, "--recent %s: no line %lld", r->path, (long long)r->line);
    *at = i;
    return LODE_OK;
}

/* path shown relative to root (canonical) when inside it. */
static const char *rel_to(const char *path, const char *root) {
    size_t rl = root ? strlen(root) : 0;
    if (rl > 1 && !strncmp(path, root, rl) && path[rl] == '/') return path + rl + 1;
    return path;
}

/* ---- the model's context ------------------------------------------------------------ */
/* n_ctx_train of a GGUF file or HF directory, from its metadata only. */
static lode_status model_n_ctx(const char *model, int64_t *n_ctx, lode_error *err) {
    lode_config cfg;
    struct stat st;
    lode_status s;
    if (stat(model, &st) == 0 && S_ISDIR(st.st_mode)) {
        char cj[4200];
        snprintf(cj, sizeof cj, "%s/config.json", model);
        s = lode__config_from_hf(cj, &cfg, err);
    } else {
        lode_gguf *g = NULL;
        s = lode_gguf_open(model, &g, err);
        if (s == LODE_OK) s = lode__config_from_gguf(g, &cfg, err);
        lode_gguf_free(g);
    }
    if (s == LODE_OK) *n_ctx = cfg.n_ctx_train;
    return s;
}

/* NULL when a piece cannot be JSON (a path that is not UTF-8). */
static json_t *prompt_json(const lode_ctx_prompt *p, json_t *extra) {
    json_t *secs = json_array();
    bool bad = false;
    for (size_t i = 0; i < p->n_sections; i++) {
        const lode_ctx_section *s = &p->sections[i];
        json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:s%}", "kind", lode_ctx_kind_name(s->kind), "path", s->path,
                              "tokens", (json_int_t)s->tokens, "bytes", (json_int_t)s->len, "items",
                              (json_int_t)s->n_items, "text", s->text, s->len);
        bad |= !o || json_array_append_new(secs, o);
    }
    json_t *defs = json_array();
    for (size_t i = 0; i < p->n_defs; i++) {
        json_t *d = json_string(p->defs[i]);
        if (d) json_array_append_new(defs, d); /* a path that is not UTF-8 is left out */
    }
    size_t fl;
    char *fim = lode_ctx_prompt_fim_text(p, &fl);
    json_t *j = bad ? NULL
                    : json_pack("{s:I, s:I, s:b, s:o, s:o, s:s%, s:s%, s:s%}", "budget", (json_int_t)p->budget, "tokens",
                                (json_int_t)p->tokens, "exact", p->exact, "sections", secs, "definitions", defs,
                                "prefix", p->prefix, p->prefix_len, "suffix", p->suffix, p->suffix_len, "prompt", fim, fl);
    if (!j && bad) {
        json_decref(secs);
        json_decref(defs);
    }
    if (j) json_object_update(j, extra);
    lode_free(fim);
    return j;
}

/* What the run fed the builder beyond the file: the RECENT files and the budget. */
typedef struct run_info {
    const recent_in *rec;
    size_t n_rec;
    bool by_mtime, no_recent;
    const char *root; /* canonical, for showing paths */
    size_t asked;     /* the budget asked for (flag or default) */
    int64_t n_ctx, reserve; /* the model's context and the generation reserve (0: no model) */
} run_info;

static json_t *info_json(const run_info *ri, const lode_ctx_prompt *p) {
    json_t *rec = json_array();
    for (size_t i = 0; i < ri->n_rec; i++) {
        json_t *r = json_pack("{s:s, s:o, s:s}", "path", rel_to(ri->rec[i].path, ri->root), "line",
                              ri->rec[i].line ? json_integer(ri->rec[i].line) : json_null(), "from",
                              ri->rec[i].by_mtime ? "mtime" : "--recent");
        if (r) json_array_append_new(rec, r); /* a path that is not UTF-8 is left out */
    }
    json_t *j = json_pack("{s:o, s:s, s:I, s:b}", "recent", rec, "recent_from",
                          ri->no_recent ? "none" : ri->by_mtime ? "mtime" : "--recent", "budget_asked",
                          (json_int_t)ri->asked, "budget_capped", p->budget < ri->asked);
    if (ri->n_ctx) {
        json_object_set_new(j, "n_ctx", json_integer(ri->n_ctx));
        json_object_set_new(j, "generation_reserve", json_integer(ri->reserve));
    }
    return j;
}

static void print_info(FILE *f, const char *cmd, const run_info *ri, size_t budget) {
    if (budget < ri->asked)
        fprintf(f, "lode %s: budget capped at %zu tokens: the model's context is %lld, less %lld kept for generation "
                   "(asked: %zu)\n", cmd, budget, (long long)ri->n_ctx, (long long)ri->reserve, ri->asked);
}

static void print_table(FILE *f, const lode_ctx_prompt *p, const run_info *ri) {
    if (ri->no_recent) fprintf(f, "  recent files: none (--no-recent)\n");
    else if (!ri->n_rec && ri->by_mtime) fprintf(f, "  recent files: none modified within the last 24 h\n");
    else {
        fprintf(f, "  recent files (%s):", ri->by_mtime ? "modified within the last 24 h, newest first" : "--recent");
        for (size_t i = 0; i < ri->n_rec; i++) {
            fprintf(f, " %s", rel_to(ri->rec[i].path, ri->root));
            if (ri->rec[i].line) fprintf(f, ":%lld", (long long)ri->rec[i].line);
        }
        fprintf(f, "\n");
    }
    for (size_t i = 0; i < p->n_sections; i++) {
        const lode_ctx_section *s = &p->sections[i];
        fprintf(f, "  %-10s %6zu tokens %7zu bytes  %s", lode_ctx_kind_name(s->kind), s->tokens, s->len, s->path);
        if (s->n_items) fprintf(f, " (%zu)", s->n_items);
        fprintf(f, "\n");
    }
    fprintf(f, "  total      %6zu tokens of %zu (%s)%s\n", p->tokens, p->budget,
            p->exact ? "counted with the model's tokenizer" : "estimated: bytes / 2.5",
            p->budget < ri->asked ? "; budget capped at the model's context" : "");
}

/* Greedy generation from a FIM prompt; returns the text (lode_free). */
static char *generate(const char *model, lode_model_params *mp, lode_tok *tok, const int32_t *ids, size_t n_ids,
                      int64_t n_gen, lode_error *err) {
    lode_model *m = NULL;
    lode_kv *kv = NULL;
    lode_sampler *smp = NULL;
    float *lg = NULL;
    bool *want = NULL;
    char *text = NULL;
    if (lode_model_load(model, mp, &m, err)) goto done;
    const int64_t V = lode_model_config(m)->n_vocab;
    if (lode_tok_n_vocab(tok) > V) {
        lode_error_set(err, LODE_ERR_INVALID_ARG, "the tokenizer has %lld tokens but the model only %lld rows",
                       (long long)lode_tok_n_vocab(tok), (long long)V);
        goto done;
    }
    if (lode_kv_new(m, (int64_t)n_ids + n_gen + 1, &kv, err)) goto done;
    int32_t seq = lode_kv_seq_new(kv);
    lg = lode_xmalloc((size_t)V * sizeof(float));
    lode_sampler_params sp = lode_sampler_default_params();
    sp.temp = 0;
    smp = lode_sampler_new(&sp, V);
    want = lode_xcalloc(512, sizeof(bool));
    for (size_t off = 0; off < n_ids; off += 512) {
        size_t k = n_ids - off < 512 ? n_ids - off : 512;
        memset(want, 0, 512);
        want[k - 1] = off + k == n_ids;
        lode_batch b = {(int64_t)k, ids + off, NULL, seq, want};
        if (lode_model_eval(m, kv, &b, lg, err)) goto done;
    }
    int32_t *hist = lode_xmalloc((n_ids + (size_t)n_gen + 1) * sizeof(int32_t));
    memcpy(hist, ids, n_ids * sizeof(int32_t));
    size_t n_hist = n_ids, tl = 0, cap = 4096;
    text = lode_xmalloc(cap);
    lode_tok_stream ts;
    lode_tok_stream_init(&ts, false);
    for (int64_t i = 0; i < n_gen; i++) {
        int32_t id = lode_sampler_sample(smp, lg, hist, (int64_t)n_hist);
        hist[n_hist++] = id;
        if (lode_tok_is_eog(tok, id) || lode_tok_type(tok, id) == LODE_TOKEN_CONTROL) break;
        char piece[1024];
        size_t pl = lode_tok_stream_push(tok, &ts, id, piece, sizeof piece);
        if (tl + pl + 16 > cap) text = lode_xrealloc(text, cap = (cap + pl) * 2);
        memcpy(text + tl, piece, pl);
        tl += pl;
        if (i + 1 == n_gen) break;
        lode_batch b = {1, &id, NULL, seq, NULL};
        if (lode_model_eval(m, kv, &b, lg, err)) {
            lode_free(hist);
            lode_free(text);
            text = NULL;
            goto done;
        }
    }
    tl += lode_tok_stream_flush(&ts, text + tl, cap - tl);
    text[tl] = 0;
    lode_free(hist);
done:
    lode_free(want);
    lode_sampler_free(smp);
    lode_free(lg);
    lode_kv_free(kv);
    lode_model_free(m);
    return text;
}

static int run(int argc, char **argv, bool complete) {
    copts o = {.budget = 0, .n_gen = 64, .complete = complete, .mp = lode_model_default_params()};
    int pr = parse_args(argc, argv, &o);
    if (pr >= 0) return pr;
    const char *cmd = complete ? "complete" : "context";
    char *path = NULL, *root = NULL, *text = NULL, *canon = NULL;
    int64_t line, col;
    int rc = 1;
    lode_error err = {0};
    lode_tok *tok = NULL;
    lode_index *ix = NULL;
    lode_ctx *ctx = NULL;
    lode_ctx_prompt p = {0};
    TSTree *tree = NULL;
    recent_in rec[MAX_RECENT_FLAGS];
    size_t n_rec = 0;
    char *root_canon = NULL;
    if (!parse_loc(o.loc, &path, &line, &col)) {
        fprintf(stderr, "lode %s: '%s' is not FILE:LINE:COL (LINE and COL 1-based)\n", cmd, o.loc);
        return 2;
    }
    size_t len, cursor;
    if (!(text = read_file(path, &len, &err))) goto fail;
    if (!offset_of(text, len, line, col, &cursor)) {
        fprintf(stderr, "lode %s: %s has no line %lld column %lld\n", cmd, path, (long long)line, (long long)col);
        rc = 2;
        goto done;
    }
    root = o.root ? lode_xstrdup(o.root) : default_root(path);
    char *rp = realpath(path, NULL);
    canon = lode_xstrdup(rp ? rp : path);
    free(rp);
    if (o.model && lode_tok_load(o.model, &tok, &err)) goto fail;
    const char *roots[1] = {root};
    lode_index_opts io = {0};
    if (root) {
        if (!(ix = lode_index_open(roots, 1, &io, &err)) || lode_index_scan(ix, &err)) goto fail;
        if (!lode_index_contains(ix, canon)) {
            fprintf(stderr, "lode %s: %s is outside the root %s: no project context\n", cmd, path, root);
        }
    }
    size_t budget = o.budget ? (size_t)o.budget : LODE_CTX_DEFAULT_BUDGET;
    run_info ri = {.asked = budget, .no_recent = o.no_recent, .by_mtime = !o.n_recent};
    if (o.model) { /* the prompt and the generation must fit the model's context */
        if (model_n_ctx(o.model, &ri.n_ctx, &err)) goto fail;
        ri.reserve = complete ? o.n_gen : RESERVE_CONTEXT;
        if (ri.n_ctx - ri.reserve < LODE_CTX_MIN_BUDGET) {
            lode_error_set(&err, LODE_ERR_RANGE, "the model's context (%lld tokens) less %lld kept for generation leaves "
                           "under %d tokens for the prompt", (long long)ri.n_ctx, (long long)ri.reserve, LODE_CTX_MIN_BUDGET);
            goto fail;
        }
        if ((int64_t)budget > ri.n_ctx - ri.reserve) budget = (size_t)(ri.n_ctx - ri.reserve);
    }
    const lode_lang *lang = lode_lang_for_path(canon);
    if (lang) tree = lode_syntax_parse(lang, text, len);
    ctx = lode_ctx_new(ix, roots, root ? 1 : 0, tok);
    if (root) {
        char *rr = realpath(root, NULL);
        root_canon = lode_xstrdup(rr ? rr : root);
        free(rr);
    }
    if (!o.no_recent) { /* the RECENT files, fed as edits: the first (most recent) last */
        if (o.n_recent) {
            if (recent_from_flags(&o, rec, &n_rec, &err)) goto fail;
        } else if (ix) {
            n_rec = recent_by_mtime(ix, canon, rec);
        }
        for (size_t i = n_rec; i-- > 0;) {
            size_t at;
            if (recent_offset(&rec[i], &at, &err)) goto fail;
            if (!rec[i].by_mtime && !strcmp(rec[i].path, canon))
                fprintf(stderr, "lode %s: --recent %s is the current file: not used\n", cmd, rec[i].path);
            else if (!rec[i].by_mtime && (!ix || !lode_index_contains(ix, rec[i].path)))
                fprintf(stderr, "lode %s: --recent %s is outside the root: not used\n", cmd, rec[i].path);
            lode_ctx_note_edit(ctx, rec[i].path, at);
        }
    }
    ri.rec = rec, ri.n_rec = n_rec, ri.root = root_canon;
    lode_ctx_input in = {canon, lang, text, len, cursor, tree, budget};
    if (lode_ctx_build(ctx, &in, &p, &err)) goto fail;
    if (!o.json) print_info(stderr, cmd, &ri, budget);
    if (!complete) {
        if (o.json) {
            json_t *extra = info_json(&ri, &p);
            json_t *j = prompt_json(&p, extra);
            json_decref(extra);
            if (!j) {
                lode_error_set(&err, LODE_ERR_INVALID_ARG, "cannot encode the prompt as JSON");
                goto fail;
            }
            json_dumpf(j, stdout, JSON_INDENT(1) | JSON_ENSURE_ASCII);
            printf("\n");
            json_decref(j);
        } else {
            size_t fl;
            char *fim = lode_ctx_prompt_fim_text(&p, &fl);
            fwrite(fim, 1, fl, stdout);
            printf("\n");
            lode_free(fim);
            print_table(stderr, &p, &ri);
        }
        rc = 0;
        goto done;
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (lode_tok_fim_prompt(tok, p.prefix, p.prefix_len, p.suffix, p.suffix_len, &ids, &n_ids, &err)) goto fail;
    char *raw = generate(o.model, &o.mp, tok, ids, n_ids, o.n_gen, &err);
    lode_free(ids);
    if (!raw) goto fail;
    size_t n;
    lode_post_info info;
    char *out = lode_post_process(lang, tree, text, len, cursor, raw, strlen(raw), &n, &info);
    if (o.json) {
        json_t *j = json_pack("{s:s, s:s%, s:s, s:s?, s:s?, s:b, s:i, s:i, s:I, s:I}", "raw", raw, "text", out, n, "mode",
                              info.mode == LODE_POST_MULTI ? "multi" : "single", "mode_why", info.mode_why, "stop",
                              info.stop_why, "rejected", info.rejected, "errors_before", info.errors_before,
                              "errors_after", info.errors_after, "prompt_tokens", (json_int_t)n_ids, "budget",
                              (json_int_t)p.budget);
        if (j) {
            json_t *extra = info_json(&ri, &p);
            json_object_update(j, extra);
            json_decref(extra);
            json_t *secs = json_array(); /* the sections, without their texts */
            for (size_t i = 0; i < p.n_sections; i++) {
                json_t *so = json_pack("{s:s, s:s, s:I}", "kind", lode_ctx_kind_name(p.sections[i].kind), "path",
                                       p.sections[i].path, "tokens", (json_int_t)p.sections[i].tokens);
                if (so) json_array_append_new(secs, so);
            }
            json_object_set_new(j, "sections", secs);
            json_dumpf(j, stdout, JSON_INDENT(1) | JSON_ENSURE_ASCII);
            printf("\n");
            json_decref(j);
        } else { /* the model's bytes are not UTF-8 */
            fprintf(stderr, "lode complete: the output is not valid UTF-8; without --json it is printed as it is\n");
            lode_free(out);
            lode_free(raw);
            goto done;
        }
    } else {
        fwrite(out, 1, n, stdout);
        printf("\n");
        fprintf(stderr, "lode complete: prompt %zu tokens; %s (%s)%s%s\n", n_ids,
                info.mode == LODE_POST_MULTI ? "multi-line" : "single line", info.mode_why ? info.mode_why : "",
                info.stop_why ? "; stop: " : "", info.stop_why ? info.stop_why : "");
    }
    lode_free(out);
    lode_free(raw);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "lode %s: %s\n", cmd, err.text);
done:
    for (size_t i = 0; i < n_rec; i++) lode_free(rec[i].path);
    lode_free(root_canon);
    lode_ctx_prompt_clear(&p);
    if (tree) ts_tree_delete(tree);
    lode_ctx_free(ctx);
    lode_index_free(ix);
    lode_tok_free(tok);
    lode_free(text);
    lode_free(path);
    lode_free(root);
    lode_free(canon);
    return rc;
}

int lode_cmd_context(int argc, char **argv) { return run(argc, argv, false); }
int lode_cmd_complete(int argc, char **argv) { return run(argc, argv, true); }
