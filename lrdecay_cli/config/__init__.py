"""What the user asks for: the spec's schema, spec, sweep and study files, the one hardened YAML reader, the
one translation of validation errors into one-line messages, and the values options take. No torch import."""
