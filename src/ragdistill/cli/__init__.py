"""The `ragdistill` command line: one module a subcommand, registered in `main.COMMANDS`."""
