#!/usr/bin/python3
"""Embed the query files lode uses into a C source file.

usage: embed_queries.py NODE_MODULES OWN_QUERIES_DIR OUT.c

For each language and query name the text is the concatenation, in order, of
the package's shipped file(s) and lode's own grammars/queries/<lang>/<file>;
files that do not exist are skipped (so a package that starts shipping one is
picked up). The table below is the only place that says which files a
language's queries are made of.
"""
import os
import re
import sys

# lang -> {query name: [sources]}; "pkg:<dir under node_modules>/<file>", "own:<lang>/<file>"
TABLE = {
    "c": {"tags": ["pkg:tree-sitter-c/queries/tags.scm", "own:c/defs.scm"],
          "imports": ["own:c/imports.scm"]},
    "cpp": {"tags": ["pkg:tree-sitter-cpp/queries/tags.scm", "own:c/defs.scm", "own:cpp/defs.scm"],
            "imports": ["own:c/imports.scm"]},
    "python": {"tags": ["pkg:tree-sitter-python/queries/tags.scm", "own:python/defs.scm"],
               "imports": ["own:python/imports.scm"]},
    "javascript": {"tags": ["pkg:tree-sitter-javascript/queries/tags.scm", "own:javascript/defs.scm"],
                   "locals": ["pkg:tree-sitter-javascript/queries/locals.scm"],
                   "imports": ["own:javascript/imports.scm"]},
    "typescript": {"tags": ["pkg:tree-sitter-javascript/queries/tags.scm", "pkg:tree-sitter-typescript/queries/tags.scm",
                            "own:typescript/defs.scm"],
                   "locals": ["pkg:tree-sitter-javascript/queries/locals.scm",
                              "pkg:tree-sitter-typescript/queries/locals.scm"],
                   "imports": ["own:javascript/imports.scm"]},
    "go": {"tags": ["pkg:tree-sitter-go/queries/tags.scm", "own:go/defs.scm"],
           "imports": ["own:go/imports.scm"]},
    "rust": {"tags": ["pkg:tree-sitter-rust/queries/tags.scm", "own:rust/defs.scm"],
             "imports": ["own:rust/imports.scm"]},
    "java": {"tags": ["pkg:tree-sitter-java/queries/tags.scm", "own:java/defs.scm"],
             "imports": ["own:java/imports.scm"]},
    "lua": {"tags": ["pkg:@tree-sitter-grammars/tree-sitter-lua/queries/tags.scm", "own:lua/defs.scm"],
            "locals": ["pkg:@tree-sitter-grammars/tree-sitter-lua/queries/locals.scm"],
            "imports": ["own:lua/imports.scm"]},
    "bash": {"tags": ["own:bash/defs.scm"], "imports": ["own:bash/imports.scm"]},
    "json": {"tags": ["own:json/defs.scm"]},
    "ruby": {"tags": ["pkg:tree-sitter-ruby/queries/tags.scm", "own:ruby/defs.scm"],
             "locals": ["pkg:tree-sitter-ruby/queries/locals.scm"],
             "imports": ["own:ruby/imports.scm"]},
}
TABLE["tsx"] = TABLE["typescript"]


def top_level_patterns(text: str):
    """Split a query into its top-level S-expressions (with their trailing
    predicates, which sit inside the outer parentheses or brackets)."""
    out, depth, start, i, n = [], 0, None, 0, len(text)
    while i < n:
        ch = text[i]
        if ch == ';':  # comment to end of line
            j = text.find('\n', i)
            i = n if j < 0 else j
            continue
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == '\\' else 1
        elif ch in '([':
            if depth == 0:
                start = i
            depth += 1
        elif ch in ')]':
            depth -= 1
            if depth == 0:
                # a capture or quantifier right after the closing paren belongs to it
                j = i + 1
                while True:
                    m = re.match(r'\s*(@[\w.-]+|[*+?])', text[j:])
                    if not m:
                        break
                    j += m.end()
                out.append(text[start:j])
                i = j
                continue
        i += 1
    return out


def definitions_only(text: str) -> str:
    """lode reads only definitions from tags queries: drop the reference
    patterns (most of the matching work) and the doc-comment prefixes
    `(comment)* @doc .` that only highlighters use."""
    keep = [p for p in top_level_patterns(text) if '@definition.' in p]
    keep = [re.sub(r'\(comment\)\*\s*@doc\s*\.', '', p) for p in keep]
    keep = [re.sub(r'\(#[\w!?-]+\s+@doc\b[^()]*\)', '', p) for p in keep]
    return '\n'.join(keep) + '\n'


def c_string(data: bytes) -> str:
    out, line = [], '"'
    for b in data:
        ch = chr(b)
        if ch == '\\':
            line += '\\\\'
        elif ch == '"':
            line += '\\"'
        elif ch == '\n':
            line += '\\n"'
            out.append(line)
            line = '"'
            continue
        elif 32 <= b < 127 and ch != '?':
            line += ch
        else:
            line += '\\%03o' % b
    out.append(line + '"')
    return "\n    ".join(out)


def main() -> int:
    nm, own, out = sys.argv[1:4]
    rows = []
    for lang in sorted(TABLE):
        for name in sorted(TABLE[lang]):
            text = b""
            for src in TABLE[lang][name]:
                kind, rel = src.split(":", 1)
                path = os.path.join(nm if kind == "pkg" else own, rel)
                if not os.path.exists(path):
                    if kind == "own":
                        sys.stderr.write(f"embed_queries: missing {path}\n")
                        return 1
                    continue
                with open(path, "rb") as f:
                    body = f.read()
                if name == "tags":
                    body = definitions_only(body.decode()).encode()
                text += b"; ---- " + src.encode() + b"\n" + body + b"\n"
            if text:
                rows.append((lang, name, text))
    with open(out + ".tmp", "w") as f:
        f.write("/* Generated by grammars/embed_queries.py: do not edit. */\n")
        f.write("#include <stddef.h>\n")
        f.write("typedef struct lode__embedded_query { const char *lang, *name, *text; size_t len; } lode__embedded_query;\n")
        f.write("extern const lode__embedded_query lode__queries[];\nextern const size_t lode__n_queries;\n")
        f.write("const lode__embedded_query lode__queries[] = {\n")
        for lang, name, text in rows:
            f.write(f'  {{"{lang}", "{name}",\n    {c_string(text)},\n    {len(text)}}},\n')
        f.write("};\n")
        f.write(f"const size_t lode__n_queries = {len(rows)};\n")
    os.replace(out + ".tmp", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
