"""One module per `rankcast` subcommand; see rankcast.cli."""
