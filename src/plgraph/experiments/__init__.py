"""Everything ``main.py experiment=NAME`` runs: many trainings -> one report."""
