"""The model directory on disk: its files (written atomically), weights and checkpoints, records."""
