/*
 * lode_context.h — project context for fill-in-the-middle prompts, and the
 * syntax-aware post-processing of what the model generates.
 *
 * Prompt assembly (context.c). For a document and a cursor, within a token
 * budget (default 4096, counted with the model's tokenizer when one is
 * given, else estimated as ceil(bytes / 2.5)), the FIM prefix is made of
 * sections, each headed by its path as a line comment, as in
 * DeepSeek-Coder's repository-level data ("// src/util.c"):
 *
 *   1. IMPORT:     declarations (signatures) of the files the current file
 *                  imports/includes, resolved through the index;
 *   2. RECENT:     chunks around the last edit of recently edited files;
 *   3. DEFINITION: definitions of identifiers used around the cursor,
 *                  resolved through the index: signature first, whole body
 *                  when the budget allows;
 *   4. FILE:       the current file's header and its prefix window;
 * then the SUFFIX window. The order is "changes least first": imports move
 * only when the import list changes, recent chunks when another file is
 * edited, definitions when an identifier near the cursor changes, and the
 * windows with every keystroke. Each section's budget depends only on the
 * budget and on the sections before it (leftovers flow forward, never
 * back), and the prefix window starts on a grid, so typing at the cursor
 * changes only the prompt's tail and the daemon's prefix cache reuses the
 * rest. The same input always gives byte-identical output. Section texts,
 * prefix and suffix are valid UTF-8 without NUL bytes (any other byte, from
 * a Latin-1 or binary file, becomes '?'), so they go into JSON as they are.
 *
 * Windows are cut at syntactic boundaries: the prefix window starts at the
 * beginning of a line where a syntax node (statement, declaration) starts;
 * the suffix window ends at the end of a line where one ends.
 *
 * Post-processing (context_post.c): see lode_post_process below.
 *
 * docs/context.md ("## Prompt assembly") describes both.
 *
 * Threading: one thread at a time per lode_ctx.
 */
#ifndef LODE_CONTEXT_H
#define LODE_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lode_base.h"
#include "lode_index.h"
#include "lode_lsp.h"
#include "lode_syntax.h"
#include "lode_tok.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LODE_CTX_DEFAULT_BUDGET 4096
#define LODE_CTX_MIN_BUDGET 64
#define LODE_CTX_MAX_BUDGET (1u << 20)

typedef enum lode_ctx_kind {
    LODE_CTX_IMPORT = 0,
    LODE_CTX_RECENT,
    LODE_CTX_DEFINITION,
    LODE_CTX_FILE,   /* current file: header + prefix window (ends at the cursor) */
    LODE_CTX_SUFFIX  /* current file: suffix window (starts at the cursor) */
} lode_ctx_kind;
/* "import", "recent", "definition", "file", "suffix". */
const char *lode_ctx_kind_name(lode_ctx_kind k);

typedef struct lode_ctx_section {
    lode_ctx_kind kind;
    char *path;     /* as shown in the header (relative to its root); owned */
    char *text;     /* exactly as in the prompt, header line included; owned */
    size_t len;
    size_t tokens;  /* counted (or estimated) alone */
    size_t n_items; /* definitions / declarations in it (0 for windows) */
} lode_ctx_section;

typedef struct lode_ctx_prompt {
    lode_ctx_section *sections; /* prompt order; the last two are FILE and SUFFIX */
    size_t n_sections;
    char *prefix, *suffix; /* the FIM prefix (every section but SUFFIX) and suffix; NUL-terminated, owned */
    size_t prefix_len, suffix_len;
    size_t tokens;       /* of the whole FIM prompt: sections + BOS + 3 FIM markers */
    size_t budget;       /* the budget it was built for */
    bool exact;          /* tokens counted with the model's tokenizer */
    size_t win_start, win_end; /* the current file's bytes in the prompt: [win_start, cursor) + [cursor, win_end) */
    /* Definitions in the prompt ("path\tname" per line, sorted): for tests and the evaluation. */
    char **defs;
    size_t n_defs;
} lode_ctx_prompt;

void lode_ctx_prompt_clear(lode_ctx_prompt *p);
/* The prompt as the model sees it, markers as text:
 * "<｜fim▁begin｜>PREFIX<｜fim▁hole｜>SUFFIX<｜fim▁end｜>" (lode_free). */
char *lode_ctx_prompt_fim_text(const lode_ctx_prompt *p, size_t *len);
/* Whether the prompt holds the definition (path: canonical, as the index gives it). */
bool lode_ctx_prompt_has_def(const lode_ctx_prompt *p, const char *path, const char *name);

/* The builder: an index (may be NULL: no project context), the roots the
 * paths are shown relative to, and a tokenizer (may be NULL: byte
 * estimate). All borrowed; they must outlive the builder. */
typedef struct lode_ctx lode_ctx;
lode_ctx *lode_ctx_new(lode_index *ix, const char *const *roots, size_t n_roots, const lode_tok *tok);
void lode_ctx_free(lode_ctx *c);
/* Tokens of s (exact with the tokenizer, else ceil(n / 2.5)); cached by content. */
size_t lode_ctx_count(lode_ctx *c, const char *s, size_t n);
/* An edit happened in path at byte `at` (for RECENT chunks). The most
 * recent 8 files are remembered; the LODE_CTX_RECENT_FILES most recent
 * ones (other than the current file, inside the index) get a chunk each,
 * centred on `at`. Paths: canonical, as the index gives them. */
#define LODE_CTX_RECENT_FILES 3
void lode_ctx_note_edit(lode_ctx *c, const char *path, size_t at);

typedef struct lode_ctx_input {
    const char *path;      /* the document's path (canonical when inside a root); NULL: untitled */
    const lode_lang *lang; /* NULL: by path; still NULL: plain windows, no project context */
    const char *text;
    size_t len, cursor;    /* cursor: byte offset (clamped to len) */
    const TSTree *tree;    /* the tree of text, or NULL (parsed here) */
    size_t budget;         /* tokens; 0: LODE_CTX_DEFAULT_BUDGET; clamped to [MIN, MAX] */
} lode_ctx_input;

lode_status lode_ctx_build(lode_ctx *c, const lode_ctx_input *in, lode_ctx_prompt *out, lode_error *err);

/* ---- post-processing ------------------------------------------------------------ */
typedef enum lode_post_mode {
    LODE_POST_SINGLE = 0, /* complete the current line / statement */
    LODE_POST_MULTI       /* an empty block or after a block opener: several lines */
} lode_post_mode;

/* What decided the mode / the cut, for tests and logs. */
typedef struct lode_post_info {
    lode_post_mode mode;
    const char *mode_why;  /* "text after the cursor", "after a block opener", "empty block", ... */
    const char *stop_why;  /* "first line", "closes the enclosing block", "repeats the suffix",
                              "dedent", "overlap with the suffix", "parse errors", NULL: whole text */
    int errors_before, errors_after; /* ERROR/MISSING nodes without / with the completion (-1: not parsed) */
    bool rejected;         /* every candidate added parse errors */
} lode_post_info;

/* The mode for the cursor (lang NULL: by the line alone). */
lode_post_mode lode_post_mode_at(const lode_lang *lang, const TSTree *tree, const char *text, size_t len,
                                 size_t cursor, const char **why);

/* Post-process generated text `gen` for insertion at `cursor` of text
 * (the document as the model saw it; tree: its tree or NULL):
 *  - single-line or multi-line from the syntax at the cursor;
 *  - multi-line output stops before a line that closes the block around the
 *    cursor (an unmatched closer or a dedent below the cursor's block);
 *  - output that starts repeating the suffix is cut there, and an end that
 *    overlaps the start of the suffix is trimmed — each only when the
 *    parse of the file with the completion does not get worse for it;
 *  - a completion that adds parse errors (ERROR/MISSING nodes of the file
 *    with the completion vs without) is cut back to the longest prefix of
 *    whole lines that does not, or rejected (empty);
 *  - indentation normalised to the file's (tabs vs spaces, width), the
 *    first line's indentation not doubled, trailing blanks dropped.
 * No fixed stop strings. With lang NULL (unknown language) this is
 * lode_lsp_postprocess. Returns a lode_xmalloc'd string; *n its length;
 * info may be NULL. */
char *lode_post_process(const lode_lang *lang, const TSTree *tree, const char *text, size_t len, size_t cursor,
                        const char *gen, size_t gen_len, size_t *n, lode_post_info *info);

/* Count ERROR and MISSING nodes of a tree. */
int lode_post_error_count(const TSTree *tree);

/* ---- the `lode lsp` provider ------------------------------------------------------ */
/* Keeps open documents parsed (lode_sdoc, edited incrementally), an index
 * over the workspace roots (from initialize's workspaceFolders / rootUri;
 * only files inside them are read) and a lode_ctx; plugs into a session
 * with lode_ctx_lsp_attach. */
typedef struct lode_ctx_lsp lode_ctx_lsp;
/* opts: for the index (NULL: defaults). tok: NULL (byte estimate). */
lode_ctx_lsp *lode_ctx_lsp_new(const lode_index_opts *opts, const lode_tok *tok);
void lode_ctx_lsp_free(lode_ctx_lsp *p);
/* Install the provider, the document listener and the post-processor in l. */
void lode_ctx_lsp_attach(lode_ctx_lsp *p, lode_lsp *l);
/* file:// URI → path (percent-decoded); NULL for other schemes (lode_free). */
char *lode_ctx_uri_path(const char *uri);
/* The index (NULL before the roots are known). */
lode_index *lode_ctx_lsp_index(lode_ctx_lsp *p);

#ifdef __cplusplus
}
#endif
#endif /* LODE_CONTEXT_H */
