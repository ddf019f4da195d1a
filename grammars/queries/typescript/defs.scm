; lode's additions to the TypeScript tags (also TSX): type aliases, enums,
; classes with a type_identifier name, exported consts.
(type_alias_declaration name: (type_identifier) @name) @definition.type
(enum_declaration name: (identifier) @name) @definition.class
(class_declaration name: (type_identifier) @name) @definition.class
(program
  (lexical_declaration
    (variable_declarator
      name: (identifier) @name
      value: [(number) (string) (object) (array) (template_string) (call_expression) (new_expression)]) @definition.constant))
(program
  (export_statement
    declaration: (lexical_declaration
      (variable_declarator
        name: (identifier) @name
        value: [(number) (string) (object) (array) (template_string) (call_expression) (new_expression)]) @definition.constant)))
