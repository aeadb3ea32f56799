"""Runnable experiment modules: ``python -m experiments.<name> --config=configs/... --workdir=...``."""
