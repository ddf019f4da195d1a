/*
 * context_post.c — syntax-aware post-processing of generated text
 * (lode_context.h, lode_post_process).
 *
 * Order: indentation normalised; the mode (single/multi line) decided from
 * the syntax at the cursor; the text cut at the first line, at the line
 * that closes the cursor's block (an unmatched closer, or a dedent below
 * the block), or where it starts repeating the suffix; then candidates
 * (suffix-overlap trimmed / as is / with the closing line / shorter line
 * prefixes) are ranked by the parse errors of the file with each inserted,
 * in that order of preference, and a completion that makes the file worse
 * than it was is rejected.
 */
#include <ctype.h>
#include <string.h>

#include "lode_context.h"

static bool blank_ch(char c) { return c == ' ' || c == '\t' || c == '\r'; }
static size_t line_start(const char *t, size_t off) {
    while (off > 0 && t[off - 1] != '\n') off--;
    return off;
}
static size_t line_end0(const char *t, size_t len, size_t off) { /* at the '\n' (or len) */
    while (off < len && t[off] != '\n') off++;
    return off;
}
static bool all_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!blank_ch(s[i]) && s[i] != '\n') return false;
    return true;
}
static size_t indent_width(const char *s, size_t n, size_t tab) {
    size_t w = 0;
    for (size_t i = 0; i < n && (s[i] == ' ' || s[i] == '\t'); i++) w += s[i] == '\t' ? tab - w % tab : 1;
    return w;
}
static size_t lead_ws(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
    return i;
}

/* ---- error counting --------------------------------------------------------------- */
/* ERROR/MISSING nodes, and the bytes the ERROR nodes cover. */
static int error_stats(const TSTree *tree, size_t *bytes) {
    *bytes = 0;
    if (!tree) return -1;
    TSNode root = ts_tree_root_node(tree);
    if (!ts_node_has_error(root)) return 0;
    int n = 0;
    TSTreeCursor c = ts_tree_cursor_new(root);
    for (;;) {
        TSNode nd = ts_tree_cursor_current_node(&c);
        bool missing = ts_node_is_missing(nd), err = !missing && !strcmp(ts_node_type(nd), "ERROR");
        n += missing || err;
        if (err) *bytes += ts_node_end_byte(nd) - ts_node_start_byte(nd);
        if (!err && !missing && ts_node_has_error(nd) && ts_tree_cursor_goto_first_child(&c)) continue;
        while (!ts_tree_cursor_goto_next_sibling(&c))
            if (!ts_tree_cursor_goto_parent(&c)) {
                ts_tree_cursor_delete(&c);
                return n;
            }
    }
}

int lode_post_error_count(const TSTree *tree) {
    size_t b;
    return error_stats(tree, &b);
}

/* Errors of text with ins inserted at cursor: an incremental reparse of a
 * copy of tree (the tree of text). */
static int errors_with(const lode_lang *lang, const TSTree *tree, const char *text, size_t len, size_t cursor,
                       const char *ins, size_t n, size_t *ebytes) {
    char *buf = lode_xmalloc(len + n + 1);
    memcpy(buf, text, cursor);
    memcpy(buf + cursor, ins, n);
    memcpy(buf + cursor + n, text + cursor, len - cursor);
    buf[len + n] = 0;
    TSTree *cp = ts_tree_copy(tree);
    TSPoint p0 = lode_syntax_point_at(text, len, cursor);
    TSPoint p1 = lode_syntax_point_at(buf, len + n, cursor + n);
    TSInputEdit ed = {(uint32_t)cursor, (uint32_t)cursor, (uint32_t)(cursor + n), p0, p0, p1};
    ts_tree_edit(cp, &ed);
    TSTree *nt = lode_syntax_reparse(lang, cp, buf, len + n);
    ts_tree_delete(cp);
    *ebytes = 0;
    int e = nt ? error_stats(nt, ebytes) : -1;
    if (nt) ts_tree_delete(nt);
    lode_free(buf);
    return e;
}

/* ---- the mode ------------------------------------------------------------------------- */
static bool is_block_type(const char *ty) {
    return strstr(ty, "block") || strstr(ty, "body") || !strcmp(ty, "compound_statement") ||
           !strcmp(ty, "declaration_list") || !strcmp(ty, "field_declaration_list") || !strcmp(ty, "suite") ||
           !strcmp(ty, "enumerator_list") || !strcmp(ty, "object") || !strcmp(ty, "do_group");
}

static bool ends_with_word(const char *s, size_t n, const char *w) {
    size_t k = strlen(w);
    return n >= k && !memcmp(s + n - k, w, k) && (n == k || !(isalnum((unsigned char)s[n - k - 1]) || s[n - k - 1] == '_'));
}

/* The line (before the cursor) ends with a block opener. */
static bool opener_end(const lode_lang *lang, const char *s, size_t n) {
    while (n && blank_ch(s[n - 1])) n--;
    if (!n) return false;
    const char *ln = lang ? lode_lang_name(lang) : "";
    if (s[n - 1] == '{') return true;
    if (!strcmp(ln, "python") && s[n - 1] == ':') return true;
    if (!strcmp(ln, "lua") || !strcmp(ln, "ruby") || !strcmp(ln, "bash"))
        return ends_with_word(s, n, "do") || ends_with_word(s, n, "then") || ends_with_word(s, n, "else") ||
               (!strcmp(ln, "lua") && s[n - 1] == ')' && strstr(s, "function"));
    return false;
}

lode_post_mode lode_post_mode_at(const lode_lang *lang, const TSTree *tree, const char *text, size_t len, size_t cursor,
                                 const char **why) {
    const char *w_ = NULL;
    if (!why) why = &w_;
    if (cursor > len) cursor = len;
    size_t ls = line_start(text, cursor), le = line_end0(text, len, cursor);
    const char *rest = text + cursor;
    size_t rn = le - cursor;
    while (rn && blank_ch(rest[rn - 1])) rn--;
    size_t rl = lead_ws(rest, rn);
    bool rest_blank = rl == rn;
    bool before_blank = all_blank(text + ls, cursor - ls);
    if (!rest_blank) {
        /* only closers after the cursor, right after an opener: an auto-paired empty block */
        bool closers = true;
        for (size_t i = rl; i < rn; i++) closers &= strchr("}]);,", rest[i]) != NULL;
        if (closers && rest[rl] == '}' && opener_end(lang, text + ls, cursor - ls)) {
            *why = "after a block opener";
            return LODE_POST_MULTI;
        }
        *why = "text after the cursor";
        return LODE_POST_SINGLE;
    }
    if (!before_blank) {
        if (opener_end(lang, text + ls, cursor - ls)) {
            *why = "after a block opener";
            return LODE_POST_MULTI;
        }
        *why = "after text on the line";
        return LODE_POST_SINGLE;
    }
    /* a blank line: after an opener line, in an empty block, or at top level: several lines */
    size_t p = ls;
    while (p > 0) {
        size_t pls = line_start(text, p - 1);
        if (!all_blank(text + pls, p - 1 - pls)) {
            if (opener_end(lang, text + pls, p - 1 - pls)) {
                *why = "after a block opener";
                return LODE_POST_MULTI;
            }
            break;
        }
        p = pls;
    }
    if (tree) {
        TSNode root = ts_tree_root_node(tree);
        TSNode n = ts_node_descendant_for_byte_range(root, (uint32_t)cursor, (uint32_t)cursor);
        while (!ts_node_is_null(n) && !ts_node_eq(n, root)) {
            if (is_block_type(ts_node_type(n)) && ts_node_start_byte(n) < cursor && ts_node_end_byte(n) > cursor) {
                uint32_t k = ts_node_named_child_count(n), real = 0;
                for (uint32_t i = 0; i < k; i++) {
                    TSNode ch = ts_node_named_child(n, i);
                    if (!strstr(ts_node_type(ch), "comment")) real++;
                }
                if (!real) {
                    *why = "empty block";
                    return LODE_POST_MULTI;
                }
                *why = "blank line in a block";
                return LODE_POST_SINGLE;
            }
            n = ts_node_parent(n);
        }
        *why = "blank line at top level";
        return LODE_POST_MULTI;
    }
    *why = "blank line";
    return LODE_POST_SINGLE;
}

/* ---- indentation ------------------------------------------------------------------------ */
typedef struct indent_style {
    bool tabs;
    size_t unit; /* spaces per level (0: unknown) */
} indent_style;

static size_t gcd(size_t a, size_t b) {
    while (b) {
        size_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static indent_style style_of(const char *t, size_t len, bool skip_first) {
    size_t tabs = 0, spaces = 0, g = 0;
    size_t i = 0;
    if (skip_first) {
        while (i < len && t[i] != '\n') i++;
        if (i < len) i++;
    }
    while (i < len) {
        size_t e = line_end0(t, len, i);
        size_t k = i;
        while (k < e && t[k] == ' ') k++;
        if (k < e && t[k] == '\t' && k == i) tabs++;
        else if (k > i && k < e && t[k] != '*' && t[k] != '\t' && t[k] != '\r') { /* not a block comment's " * " */
            spaces++;
            g = gcd(g, k - i);
        }
        i = e + 1;
    }
    indent_style s = {tabs > spaces, g > 8 ? 0 : g};
    if (s.tabs) s.unit = 0;
    return s;
}

/* Re-indent lines 1.. of gen from its style to the file's. */
static char *normalise_indent(const char *text, size_t len, size_t cursor, const char *gen, size_t n, size_t *out_n) {
    indent_style fs = style_of(text, len, false), gs = style_of(gen, n, true);
    size_t ls = line_start(text, cursor);
    bool typed_indent = cursor > ls && all_blank(text + ls, cursor - ls);
    lode_buf o = {0};
    size_t i = 0, line = 0;
    while (i <= n) {
        size_t e = line_end0(gen, n, i);
        size_t w = lead_ws(gen + i, e - i);
        if (line == 0) {
            if (typed_indent) i += w; /* the cursor stands after the indentation already */
            lode_buf_add(&o, gen + i, e - i);
        } else if (w && w < e - i) {
            size_t width = indent_width(gen + i, w, gs.unit ? gs.unit : 4);
            bool gen_tabs = gen[i] == '\t';
            if (fs.tabs && !gen_tabs && gs.unit) {
                for (size_t k = 0; k < width / gs.unit; k++) lode_buf_add(&o, "\t", 1);
                for (size_t k = 0; k < width % gs.unit; k++) lode_buf_add(&o, " ", 1);
            } else if (!fs.tabs && fs.unit && gen_tabs) {
                size_t tabs = 0;
                while (tabs < w && gen[i + tabs] == '\t') tabs++;
                for (size_t k = 0; k < tabs * fs.unit; k++) lode_buf_add(&o, " ", 1);
                lode_buf_add(&o, gen + i + tabs, w - tabs);
            } else if (!fs.tabs && fs.unit && !gen_tabs && gs.unit && gs.unit != fs.unit && w % gs.unit == 0 &&
                       fs.unit % 2 == 0 && gs.unit % 2 == 0) {
                for (size_t k = 0; k < w / gs.unit * fs.unit; k++) lode_buf_add(&o, " ", 1);
            } else {
                lode_buf_add(&o, gen + i, w);
            }
            lode_buf_add(&o, gen + i + w, e - i - w);
        } else {
            lode_buf_add(&o, gen + i, e - i);
        }
        if (e >= n) break;
        lode_buf_add(&o, "\n", 1);
        i = e + 1;
        line++;
    }
    if (!o.p) lode_buf_add(&o, "", 0);
    *out_n = o.n;
    return o.p;
}

/* ---- cuts --------------------------------------------------------------------------------- */
static size_t rtrim(const char *s, size_t n) {
    while (n && (blank_ch(s[n - 1]) || s[n - 1] == '\n')) n--;
    return n;
}

static const char *line_comment(const lode_lang *lang) {
    const char *c = lode_lang_line_comment(lang);
    return c ? c : "";
}

/* Where multi-line text closes the cursor's block: *cut is the byte to stop
 * at, *with the end of the closing line (for the candidate that keeps it).
 * base: the indentation width a line must keep to stay in the block. */
static bool block_close(const lode_lang *lang, const char *g, size_t n, size_t base, size_t *cut, size_t *with,
                        const char **why) {
    const char *cm = line_comment(lang);
    size_t cml = strlen(cm);
    int depth = 0;
    size_t i = 0, line = 0;
    while (i < n) {
        size_t e = line_end0(g, n, i);
        size_t w = lead_ws(g + i, e - i);
        bool nb = w < e - i && !(e - i - w == 1 && g[i + w] == '\r');
        if (line > 0 && nb && indent_width(g + i, w, 4) < base) {
            *cut = i;
            *with = e;
            *why = strchr("}])", g[i + w]) ? "closes the enclosing block" : "dedent";
            return true;
        }
        char q = 0;
        for (size_t k = i; k < e; k++) {
            char ch = g[k];
            if (q) {
                if (ch == '\\') k++;
                else if (ch == q) q = 0;
                continue;
            }
            if (ch == '"' || ch == '\'' || ch == '`') q = ch;
            else if (cml && k + cml <= e && !memcmp(g + k, cm, cml)) break;
            else if (ch == '{' || ch == '(' || ch == '[') depth++;
            else if (ch == '}' || ch == ')' || ch == ']') {
                if (--depth < 0) {
                    if (k == i + w) *cut = i;
                    else *cut = k;
                    *with = e;
                    *why = "closes the enclosing block";
                    return true;
                }
            }
        }
        i = e + 1;
        line++;
    }
    return false;
}

static bool closers_only(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strchr("}]);, \t\r", s[i])) return false;
    return true;
}

/* A line of gen (i ≥ 1) that repeats the first non-blank lines of the suffix. */
static bool suffix_repeat(const char *text, size_t len, size_t cursor, const char *g, size_t n, size_t *cut) {
    size_t p = line_end0(text, len, cursor);
    size_t sl[2][2];
    size_t ns = 0;
    while (p < len && ns < 2) {
        size_t a = p + 1, e = line_end0(text, len, a);
        if (a > len) break;
        size_t w = lead_ws(text + a, e - a), r = rtrim(text + a, e - a);
        if (r > w) sl[ns][0] = a + w, sl[ns][1] = a + r, ns++;
        p = e;
    }
    if (!ns) return false;
    size_t i = line_end0(g, n, 0);
    while (i < n) {
        size_t a = i + 1, e = line_end0(g, n, a);
        size_t w = lead_ws(g + a, e - a), r = rtrim(g + a, e - a);
        size_t l0 = sl[0][1] - sl[0][0];
        if (r > w && r - w == l0 && !memcmp(g + a + w, text + sl[0][0], l0)) {
            bool strong = !closers_only(text + sl[0][0], l0);
            if (!strong && ns > 1) { /* "}" alone says little: the next line must match too */
                size_t a2 = e + 1, e2 = a2 <= n ? line_end0(g, n, a2) : n;
                if (a2 < n) {
                    size_t w2 = lead_ws(g + a2, e2 - a2), r2 = rtrim(g + a2, e2 - a2), l1 = sl[1][1] - sl[1][0];
                    strong = r2 > w2 && r2 - w2 == l1 && !memcmp(g + a2 + w2, text + sl[1][0], l1);
                }
            }
            if (strong) {
                *cut = i;
                return true;
            }
        }
        i = e;
    }
    return false;
}

char *lode_post_process(const lode_lang *lang, const TSTree *tree, const char *text, size_t len, size_t cursor,
                        const char *gen, size_t gen_len, size_t *out_n, lode_post_info *info) {
    lode_post_info dummy;
    if (!info) info = &dummy;
    memset(info, 0, sizeof *info);
    info->errors_before = info->errors_after = -1;
    if (cursor > len) cursor = len;
    size_t le = line_end0(text, len, cursor);
    TSTree *own = NULL;
    if (lang && !tree) tree = own = lode_syntax_parse(lang, text, len);
    if (!lang || !tree) {
        info->mode = LODE_POST_SINGLE;
        info->mode_why = "unknown language";
        return lode_lsp_postprocess(gen, gen_len, text + cursor, le - cursor, out_n);
    }
    /* a FIM marker or NUL in the text ends it */
    for (size_t i = 0; i < gen_len; i++)
        if (!gen[i] || (i + 8 < gen_len && !memcmp(gen + i, "<\xef\xbd\x9c" "fim", 6))) {
            gen_len = i;
            break;
        }
    size_t n;
    char *g = normalise_indent(text, len, cursor, gen, gen_len, &n);
    info->mode = lode_post_mode_at(lang, tree, text, len, cursor, &info->mode_why);
    size_t ls = line_start(text, cursor);
    const char *stop = NULL;
    size_t with = 0; /* end of the closing line, when the cut dropped one */
    if (info->mode == LODE_POST_SINGLE) {
        /* the first line; when the cursor ends a line with text, a completion that starts on the next one is a new line */
        size_t e = line_end0(g, n, 0);
        if (e < n) stop = "first line";
        n = e;
    } else {
        size_t base;
        if (all_blank(text + ls, cursor - ls)) base = indent_width(text + ls, cursor - ls, 4);
        else base = indent_width(text + ls, lead_ws(text + ls, cursor - ls), 4) + 1;
        size_t cut, w;
        const char *why;
        if (block_close(lang, g, n, base, &cut, &w, &why)) {
            n = cut;
            with = w;
            stop = why;
        }
        if (suffix_repeat(text, len, cursor, g, n, &cut) && cut < n) {
            n = cut;
            with = 0;
            stop = "repeats the suffix";
        }
    }
    /* candidates, in order of preference */
    const char *rest = text + cursor;
    size_t rn = rtrim(rest, le - cursor);
    size_t rl = lead_ws(rest, rn);
    size_t cand[16], nc = 0;
    const char *cwhy[16];
    size_t base_n = rtrim(g, n);
    if (rn > rl) { /* the rest of the line: a repeat of it inside, or an end overlapping its start */
        size_t r0 = rl, rlen = rn - rl;
        for (size_t k = 0; k < base_n && nc < 2; k++)
            if (rlen >= 2 && base_n - k >= rlen && !memcmp(g + k, rest + r0, rlen)) {
                cand[nc] = rtrim(g, k), cwhy[nc++] = "repeats the suffix";
                break;
            }
        for (size_t m = rlen < base_n ? rlen : base_n; m > 0; m--)
            if (!memcmp(g + base_n - m, rest + r0, m)) {
                cand[nc] = rtrim(g, base_n - m), cwhy[nc++] = "overlap with the suffix";
                break;
            }
    }
    cand[nc] = base_n, cwhy[nc++] = stop;
    if (with) cand[nc] = rtrim(g, with), cwhy[nc++] = "keeps the closing line";
    for (size_t k = base_n; k > 0 && nc < 14;) { /* shorter: whole lines */
        while (k > 0 && g[k - 1] != '\n') k--;
        if (!k) break;
        size_t r = rtrim(g, k - 1);
        if (r) cand[nc] = r, cwhy[nc++] = "parse errors";
        k = r;
    }
    size_t before_b;
    int before = error_stats(tree, &before_b);
    info->errors_before = before;
    /* the first candidate with the fewest errors (then the fewest bytes in ERROR nodes) */
    int best = -1, best_e = 0;
    size_t best_b = 0;
    for (size_t i = 0; i < nc; i++) {
        bool dup = false;
        for (size_t k = 0; k < i; k++) dup |= cand[k] == cand[i];
        if (dup || !cand[i]) continue;
        size_t eb;
        int e = errors_with(lang, tree, text, len, cursor, g, cand[i], &eb);
        if (e >= 0 && (best < 0 || e < best_e || (e == best_e && eb < best_b))) best = (int)i, best_e = e, best_b = eb;
    }
    size_t res = 0;
    /* worse than without it: more errors, or as many covering more text */
    if (best >= 0 && (best_e < before || (best_e == before && best_b <= before_b))) {
        res = cand[best];
        info->stop_why = cwhy[best];
        info->errors_after = best_e;
    } else if (best >= 0) {
        info->rejected = true;
        info->stop_why = "parse errors";
        info->errors_after = best_e;
    }
    g[res] = 0;
    *out_n = res;
    if (own) ts_tree_delete(own);
    return g;
}
