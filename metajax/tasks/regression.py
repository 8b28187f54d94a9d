"""The MAML paper's sine protocol: K-shot fine-tuning on 600 fixed tasks."""
import jax

from metajax.algorithms._common import inner_loop
from metajax.core.evaluation import adaptation_curves, summarize_curves
from metajax.tasks.regression_sampling import sample_regression_tasks


def evaluate_regression(params, problem, config, inner=None) -> dict:
  """Query MSE after each of `config.eval_inner_steps` for each K shot.

  Fine-tuning is plain SGD at `config.inner_lr` (as in the paper), on
  `config.eval_num_tasks` tasks drawn from `config.eval_seed`, scored on
  `config.eval_num_query` fresh points per task. `inner` overrides how a
  task is adapted (algorithms with learned rates or partial adaptation).
  """
  inner = inner or inner_loop(config, problem, optimizer=None)
  max_steps = max(config.eval_inner_steps)
  results = {}
  for shots in config.eval_shots:
    key = jax.random.fold_in(jax.random.key(config.eval_seed), shots)
    tasks, _ = sample_regression_tasks(problem.family, key,
                                       config.eval_num_tasks, shots,
                                       config.eval_num_query)
    curves = adaptation_curves(params, inner, tasks, max_steps)
    results[f"K={shots}"] = summarize_curves(
        curves, (0,) + tuple(config.eval_inner_steps))["loss"]
  return results
