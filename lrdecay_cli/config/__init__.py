"""What the user asks for: the spec's schema (spec.py), spec data read, edited and validated (spec_file.py),
sweep and study files (sweep_file.py, study_file.py), the one hardened YAML reader (yaml_io.py), one
translation of validation errors into one-line messages (messages.py), and the values options take
(choices.py). No torch import."""
