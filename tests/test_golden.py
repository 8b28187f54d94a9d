"""Golden values: one meta-step of the tiny sine config, numbers pinned.

The other tests compare formulations with each other and gradients with
finite differences; none of them notices a change that moves every
formulation alike (a different initialisation, task stream or key split)
or one formulation's rounding drifting within their tolerances. These
numbers do: one meta-step from the config's fixed seed, under the CPU
formulations and the portable ones (`metajax.backend.CPU` / `PORTABLE`),
pinned to float32 precision on XLA:CPU.
"""
import jax
import numpy as np
import pytest

from algorithm_problems import take_steps, tiny_sine_config
from metajax import backend
from metajax.training import trainer

UPDATE_POLICY = """\
The golden values of one tiny sine meta-step changed ({preset} formulations).

Updating them is legitimate only for a change that is meant to alter the
numbers: a new initialisation, task sampler or key split, a new default in
the tiny config, or a JAX/XLA version or CPU whose float32 rounding differs
(the CPU formulations have changed rounding silently before). Then first
check that tests/test_formulations.py and tests/test_meta_gradients.py pass,
print the new values (tests/test_golden.py, `_one_step`), and name the cause
and the old and new numbers in the commit message. Never update them only to
make this test pass."""

# The `(leaf path, flat indices)` of the parameters pinned after the step.
PINNED_PARAMS = ((("Dense_0", "kernel"), (0, 1, 2)),
                 (("Dense_0", "bias"), (0, 1, 2)),
                 (("Dense_1", "kernel"), (0, 1, 2)),
                 (("Dense_1", "bias"), (0,)))

GOLDEN = {
    "cpu": {
        "meta_loss": 3.6321747303009033,
        "pre_loss": 4.853092670440674,
        "grad_norm": 1.2441065311431885,
        ("Dense_0", "kernel"): (1.067620038986206, 0.7515763640403748,
                                -0.862471878528595),
        ("Dense_0", "bias"): (0.0009999892208725214, -0.0009999754838645458,
                              0.0009999931789934635),
        ("Dense_1", "kernel"): (0.2715291976928711, 0.12880799174308777,
                                -0.1338053196668625),
        ("Dense_1", "bias"): (-0.0009999934118241072,),
    },
    "portable": {
        "meta_loss": 3.6321747303009033,
        "pre_loss": 4.853092193603516,
        "grad_norm": 1.2441067695617676,
        ("Dense_0", "kernel"): (1.067620038986206, 0.7515763640403748,
                                -0.862471878528595),
        ("Dense_0", "bias"): (0.0009999893372878432, -0.0009999754838645458,
                              0.0009999930625781417),
        ("Dense_1", "kernel"): (0.2715291976928711, 0.12880799174308777,
                                -0.1338053196668625),
        ("Dense_1", "bias"): (-0.0009999934118241072,),
    },
}


def _one_step(preset: str) -> dict:
  """The metrics and pinned params after one meta-step under `preset`."""
  run = trainer.build_run(tiny_sine_config(formulations__preset=preset))
  assert run.formulations == {"cpu": backend.CPU,
                              "portable": backend.PORTABLE}[preset]
  state, [metrics] = take_steps(run, 1)
  got = {name: float(metrics[name])
         for name in ("meta_loss", "pre_loss", "grad_norm")}
  for path, indices in PINNED_PARAMS:
    leaf = state.params["params"][path[0]][path[1]]
    got[path] = tuple(float(np.ravel(leaf)[i]) for i in indices)
  return got


@pytest.mark.skipif(jax.default_backend() != "cpu",
                    reason="the numbers are XLA:CPU's float32 results")
@pytest.mark.parametrize("preset", ["cpu", "portable"])
def test_one_meta_step_gives_the_golden_values(preset):
  got, expected = _one_step(preset), GOLDEN[preset]
  assert got.keys() == expected.keys()
  for name, value in expected.items():
    np.testing.assert_allclose(got[name], value, rtol=1e-6, atol=0, err_msg=(
        f"{name}: got {got[name]!r}\n" + UPDATE_POLICY.format(preset=preset)))
