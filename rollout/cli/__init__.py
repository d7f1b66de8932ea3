"""The ``aftershock`` command line (Typer): one module per group of commands, each importing
the heavy libraries it needs inside the command, so that ``aftershock --help`` starts fast."""
