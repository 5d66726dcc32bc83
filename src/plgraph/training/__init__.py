"""Training: the loop, checkpoints, signals, the run directory and reports."""
