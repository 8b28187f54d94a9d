"""2D navigation and MAML-RL: environment semantics, determinism, one
compilation, a short run that learns to adapt, exact resume, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import navigation_maml_rl
from metajax.algorithms import maml_rl
from metajax.settings import ConfigError
from metajax.tasks.rl.navigation import Navigation, rollout
from metajax.training import run_io
from metajax.training import trainer as train
from metajax.training.config import override

ENV = Navigation(horizon=12)


def tiny_config(**changes):
  """Navigation small enough to compile and step in about a second."""
  settings = {"model.hidden_sizes": (16,), "algorithm.trajectories": 5,
              "task.horizon": 15, "algorithm.cg_iterations": 3,
              "algorithm.line_search_steps": 4, "outer.meta_batch_size": 4,
              "outer.lr": 3e-3, "outer.num_meta_steps": 40,
              "outer.steps_per_call": 10, "run.log_every": 10,
              "eval.num_tasks": 6, "eval.inner_steps": (1,),
              "formulations.prefetch_tasks": "false"}
  settings.update({k.replace("__", "."): v for k, v in changes.items()})
  return override(navigation_maml_rl.get_config(), settings)


def homing_policy(params, obs_BxO):
  """Steps straight to `params["goal"]` (the action scaled by 1 / max_action
  of 0.1, then clipped), almost deterministically."""
  return (params["goal"][None, :] - obs_BxO[:, :2]) / 0.1, jnp.full((2,),
                                                                   -20.0)


def test_step_scales_and_clips_actions_rewards_distance_and_detects_arrival():
  # rllab's normalize: the policy's [-1, 1] is scaled to +-0.1, then clipped.
  goal = jnp.array([0.3, -0.2])
  position, reward, done = ENV.step(jnp.zeros(2), jnp.array([5.0, -0.4]),
                                    goal)
  np.testing.assert_allclose(position, [0.1, -0.04], rtol=1e-6)
  np.testing.assert_allclose(reward, -np.hypot(0.2, 0.16), rtol=1e-6)
  assert not bool(done)
  _, reward, done = ENV.step(jnp.array([0.295, -0.1]),
                             jnp.array([0.0, -0.95]), goal)
  assert bool(done) and abs(float(reward)) < 0.01
  _, _, done = ENV.step(jnp.array([0.28, -0.1]), jnp.array([0.0, -1.0]),
                        goal)
  assert not bool(done)  # x is 0.02 away: both coordinates must be close


def test_the_oracle_observes_the_goal():
  env = Navigation(horizon=12, observe_goal=True)
  goal = jnp.array([0.25, 0.0])
  trajectories = rollout(env, homing_policy, {"goal": goal}, goal,
                         jax.random.key(0), 2)
  assert env.observation_dim == 4 and trajectories.obs.shape == (2, 12, 4)
  np.testing.assert_allclose(trajectories.obs[0, :3, 2:], [[0.25, 0.0]] * 3)
  np.testing.assert_allclose(trajectories.obs[0, :3, 0], [0.0, 0.1, 0.2],
                             atol=1e-6)
  config = tiny_config(task__observe_goal=True, algorithm__pretrain=True)
  run = train.build_run(config)
  kernel = run.state.params["params"]["Dense_0"]["kernel"]
  assert kernel.shape[0] == 4


def test_test_goals_are_the_papers_draw_and_apart_from_validation():
  problem = train.build_run(tiny_config(eval__num_tasks=40)).problem
  test = np.asarray(problem.eval_tasks("test")["40 goals"].support)
  np.random.seed(1)  # test_maml_point.py's draw
  np.testing.assert_allclose(test, np.random.uniform(-0.5, 0.5, (40, 2)),
                             rtol=1e-6)
  val = np.asarray(problem.eval_tasks("val", 40)["40 goals"].support)
  assert np.min(np.abs(test - val)) > 0
  sampled = train.build_run(tiny_config(
      eval__num_tasks=40, task__test_goals="sampled")).problem
  other = np.asarray(sampled.eval_tasks("test")["40 goals"].support)
  assert not np.allclose(test, other)
  assert np.all(np.abs(other) <= 0.5)


def test_rollout_masks_the_steps_after_arrival():
  goal = jnp.array([0.25, 0.0])
  trajectories = rollout(ENV, homing_policy, {"goal": goal}, goal,
                         jax.random.key(0), 3)
  # 0.1, 0.2, then 0.25 (clipped step of 0.05): done at the third step.
  np.testing.assert_array_equal(trajectories.mask[0], [1.0] * 3 + [0.0] * 9)
  np.testing.assert_allclose(trajectories.obs[0, :3, 0], [0.0, 0.1, 0.2],
                             atol=1e-6)
  np.testing.assert_allclose(trajectories.rewards[0, :3],
                             [-0.15, -0.05, 0.0], atol=1e-5)
  assert np.all(np.asarray(trajectories.rewards)[:, 3:] == 0.0)
  assert trajectories.obs.shape == (3, 12, 2)


def test_rollouts_are_determined_by_the_key():
  run = train.build_run(tiny_config())
  env = run.problem.environment
  goal = jnp.array([0.1, 0.2])
  sample = jax.jit(lambda key: env.rollout(run.state.params, goal, key, 4))
  a, b = sample(jax.random.key(1)), sample(jax.random.key(1))
  c = sample(jax.random.key(2))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a.actions, c.actions)


@pytest.fixture(scope="module")
def trained():
  """A short run: the initial and final states and the metrics."""
  run = train.build_run(tiny_config())
  initial = jax.tree.map(np.asarray, run.state.params)
  state, history = run.state, []
  for _ in range(4):
    state, _, metrics = run.call(state, None)
    history.append(jax.tree.map(np.asarray, metrics))
  return run, initial, state, history


def test_meta_step_compiles_once_and_adaptation_pays_after_training(trained):
  run, initial, state, history = trained
  assert run.step_fn.cache_size() == 1
  assert int(state.step) == 40 and int(state.nonfinite_count) == 0
  config = run.config
  goals = run.problem.eval_tasks("val", 16)["16 goals"].support
  key = jax.random.key(5)
  before = maml_rl.adaptation_returns(config, run.problem, initial, goals,
                                      key, 1).mean(0)
  after = maml_rl.adaptation_returns(config, run.problem, state.params,
                                     goals, key, 1).mean(0)
  last = history[-1]
  assert np.mean(last["post_return"]) > np.mean(last["pre_return"]), last
  assert after[1] > after[0], after  # one test-time step raises the return
  assert after[1] > before[1], (before, after)  # meta-training paid


def test_trpo_step_keeps_the_kl_bound():
  run = train.build_run(tiny_config(
      outer__steps_per_call=1, run__log_every=1,
      algorithm__outer_step="trpo", outer__optimizer="sgd", outer__lr=1.0))
  state, _, metrics = run.call(run.state, None)
  assert int(state.nonfinite_count) == 0
  assert 0.0 < float(metrics["trpo_step_fraction"]) <= 1.0
  assert 0.0 < float(metrics["trpo_kl"]) <= run.config.algorithm.max_kl


def test_resume_is_exact(tmp_path):
  config = tiny_config(outer__num_meta_steps=20, run__checkpoint_every=10,
                       eval__num_tasks=3)
  train.train(config, str(tmp_path / "whole"), progress=False)
  half = override(config, {"outer.num_meta_steps": 10})
  train.train(half, str(tmp_path / "split"), progress=False)
  results = train.train(config, str(tmp_path / "split"), progress=False,
                        resume=True)
  load = lambda d: run_io.load_params(str(tmp_path / d / "params.msgpack"),
                                      train.build_run(config).state.params)
  for a, b in zip(jax.tree.leaves(load("whole")), jax.tree.leaves(load("split"))):
    np.testing.assert_array_equal(a, b)
  returns = results["evaluation"]["3 goals"]["return"]
  assert set(returns) == {"step_0", "step_1"}


@pytest.mark.parametrize("changes,field", [
    ({"algorithm.estimator": "reinforce"}, "algorithm.estimator"),
    ({"algorithm.trajectories": 1, "task.horizon": 5},
     "algorithm.trajectories"),
    ({"task.horizon": 0}, "task.horizon"),
    ({"algorithm": "maml"}, "algorithm"),
    ({"algorithm.outer_step": "trpo"}, "outer.optimizer"),
])
def test_bad_settings_name_the_field(changes, field):
  with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
    train.build_problem(override(tiny_config(), changes))


def test_maml_rl_rejects_supervised_tasks():
  from algorithm_problems import tiny_sine_config  # pylint: disable=g-import-not-at-top
  with pytest.raises(ConfigError, match="'task'"):
    train.build_problem(tiny_sine_config(algorithm="maml_rl"))
