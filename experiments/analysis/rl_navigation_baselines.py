"""The MAML paper's "random init" and "oracle" rows on 2D navigation.

Random init: the untrained policy of `navigation_maml_rl` (initialised from
`run.seed` as the trainer does, and from the next seeds with `--seeds`),
adapted and scored with the paper's protocol (`maml_rl.evaluate`: the
paper's 40 goals, returns before and after 1-3 test-time steps at 0.5 then
0.25, 40 trajectories each).

Oracle: the analytic best policy, told the goal: each step is the
per-coordinate clip of (goal - position) to +-max_action, almost
deterministic (std e^-20). After k steps the reachable positions are the box
of half-width k * max_action around the start, and this policy sits at the
point of that box nearest the goal at every step, so no policy has a higher
return; it is scored on the same 40 goals, with the environment's rollout.

  python experiments/analysis/rl_navigation_baselines.py [--seeds N]

Result (2026-12-07, the 2-core CPU alone, 12 s): oracle -0.54 +- 0.10;
random init after 0 / 1 / 2 / 3 steps -82.2 / -67.3 / -63.5 / -61.2 (seed
0), -73.6 / -62.2 / -59.6 / -58.0 (seed 1), -82.3 / -68.8 / -64.9 / -62.3
(seed 2). The trained oracle is `python -m metajax navigation_oracle`.
docs/rl.md, "Estimators, outer steps and baselines on 2D navigation".
"""
import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from experiments import navigation_maml_rl  # pylint: disable=g-import-not-at-top
from metajax.algorithms import maml_rl
from metajax.core.evaluation import summarize_curves
from metajax.tasks.rl.navigation import Navigation, rollout
from metajax.training import trainer
from metajax.training.config import override


def random_init(config, problem, seed):
  """The paper's protocol on the untrained policy of seed `seed`."""
  init_key, _ = jax.random.split(jax.random.key(seed))
  params = problem.init_params(init_key)
  return maml_rl.evaluate(override(config, {"run.seed": seed}), problem,
                          params)


def oracle(config, problem):
  """Mean return of the analytic goal-told policy on the test goals."""
  task = config.task
  env = Navigation(horizon=task.horizon, max_action=task.max_action,
                   success_radius=task.success_radius,
                   goal_low=task.goal_range[0], goal_high=task.goal_range[1])

  def policy_fn(goal_2, obs_BxO):
    mean_BxA = jnp.clip((goal_2[None, :] - obs_BxO) / env.max_action, -1.0,
                        1.0)
    return mean_BxA, jnp.full((env.action_dim,), -20.0)

  def one_goal(goal_2, key):
    trajectories = rollout(env, policy_fn, goal_2, goal_2, key,
                           config.algorithm.eval_trajectories)
    return maml_rl.mean_return(trajectories)

  results = {}
  for name, tasks in problem.eval_tasks("test").items():
    goals_Gx2 = tasks.support
    keys = jax.random.split(jax.random.key(config.eval.seed),
                            goals_Gx2.shape[0])
    returns_G = np.asarray(jax.jit(jax.vmap(one_goal))(goals_Gx2, keys))
    results[name] = summarize_curves({"return": returns_G[:, None]}, (0,))
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, default=3,
                      help="untrained policies scored (seeds run.seed, ...)")
  args = parser.parse_args()
  config = navigation_maml_rl.get_config()
  _, _, problem = trainer.build_problem(config)
  report = {"oracle": oracle(config, problem), "random_init": {}}
  for seed in range(config.run.seed, config.run.seed + args.seeds):
    report["random_init"][f"seed {seed}"] = random_init(config, problem, seed)
  print(json.dumps(report, indent=1))


if __name__ == "__main__":
  main()
