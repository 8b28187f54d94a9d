"""Flax models with explicit parameter pytrees.

Where several formulations of the same mathematics exist (Conv4's `conv`,
`fold_norm` and `max_pool`, the MLP's `dense`) the models take them as
explicit fields with the portable ones as defaults and never ask which
backend they run on; `metajax.backend.for_backend` gives a backend's.
"""
from metajax.models.conv4 import Conv4
from metajax.models.mlp import MLP
