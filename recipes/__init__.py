"""Runnable examples: `python -m recipes.<name> [--quick]`.

polytope (the main job), activations, ellipsoid, optnet, topk,
data_poisoning, stochastic_control and mpc; their TFDS builders live in
`recipes.datasets`. The recipes only write picture files, so matplotlib's
file-only Agg backend is chosen here, before any recipe imports pyplot.
"""

import matplotlib as mpl

mpl.use("Agg")
