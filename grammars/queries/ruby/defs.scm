; lode's additions to the Ruby tags: constants.
(assignment left: (constant) @name) @definition.constant
