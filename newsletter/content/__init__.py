"""Issue files -> typed model: loading, validation with file:line:column errors, drafting, linting."""
