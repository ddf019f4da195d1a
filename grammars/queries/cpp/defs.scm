; lode's additions to the C++ tags: namespaces, aliases, concepts.
(namespace_definition name: (namespace_identifier) @name) @definition.module
(alias_declaration name: (type_identifier) @name) @definition.type
(concept_definition name: (identifier) @name) @definition.type
(function_declarator
  declarator: (qualified_identifier name: (qualified_identifier name: (identifier) @name))) @definition.method
(function_declarator declarator: (operator_name) @name) @definition.function
