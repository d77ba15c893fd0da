"""The exit codes of every command (``trackspec --help`` lists them; build systems trust them).

Constants only, no imports: the CLI names them before anything else is loaded (the no-op
fast path). ``errors.TrackspecError.exit_code`` says which one each error means.
"""

EXIT_OK = 0
#: A track or spec failed (the others were still built), ``--check`` found stale tracks, ...
EXIT_FAILED = 1
#: Bad arguments, no or invalid ``trackspec.toml``, an unreadable index.
EXIT_USAGE = 2
#: The repo lock is held by another trackspec process (``--no-wait``), or a second ``watch``.
EXIT_LOCKED = 3
