; require("a.b") / require "a.b"
((function_call
   name: (identifier) @_fn
   arguments: [
     (arguments . (string content: (string_content) @module))
     (string content: (string_content) @module)
   ]) @import
 (#eq? @_fn "require"))
