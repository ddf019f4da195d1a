; lode's additions to the Python tags: annotated module-level assignments.
(module (expression_statement (assignment left: (identifier) @name type: (_)) @definition.variable))
