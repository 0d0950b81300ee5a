"""One module per ``embedforge`` subcommand (see ``embedforge.cli.COMMANDS``)."""
