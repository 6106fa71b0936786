"""Analyses of recorded training dynamics: pure numpy functions, no torch.

Each module is one analysis over numpy arrays (packed correctness rows, weight
vectors, run summaries); dyn.analyze.plot draws their results and is the only place
matplotlib is imported, lazily, when a figure is drawn. Nothing is imported here
so that `import analyze.<module>` stays light.
"""
