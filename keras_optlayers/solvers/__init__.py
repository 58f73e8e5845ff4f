"""Solvers behind one interface: the diffcp host path (any cone) and the native QP path."""
