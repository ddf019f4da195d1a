/*
 * cmd_context.c — `lode context` and `lode complete`: the project-context
 * prompt for a cursor, and a completion from it, without a daemon.
 *
 *   lode context FILE:LINE:COL [--root DIR] [--budget N] [-m MODEL] [--json]
 *       The exact FIM prompt (markers as text) on stdout, a table of its
 *       sections on stderr; --json: {sections, prefix, suffix, prompt, ...}.
 *   lode complete FILE:LINE:COL [--root DIR] [--budget N] [-m MODEL] [-n N] [--json]
 *       Runs the model in-process (greedy), post-processes the output for
 *       the cursor and prints the completion.
 *
 * LINE and COL are 1-based; COL counts characters (code points). The root
 * defaults to the nearest directory above FILE holding .git, else FILE's
 * directory. Without -m tokens are estimated (ceil(bytes / 2.5)).
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cli_util.h"
#include "lode_context.h"
#include "lode_engine.h"
#include "lode_sampler.h"
#include "lode_tok.h"

typedef struct copts {
    const char *loc, *root, *model;
    int64_t budget, n_gen;
    bool json, complete;
    lode_model_params mp;
} copts;

static void usage(FILE *f, bool complete) {
    if (complete)
        fprintf(f, "usage: lode complete FILE:LINE:COL [--root DIR] [--budget N] -m MODEL [-n N] [--json] " LODE_CLI_MODEL_FLAGS_HELP "\n");
    else
        fprintf(f, "usage: lode context FILE:LINE:COL [--root DIR] [--budget N] [-m MODEL] [--json]\n");
    fprintf(f, "  LINE and COL are 1-based (COL in characters); --budget in tokens (default %d)\n",
            LODE_CTX_DEFAULT_BUDGET);
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

/* NULL when a piece cannot be JSON (a path that is not UTF-8). */
static json_t *prompt_json(const lode_ctx_prompt *p) {
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
    lode_free(fim);
    return j;
}

static void print_table(FILE *f, const lode_ctx_prompt *p) {
    for (size_t i = 0; i < p->n_sections; i++) {
        const lode_ctx_section *s = &p->sections[i];
        fprintf(f, "  %-10s %6zu tokens %7zu bytes  %s", lode_ctx_kind_name(s->kind), s->tokens, s->len, s->path);
        if (s->n_items) fprintf(f, " (%zu)", s->n_items);
        fprintf(f, "\n");
    }
    fprintf(f, "  total      %6zu tokens of %zu (%s)\n", p->tokens, p->budget,
            p->exact ? "counted with the model's tokenizer" : "estimated: bytes / 2.5");
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
    const lode_lang *lang = lode_lang_for_path(canon);
    if (lang) tree = lode_syntax_parse(lang, text, len);
    ctx = lode_ctx_new(ix, roots, root ? 1 : 0, tok);
    lode_ctx_input in = {canon, lang, text, len, cursor, tree, budget};
    if (lode_ctx_build(ctx, &in, &p, &err)) goto fail;
    if (!complete) {
        if (o.json) {
            json_t *j = prompt_json(&p);
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
            print_table(stderr, &p);
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
        json_t *j = json_pack("{s:s, s:s%, s:s, s:s?, s:s?, s:b, s:i, s:i, s:I}", "raw", raw, "text", out, n, "mode",
                              info.mode == LODE_POST_MULTI ? "multi" : "single", "mode_why", info.mode_why, "stop",
                              info.stop_why, "rejected", info.rejected, "errors_before", info.errors_before,
                              "errors_after", info.errors_after, "prompt_tokens", (json_int_t)n_ids);
        if (j) {
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
