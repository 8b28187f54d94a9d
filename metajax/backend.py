"""metajax's backend-dependent choices, in one place.

Two kinds, both picked here and nowhere else:

* `Formulations`: which of several equal formulations of the same
  mathematics the models and the meta-step run. Every one gives the same
  values and derivatives (the tests compare them in float64); they differ
  in how fast a backend runs them. The library's defaults are `PORTABLE`,
  the ones that suit accelerators; `CPU` holds those that are faster on
  XLA:CPU, and `for_backend` picks between the two
  (benchmarks/NOTES_conv.md has the measurements).
* `compiler_options`: XLA compile options for metajax's jitted steps.
  XLA:CPU hands every convolution to YNNPACK by default (the
  `individual_convolution` type of `xla_cpu_experimental_ynn_fusion_type`),
  which runs it on one thread, where XLA's own (Eigen) convolution uses
  every core; the options keep YNNPACK for dots and reductions, the
  default's other two types, so a program without convolutions compiles to
  the same HLO (tests/test_xla_options.py; measurements in
  benchmarks/NOTES_conv.md and README, Meta-step speed). Setting the flag
  yourself in `XLA_FLAGS` wins: metajax then adds nothing.

This module imports nothing from metajax: the core and the models depend on
it, never the other way round.
"""
import dataclasses
import functools
import os
from typing import Optional

import jax
import jax.numpy as jnp

# The allowed values of the string fields of `Formulations`.
CONVS = ("fast", "im2col", "reference")
DENSES = ("fast", "plain")
MAX_POOLS = ("argmax", "pairwise")

_CHOICES = {"conv": CONVS, "dense": DENSES, "max_pool": MAX_POOLS}
_FLAGS = ("fold_norm", "first_step_outside_scan", "prefetch_tasks")


@dataclasses.dataclass(frozen=True)
class Formulations:
  """Which of several equal formulations of the same mathematics to run.

  Every field selects between computations with the same values and
  derivatives; only their speed depends on the backend. The defaults are
  the portable choices (`PORTABLE`); `CPU` and `for_backend` give the
  XLA:CPU ones. Construction validates the fields (`validate`).

  Attributes:
    conv: Conv4's 3x3 convolution. 'fast' is `conv_ops.conv3x3`, custom
      primitives whose XLA:CPU lowering keeps the per-task weight gradients
      of a vmapped inner loop on XLA's fast convolution and matmul kernels
      (vmap of a convolution with per-task weights is a grouped convolution,
      XLA:CPU's slow path); off CPU they lower to those grouped convolutions.
      'im2col' is `conv_ops.conv_im2col`, strided slices and one matmul:
      under vmap, batched matmuls, which GPUs run well (the portable
      default). 'reference' is `lax.conv_general_dilated`, the ground truth
      of the tests.
    dense: the MLP's layer product. 'fast' is `dense_ops.fast_dot_general`,
      a custom VJP that takes the weight gradient from a materialised `x^T`,
      the layout XLA:CPU multiplies fastest under vmap over tasks; it has no
      forward-mode rule (`for_backend(forward_mode=True)` never picks it).
      'plain' is `lax.dot_general`, every mode of autodiff.
    max_pool: how Conv4's 2x2 max-pool picks its tangent (the window's first
      maximal element either way). 'argmax' takes the element's index from
      the variadic reduction that gives the value, so XLA computes it once
      instead of recomputing comparisons inside each full-resolution use of
      the tangent, as XLA:CPU did. 'pairwise' picks it by elementwise
      comparisons, plain elementwise work that GPUs fuse.
    fold_norm: Conv4 folds the batch norm of blocks whose input has few
      channels (the first block on grey images) into their conv, the batch
      statistics taken from the input patches: no reductions over the
      full-resolution output. Faster on XLA:CPU, slower on a GPU
      (benchmarks/NOTES_conv.md).
    first_step_outside_scan: second-order inner loops take their first step
      outside the `lax.scan`, where the shared meta-parameters are still
      unbatched under vmap over tasks, so that step's products run over all
      tasks' examples at once. Faster on XLA:CPU, slower on a GPU.
    prefetch_tasks: an unfused meta-step with a task sampler draws the next
      step's tasks inside the call, beside the meta-gradient, instead of
      this step's before it. Faster on XLA:CPU, slower on a GPU.
  """
  conv: str = "im2col"
  dense: str = "plain"
  max_pool: str = "pairwise"
  fold_norm: bool = False
  first_step_outside_scan: bool = False
  prefetch_tasks: bool = False

  def __post_init__(self):
    self.validate()

  def validate(self) -> "Formulations":
    """Returns self; ValueError naming a bad field and its allowed values."""
    for name, allowed in _CHOICES.items():
      value = getattr(self, name)
      if not (isinstance(value, str) and value in allowed):
        raise ValueError(f"Formulations field {name!r}: expected one of "
                         f"{list(allowed)}, got {value!r}")
    for name in _FLAGS:
      value = getattr(self, name)
      if not isinstance(value, bool):
        raise ValueError(f"Formulations field {name!r}: expected True or "
                         f"False, got {value!r}")
    return self


PORTABLE = Formulations()
CPU = Formulations(conv="fast", dense="fast", max_pool="argmax",
                   fold_norm=True, first_step_outside_scan=True,
                   prefetch_tasks=True)


def for_backend(backend: Optional[str] = None, *,
                forward_mode: bool = False) -> Formulations:
  """`CPU` on the 'cpu' backend, `PORTABLE` elsewhere.

  Args:
    backend: a JAX platform name ('cpu', 'gpu', 'tpu', ...); None:
      `jax.default_backend()`.
    forward_mode: the caller takes `jax.jvp` through the model (as iMAML
      does): forces dense='plain', because the 'fast' product is a custom
      VJP with no forward-mode rule.
  """
  if backend is None:
    backend = jax.default_backend()
  chosen = CPU if backend == "cpu" else PORTABLE
  if forward_mode and chosen.dense != "plain":
    chosen = dataclasses.replace(chosen, dense="plain")
  return chosen


YNN_FUSION_FLAG = "xla_cpu_experimental_ynn_fusion_type"
CPU_OPTIONS = {YNN_FUSION_FLAG: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,"
                                "LIBRARY_FUSION_TYPE_REDUCE"}


@functools.cache
def _accepted_here(items: tuple, backend: str = "cpu") -> bool:
  """Whether this jaxlib compiles with the options for `backend` (flag names
  change); False where that backend is not available."""
  try:
    one = jax.device_put(jnp.float32(1.), jax.devices(backend)[0])
    jax.jit(jnp.sin, compiler_options=dict(items)).lower(one).compile()
  except Exception:  # pylint: disable=broad-except
    return False
  return True


def compiler_options(backend: Optional[str] = None) -> dict:
  """The options metajax's `jax.jit` calls pass (empty off CPU).

  `backend`: the platform the program is compiled for; None:
  `jax.default_backend()`.
  """
  if backend is None:
    backend = jax.default_backend()
  if backend != "cpu":
    return {}
  if YNN_FUSION_FLAG in os.environ.get("XLA_FLAGS", ""):
    return {}
  items = tuple(sorted(CPU_OPTIONS.items()))
  return dict(items) if _accepted_here(items, backend) else {}
