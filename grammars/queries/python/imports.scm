; import a.b / import a.b as c / from .x import y / from a import (b, c)
(import_statement name: (dotted_name) @module) @import
(import_statement name: (aliased_import name: (dotted_name) @module)) @import
(import_from_statement module_name: [(dotted_name) (relative_import)] @module) @import
