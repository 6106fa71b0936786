"""`dyn import`: checkpoints and prediction dumps from other projects, as run files.

Torch-free at import: torch is loaded only to read torch files (load.py) or to evaluate
(evaluate.py). sources.py expands SOURCES; load.py reads one file safely; layouts.py finds the
SGD and EMA weights in it; records.py pairs and orders files; checkpoints.py and
predictions.py build runs; output.py writes them all or nothing; cli.py is `dyn import`.
"""
