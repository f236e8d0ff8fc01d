"""The `lookout` command (lookout-command): admin commands against any ClickHouse, and the
subcommands other installed distributions add (lookout-stack's `up`)."""
