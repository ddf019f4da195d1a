/*
 * syntax_impl.h — private to syntax.c and syntax_walk.c: the compiled query
 * object with lode's predicates and capture roles, shared by the query-cursor
 * extractor (the reference) and the table-driven walker that the index uses.
 */
#ifndef LODE_SYNTAX_IMPL_H
#define LODE_SYNTAX_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "lode_syntax.h"

enum pred_op { P_EQ, P_MATCH, P_ANY_OF };
typedef struct pred {
    enum pred_op op;
    bool neg, any;       /* not-; any- (quantified captures: one node suffices) */
    uint32_t cap;        /* capture id */
    int64_t cap2;        /* #eq? @a @b: the second capture, else -1 */
    char *str;           /* #eq? literal */
    uint32_t str_len;
    pcre2_code *re;      /* #match? */
    char **set;          /* #any-of? */
    uint32_t *set_len;
    uint32_t n_set;
} pred;

typedef struct pattern_preds {
    pred *p;
    uint32_t n;
} pattern_preds;

/* What a capture means to symbol extraction, decided once per query from
 * its name (so matches are read without string compares). */
enum cap_role { CR_NONE = 0, CR_NAME, CR_IMPORT, CR_MODULE, CR_FN, CR_DEF /* + lode_sym_kind */ };

typedef struct lode__walk lode__walk;

/* A compiled query. Built from a TSQuery (q != NULL), or, for the walker,
 * from lode's own reading of the .scm text (q == NULL, walk != NULL): then
 * pattern indices and capture ids are the walker's, and pp/role are indexed
 * by them, so the predicate check and the match handlers are the same code. */
struct lode_query {
    TSQuery *q;
    lode__walk *walk;
    const lode_lang *lang;
    pattern_preds *pp;
    uint32_t n_patterns;
    uint8_t *role;   /* per capture id: enum cap_role, CR_DEF + kind for @definition.* */
    uint32_t n_caps;
};

/* One predicate argument as written: a capture (id) or a string. */
typedef struct lode__parg {
    bool is_cap;
    uint32_t cap;
    const char *str;
    uint32_t len;
} lode__parg;

/* Append predicate `name` (without '#') with its arguments to pattern `pat`
 * of q (pp must have room for pat). Unknown predicates and directives are
 * ignored (LODE_OK). */
lode_status lode__pred_add(lode_query *q, uint32_t pat, const char *name, uint32_t name_len, const lode__parg *args,
                           uint32_t nargs, lode_error *err);
/* Whether match m passes the predicates of its pattern. */
bool lode__preds_pass(const lode_query *q, const TSQueryMatch *m, const char *src, size_t len, pcre2_match_data *md);
/* enum cap_role (+ kind) of a capture name. */
uint8_t lode__cap_role(const char *name, uint32_t len);

/* The walker (syntax_walk.c). lode__walk_query builds a query object from the
 * .scm text `src` for `l`, keeping only the patterns that can yield a
 * definition (@definition.* and @name) or an import (@import and @module);
 * NULL (with the reason in err) when the text uses something the walker does
 * not implement, in which case the caller uses the query cursor. Free with
 * lode_query_free. */
lode_query *lode__walk_query(const lode_lang *l, const char *src, size_t len, lode_error *err);
void lode__walk_free(lode__walk *w);
/* Every match of q (a walker query) in the tree under root, in no particular
 * order, filtered by the predicates; fn returns false to stop. */
void lode__walk_run(const lode_query *q, TSNode root, const char *src, size_t len, pcre2_match_data *md,
                    lode_match_fn fn, void *ud);

#endif /* LODE_SYNTAX_IMPL_H */
