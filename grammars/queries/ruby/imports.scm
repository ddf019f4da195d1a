; require "x" / require_relative "x" / load "x"
((call
   method: (identifier) @_fn
   arguments: (argument_list . (string (string_content) @module))) @import
 (#any-of? @_fn "require" "require_relative" "load"))
