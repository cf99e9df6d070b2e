"""The ``runstream`` command: one CLI, a subcommand per operational task."""
