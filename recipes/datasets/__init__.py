"""TFDS builders for the data the recipes compute (seeded, offline).

Importing a builder's module registers it with TFDS under its snake-case
name (`polytope_projections`, ...); `recipes.pipeline.prepared` prepares
one into a data directory on first use.
"""
