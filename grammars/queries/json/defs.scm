; JSON: the keys of the top-level object (the package ships no tags.scm).
(document (object (pair key: (string (string_content) @name)) @definition.constant))
