"""Subcommands of the ``minicnn`` command line kept out of ``cli.py``: each module has an
``add_parser(sub)`` that registers its arguments and its ``run(args)``; errors a user can fix
raise ``cli.UsageError`` (one line, exit code 2)."""
