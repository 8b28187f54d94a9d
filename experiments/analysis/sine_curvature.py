"""Why some K=5 sine tasks diverge when fine-tuned from a MAML initialisation.

Gradient descent at rate `lr` on a loss whose Hessian has largest eigenvalue
L is stable only where L < 2 / lr. For each of the run's K=5 meta-test tasks
this script fine-tunes the saved meta-parameters with the run's test-time
optimizer (SGD at inner.lr) and measures, by power iteration on
Hessian-vector products, the largest Hessian eigenvalue of the support loss
along the path (at the start and after each step), next to 2 / inner.lr, and
whether the task diverged (`metajax.core.evaluation.diverged_tasks`).

  python experiments/analysis/sine_curvature.py RUN_DIR [RUN_DIR ...]
"""
import json
import os
import sys

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from metajax.core.evaluation import diverged_tasks  # pylint: disable=g-import-not-at-top
from metajax.training import cli, run_io, trainer
from metajax.training.config import override


def top_eigenvalue(loss, params, iterations=50):
  """The largest-magnitude Hessian eigenvalue of `loss` at `params`."""
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  hvp = lambda v: jax.flatten_util.ravel_pytree(jax.jvp(
      jax.grad(loss), (params,), (unravel(v),))[1])[0]
  vector = jnp.ones_like(flat) / jnp.sqrt(flat.size)
  def body(_, v):
    w = hvp(v)
    return w / jnp.linalg.norm(w)
  vector = jax.lax.fori_loop(0, iterations, body, vector)
  return jnp.vdot(vector, hvp(vector))


def analyse(run_dir, steps=10, shots=5):
  _, config = cli.saved_config(run_dir)
  # Hessian-vector products take forward mode: the plain dense product.
  run = trainer.build_run(override(config, {"formulations.dense": "plain"}))
  params = run_io.load_params(os.path.join(run_dir, "params.msgpack"),
                              run.state.params)
  tasks = run.problem.eval_tasks("test")[f"K={shots}"]
  loss_fn, lr = run.problem.loss_fn, config.inner.lr

  def one_task(task):
    def step(p, _):
      support_loss = lambda q: loss_fn(q, task.support)
      curvature = top_eigenvalue(support_loss, p)
      value, grad = jax.value_and_grad(support_loss)(p)
      return jax.tree.map(lambda a, g: a - lr * g, p, grad), (value, curvature)
    _, (losses, curvatures) = jax.lax.scan(step, params, None, steps + 1)
    return losses, curvatures

  losses, curvatures = jax.jit(jax.vmap(one_task))(tasks)
  losses, curvatures = np.asarray(losses), np.asarray(curvatures)
  diverged = diverged_tasks(losses)[:, -1]
  # The curvature before any step that diverged (where it is still finite).
  finite = np.where(np.isfinite(curvatures), curvatures, -np.inf)
  return {
      "run_dir": run_dir, "seed": config.run.seed, "stability_limit": 2 / lr,
      "tasks": int(len(losses)), "diverged": int(diverged.sum()),
      "diverged_start_curvature": sorted(
          float(c) for c in curvatures[diverged, 0]),
      "kept_start_curvature_max": float(curvatures[~diverged, 0].max()),
      "kept_path_curvature_max": float(finite[~diverged].max()),
      "tasks_starting_above_limit": int((curvatures[:, 0] > 2 / lr).sum()),
  }


if __name__ == "__main__":
  for directory in sys.argv[1:]:
    print(json.dumps(analyse(directory)))
