; import "fmt" / import ( f "fmt" ... )
(import_spec path: (interpreted_string_literal) @module) @import
