"""Tasks: the registry of named callables workers run, the context they get, and the built-ins."""
