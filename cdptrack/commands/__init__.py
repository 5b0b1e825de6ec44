"""One module per ``cdptrack`` subcommand: ``HELP``, ``configure(parser)``, ``run(args)``."""
