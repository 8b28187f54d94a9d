"""XLA compile options for metajax's jitted steps, by backend.

XLA:CPU hands every convolution to YNNPACK by default (the
`individual_convolution` type of `xla_cpu_experimental_ynn_fusion_type`),
which runs it on one thread; XLA's own (Eigen) convolution uses every core.
On this project's 2-core CPU a 3x3 convolution of 75 x 14 x 14 x 64 -> 64
takes 4.9 ms one way and 2.8 ms the other, and the Omniglot 5-way 1-step
meta-step 1212-1286 -> 1091 ms (README, Meta-step speed). `compiler_options`
keeps YNNPACK for dots and reductions, the default's other two types, so a
program without convolutions compiles to the same HLO (the sine step does;
tests/test_xla_options.py).

Setting the flag yourself in `XLA_FLAGS` wins: metajax then adds nothing.
"""
import functools
import os

import jax
import jax.numpy as jnp

YNN_FUSION_FLAG = "xla_cpu_experimental_ynn_fusion_type"
CPU_OPTIONS = {YNN_FUSION_FLAG: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,"
                                "LIBRARY_FUSION_TYPE_REDUCE"}


@functools.cache
def _accepted_here(items: tuple) -> bool:
  """Whether this jaxlib compiles with the options (flag names change)."""
  try:
    jax.jit(jnp.sin, compiler_options=dict(items)).lower(1.0).compile()
  except Exception:  # pylint: disable=broad-except
    return False
  return True


def compiler_options() -> dict:
  """The options metajax's `jax.jit` calls pass (empty off CPU)."""
  if jax.default_backend() != "cpu":
    return {}
  if YNN_FUSION_FLAG in os.environ.get("XLA_FLAGS", ""):
    return {}
  items = tuple(sorted(CPU_OPTIONS.items()))
  return dict(items) if _accepted_here(items) else {}
