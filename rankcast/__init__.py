"""The `rankcast` command line: one entry point, each subcommand loaded only when it runs."""
