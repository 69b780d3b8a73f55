"""What the user asks for: the spec's schema (spec.py), spec, sweep and study files (*_file.py), the hardened YAML
reader (yaml_io.py), one-line validation errors (messages.py), the values options take (choices.py). No torch."""
