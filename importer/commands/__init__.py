"""One module per ``trackspec`` subcommand.

Each module has ``register(subparsers)``, which adds its parser and sets ``run`` (a
function of the parsed arguments returning an exit code) as the parser's default. Module
level code stays light (argparse only): every invocation imports all of them to build
``--help``, and a no-op build must not pay for more.
"""
