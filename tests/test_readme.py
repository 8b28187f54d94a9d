"""The README's API example runs as written, using public names only, and
does what it says: adaptation lowers the task's loss and 100 meta-steps
lower the meta-loss."""
import re

import jax
import numpy as np

import metajax as mj
from conftest import REPO_ROOT


def _number(pattern, out):
  match = re.search(pattern, out, re.M)
  assert match, (pattern, out)
  return float(match.group(1))


def test_readme_api_example_runs(capsys):
  text = (REPO_ROOT / "README.md").read_text()
  section = text.split("## The functional API", 1)[1]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  names = {}
  exec(compile(code, "README.md", "exec"), names)  # pylint: disable=exec-used
  out = capsys.readouterr().out
  # What it prints is what it computed.
  initial = _number(r"^meta-loss (\S+) post-adaptation", out)
  final = _number(r"^step 100 meta-loss (\S+)$", out)
  np.testing.assert_allclose(initial, float(names["meta_loss"]), rtol=1e-6)
  np.testing.assert_allclose(final, float(names["metrics"]["meta_loss"]),
                             rtol=1e-6)
  assert int(names["state"].step) == 100
  assert np.isfinite(initial) and np.isfinite(final)
  assert bool(mj.tree_is_finite(names["state"].params))
  # Five inner steps fit the one task better than the initialisation.
  inner_losses = np.asarray(names["adapted"].losses)
  assert inner_losses.shape == (5,) and np.all(np.isfinite(inner_losses))
  assert inner_losses[-1] < 0.5 * inner_losses[0], inner_losses
  # Meta-training lowers the meta-loss: on the step-100 tasks, and on the
  # example's own 25 tasks scored again with the trained parameters.
  assert final < initial
  tasks, inner = names["tasks"], names["inner"]
  trained = float(jax.jit(lambda p: mj.meta_objective(p, tasks, inner)[0])(
      names["state"].params))
  assert trained < 0.5 * initial, (trained, initial)
