/*
 * lode_syntax.h — tree-sitter languages, parsing, queries with predicates,
 * symbol/import/reference extraction, and incrementally reparsed documents.
 *
 * The grammars are npm packages pinned in grammars/package.json (ABI 14, for
 * Debian's libtree-sitter 0.20.7), compiled into lode; their query files
 * (tags.scm, locals.scm) and lode's own (grammars/queries/<lang>/NAME.scm) are
 * embedded into the binary at build time, so nothing is read at run time.
 * docs/context.md ("## Grammars", "## Syntax") describes them.
 *
 * Offsets are byte offsets into UTF-8 text; points are (row, column in bytes)
 * as tree-sitter counts them (a row ends at '\n', so "\r\n" counts the '\r'
 * in the row's last column).
 *
 * Threading: languages and compiled queries are immutable after the first
 * use (initialised once, thread-safe); a TSTree / lode_sdoc belongs to one
 * thread at a time.
 */
#ifndef LODE_SYNTAX_H
#define LODE_SYNTAX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <tree_sitter/api.h>

#include "lode_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- languages ------------------------------------------------------------- */
/* A static registry entry, never freed. */
typedef struct lode_lang lode_lang;

/* By extension or file name ("foo.py", "x.tsx", "CMakeLists.txt" is not one);
 * NULL if unknown. Only the last path component is looked at. */
const lode_lang *lode_lang_for_path(const char *path);
/* By LSP languageId ("c", "cpp", "python", "javascript", "javascriptreact",
 * "typescript", "typescriptreact", "go", "rust", "java", "lua",
 * "shellscript", "json", "jsonc", "ruby") or lode's own name; NULL if unknown. */
const lode_lang *lode_lang_for_id(const char *lsp_language_id);
/* lode's name: "c", "cpp", "python", "javascript", "typescript", "tsx", "go",
 * "rust", "java", "lua", "bash", "json", "ruby". */
const char *lode_lang_name(const lode_lang *l);
const TSLanguage *lode_lang_ts(const lode_lang *l);
/* Iterate the registry (tests, `lode inspect`): i in [0, lode_lang_count()). */
size_t lode_lang_count(void);
const lode_lang *lode_lang_at(size_t i);
/* Comment prefix for the DeepSeek-Coder style "# path" header ("//", "#",
 * "--"); NULL for languages without line comments (JSON). */
const char *lode_lang_line_comment(const lode_lang *l);

/* Parse a whole buffer. Caller frees with ts_tree_delete. NULL only when the
 * language cannot be loaded (ABI mismatch) — never for bad input: syntax
 * errors are ERROR/MISSING nodes in the tree. */
TSTree *lode_syntax_parse(const lode_lang *l, const char *src, size_t len);
/* Reparse with an (already ts_tree_edit'ed) old tree; old may be NULL. */
TSTree *lode_syntax_reparse(const lode_lang *l, const TSTree *old, const char *src, size_t len);

/* ---- queries with predicates ------------------------------------------------ */
/* A compiled query whose text predicates (#eq?, #not-eq?, #match?,
 * #not-match?, #any-of?, #not-any-of?; the "any-" variants #any-eq? etc. for
 * quantified captures) lode evaluates itself. Directives (#set!, #strip!,
 * #select-adjacent!, #set-adjacent!, #offset!, #is?, #is-not?) are accepted
 * and ignored. Regexes are PCRE2 (UTF). */
typedef struct lode_query lode_query;

/* Compile `src` (a .scm text) for `l`. Caller frees with lode_query_free.
 * NULL with a message (row/column of the fault) on error. */
lode_query *lode_query_new(const lode_lang *l, const char *src, size_t len, lode_error *err);
void lode_query_free(lode_query *q);
/* A built-in query of the language (borrowed, lives forever): "tags"
 * (definitions: shipped tags.scm + lode's defs.scm), "imports", "locals";
 * NULL when the language has none. */
const lode_query *lode_syntax_query(const lode_lang *l, const char *name);
const TSQuery *lode_query_ts(const lode_query *q);
/* Capture name of a capture index (borrowed). */
const char *lode_query_capture_name(const lode_query *q, uint32_t capture_id, uint32_t *len);

/* Run q over `node` (restricted to bytes [start, end); end = UINT32_MAX for
 * all) and call fn for every match that passes the predicates, in
 * tree-sitter's order. fn returns false to stop. src/len: the text the tree
 * was parsed from. */
typedef bool (*lode_match_fn)(void *ud, const lode_query *q, const TSQueryMatch *m);
void lode_query_run(const lode_query *q, TSNode node, const char *src, size_t len, uint32_t start, uint32_t end,
                    lode_match_fn fn, void *ud);

/* ---- symbols, imports, references ------------------------------------------ */
typedef enum lode_sym_kind {
    LODE_SYM_FUNCTION,
    LODE_SYM_METHOD,
    LODE_SYM_CLASS, /* class, struct, union, interface, trait, enum */
    LODE_SYM_TYPE,  /* typedef, type alias */
    LODE_SYM_MACRO,
    LODE_SYM_CONSTANT,
    LODE_SYM_MODULE, /* module, namespace, package */
    LODE_SYM_VARIABLE
} lode_sym_kind;
#define LODE_SYM_KIND_COUNT 8
/* "function", "method", ...; never NULL. */
const char *lode_sym_kind_name(lode_sym_kind k);

typedef struct lode_sym {
    lode_sym_kind kind;
    char *name;                /* NUL-terminated; owned by the lode_file_syms */
    uint32_t start, end;       /* byte range of the whole definition (incl. template<>, export, decorators) */
    uint32_t sig_end;          /* where the signature ends: start of the body, or `end` when there is none */
    uint32_t name_start;       /* byte offset of the name */
    uint32_t line;             /* 0-based row of `start` */
    int32_t parent;            /* index of the enclosing definition in syms[], or -1 */
} lode_sym;

typedef struct lode_import {
    char *text;     /* the whole import/include statement as written (owned) */
    char *module;   /* what it names (owned): "stdio.h", "foo/bar.h", "pkg.mod",
                       "./util", "fmt", "crate::a::b", "java.util.List", "foo" (mod foo;) */
    uint32_t start, end, line;
    bool system;    /* C/C++ <...> include */
} lode_import;

/* Definitions sorted by start (then by end descending: outer first), imports
 * by start. Deterministic for the same input. */
typedef struct lode_file_syms {
    lode_sym *syms;
    size_t n_syms;
    lode_import *imports;
    size_t n_imports;
} lode_file_syms;

/* Extract definitions and imports from src (tree: the tree parsed from src,
 * or NULL to parse here). out is overwritten (cleared first). */
lode_status lode_syntax_symbols(const lode_lang *l, const char *src, size_t len, const TSTree *tree,
                                lode_file_syms *out, lode_error *err);
void lode_file_syms_clear(lode_file_syms *fs);
/* The same through the query cursor over the combined tags+imports query:
 * the reference the table-driven walker (which lode_syntax_symbols uses where
 * the language's patterns allow it) is tested against. Same results. */
lode_status lode_syntax_symbols_query(const lode_lang *l, const char *src, size_t len, const TSTree *tree,
                                      lode_file_syms *out, lode_error *err);
/* Whether lode_syntax_symbols uses the walker for l (false: the query cursor). */
bool lode_syntax_symbols_walked(const lode_lang *l);

/* Reusable state for extracting many files on one thread (an index scan
 * worker): a parser per language, a query cursor and a regex match buffer,
 * instead of new ones per file. Results are the same as without it. One
 * thread at a time; free with lode_syntax_scratch_free (NULL ok). */
typedef struct lode_syntax_scratch lode_syntax_scratch;
lode_syntax_scratch *lode_syntax_scratch_new(void);
void lode_syntax_scratch_free(lode_syntax_scratch *s);
/* lode_syntax_symbols using s (NULL: the same as lode_syntax_symbols). */
lode_status lode_syntax_symbols_with(lode_syntax_scratch *s, const lode_lang *l, const char *src, size_t len,
                                     const TSTree *tree, lode_file_syms *out, lode_error *err);

/* Identifiers (unique, in order of first use) referenced in [start, end):
 * names of identifier-like leaves, excluding keywords, comments and strings.
 * *names_out is a lode_xmalloc'd array of lode_xmalloc'd strings (free each,
 * then the array, with lode_free); returns the count (0: *names_out NULL). */
size_t lode_syntax_refs(const lode_lang *l, const TSTree *tree, const char *src, uint32_t start, uint32_t end,
                        char ***names_out);
void lode_syntax_refs_free(char **names, size_t n);

/* TSPoint at byte `off` of src (row = number of '\n' before it, column =
 * bytes since the last '\n'). */
TSPoint lode_syntax_point_at(const char *src, size_t len, size_t off);

/* The TSInputEdit for replacing src[start, old_end) with text[0..len): exact
 * byte offsets and points (old end from src, new end from the inserted
 * text). For callers that edit trees themselves; lode_sdoc_edit uses it. */
TSInputEdit lode_syntax_edit_for(const char *src, size_t src_len, size_t start, size_t old_end, const char *text,
                                 size_t len);

/* ---- documents: kept parsed, reparsed incrementally ------------------------ */
typedef struct lode_sdoc lode_sdoc;

/* Copies text. Caller frees with lode_sdoc_free. NULL when the language
 * cannot be loaded. */
lode_sdoc *lode_sdoc_new(const lode_lang *l, const char *text, size_t len);
/* Replace bytes [start, old_end) with text[0..len): ts_tree_edit with the
 * exact byte and point mapping, then an incremental reparse. A range past the
 * end is LODE_ERR_RANGE (document unchanged). */
lode_status lode_sdoc_edit(lode_sdoc *d, size_t start, size_t old_end, const char *text, size_t len, lode_error *err);
/* Replace everything (a fresh parse). */
lode_status lode_sdoc_set(lode_sdoc *d, const char *text, size_t len, lode_error *err);
/* Borrowed, valid until the next edit/set. */
const TSTree *lode_sdoc_tree(const lode_sdoc *d);
/* Borrowed, NUL-terminated, valid until the next edit/set. */
const char *lode_sdoc_text(const lode_sdoc *d, size_t *len);
const lode_lang *lode_sdoc_lang(const lode_sdoc *d);
/* Incremented by every edit/set (starts at 0). */
uint64_t lode_sdoc_version(const lode_sdoc *d);
void lode_sdoc_free(lode_sdoc *d);

#ifdef __cplusplus
}
#endif
#endif /* LODE_SYNTAX_H */
