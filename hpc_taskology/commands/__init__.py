"""Subcommands of the ``taskology`` CLI, one module each (``add_arguments(parser)``, ``run(args) -> int``)."""
