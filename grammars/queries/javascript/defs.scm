; lode's additions to the JavaScript tags: exported/top-level consts.
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
