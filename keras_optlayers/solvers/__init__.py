"""Solvers behind one interface: the diffcp host path (any cone, `cone_solver`) and the native QP path in TF ops (`qp`)."""
