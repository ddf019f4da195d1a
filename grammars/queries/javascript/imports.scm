; import x from "m"; export * from "m"; require("m") (JavaScript, TypeScript, TSX)
(import_statement source: (string (string_fragment) @module)) @import
(export_statement source: (string (string_fragment) @module)) @import
((call_expression
   function: (identifier) @_fn
   arguments: (arguments . (string (string_fragment) @module) .)) @import
 (#eq? @_fn "require"))
