"""Everything predict.py composes: a checkpoint and inputs -> one row per input."""
