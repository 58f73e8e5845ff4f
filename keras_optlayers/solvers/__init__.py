"""The solvers, behind one registry (`registry`): the diffcp host path for any cone
(`cone_solver`, framework-free) and the native QP solver in TF ops (`qp`).

Importing this package imports neither TensorFlow nor torch.
"""
