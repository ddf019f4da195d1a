; #include "x.h" / #include <x.h> (C and C++)
(preproc_include path: [(string_literal) (system_lib_string)] @module) @import
