"""Flax models with explicit parameter pytrees."""
from metajax.models.mlp import MLP
