"""What a user runs, the same from the CLI, the widgets and the API: train, export, job scripts,
the hold-out evaluation."""
