"""Figures of the paper, drawn from already computed arrays.

One module per figure, plus style (sizes, fonts, colours, labels) and save
(atomic writes). matplotlib is imported inside the drawing functions only, so
importing this package, or any analysis, never loads it. Figures are built on
matplotlib.figure.Figure directly, without pyplot: no global backend or
figure registry is touched, which keeps drawing safe in scripts, servers and
notebooks alike (the Agg canvas is used for every format).
"""
