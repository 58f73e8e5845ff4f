"""Runnable examples: `python -m recipes.<name>`."""
