"""Half-cheetah velocity and direction on brax: the paper's reward from a
brax state, determinism, no pathwise gradient through the physics, bad
input. The tests that step the physics are skipped without brax (CI does
not install the optional extra); the bad-input tests, the missing-brax
error among them, run without it."""
import dataclasses
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO_ROOT
from experiments import cheetah_dir_maml_rl, cheetah_vel_maml_rl
from metajax.settings import ConfigError
from metajax.tasks.rl import cheetah_task
from metajax.tasks.rl.half_cheetah import HalfCheetah
from metajax.training import trainer as train
from metajax.training.config import override

NO_BRAX = 'brax is not installed (the optional extra: pip install -e ".[rl]")'


def tiny_config(experiment=cheetah_vel_maml_rl, **changes):
  """Horizon 5; 8 trajectories give the baseline's 38 features 40 samples
  (the rollouts below sample 2)."""
  settings = {"model.hidden_sizes": (8,), "algorithm.trajectories": 8,
              "task.horizon": 5, "outer.meta_batch_size": 2,
              "eval.num_tasks": 3, "formulations.prefetch_tasks": "false"}
  settings.update({k.replace("__", "."): v for k, v in changes.items()})
  return override(experiment.get_config(), settings)


# ------------------------------------------------------ without brax
@pytest.mark.parametrize("experiment", [cheetah_vel_maml_rl,
                                        cheetah_dir_maml_rl])
def test_missing_brax_is_a_config_error_naming_the_field_and_the_fix(
    monkeypatch, experiment):
  monkeypatch.setitem(sys.modules, "brax", None)  # `import brax` fails
  with pytest.raises(ConfigError) as error:
    train.build_problem(tiny_config(experiment))
  message = str(error.value)
  assert "config field 'task'" in message and "brax" in message, message
  assert 'pip install -e ".[rl]"' in message, message


def test_metajax_and_the_cheetah_experiments_import_without_brax():
  code = ("import sys; sys.modules['brax'] = None\n"
          "import metajax, metajax.tasks\n"
          "from experiments import cheetah_dir_maml_rl\n"
          "assert cheetah_dir_maml_rl.get_config().task.NAME == 'cheetah_dir'")
  subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True,
                 timeout=120)


@pytest.mark.parametrize("changes,field", [
    ({"task.horizon": 0}, "task.horizon"),
    ({"task.horizon": 1001}, "task.horizon"),
    ({"task.backend": "spring"}, "task.backend"),
    ({"task.goal_range": (2.0, 0.0)}, "task.goal_range"),
    ({"task.ctrl_cost": -0.05}, "task.ctrl_cost"),
    ({"algorithm.trajectories": 2}, "algorithm.trajectories"),  # 10 < 38
    ({"algorithm": "maml"}, "algorithm"),
])
def test_bad_settings_name_the_field(changes, field):
  with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
    train.build_problem(override(tiny_config(), changes))


def test_goals_follow_the_paper():
  key = jax.random.key(3)
  speeds = HalfCheetah(variant="velocity").sample_goals(key, 500)
  directions = HalfCheetah(variant="direction").sample_goals(key, 500)
  assert speeds.shape == directions.shape == (500, 1)
  assert 0.0 <= float(speeds.min()) and float(speeds.max()) <= 2.0
  assert set(np.unique(directions)) == {-1.0, 1.0}
  assert 150 < int(np.sum(directions > 0)) < 350


# ------------------------------------------------------ with brax
@pytest.fixture(scope="module")
def cheetah():
  """The velocity problem of the tiny config, its initial parameters, and
  one jitted program: 2 trajectories and the gradient of a function of
  them with respect to the policy parameters."""
  pytest.importorskip("brax", reason=NO_BRAX)
  _, _, problem = train.build_problem(tiny_config())
  params = problem.init_params(jax.random.key(0))

  def sample_and_grad(params, goal_1, key):
    def of_rollout(params):
      trajectories = problem.environment.rollout(params, goal_1, key, 2)
      value = (jnp.sum(trajectories.obs) + jnp.sum(trajectories.rewards)
               + jnp.sum(jnp.square(trajectories.actions)))
      return value, trajectories
    (_, trajectories), grads = jax.value_and_grad(of_rollout, has_aux=True)(
        params)
    return trajectories, grads

  return problem, params, jax.jit(sample_and_grad)


def test_rewards_are_the_papers_from_the_brax_state():
  pytest.importorskip("brax", reason=NO_BRAX)
  velocity = cheetah_task.make_env(tiny_config().task)
  direction = dataclasses.replace(velocity, variant="direction")
  action_A = jnp.array([1.7, -0.4, 0.0, 0.9, -2.5, 0.3])  # two clipped

  @jax.jit
  def reset_and_step(key):
    state = velocity.reset(key)
    after, reward_v = velocity.step(state, action_A, jnp.array([1.3]))
    # The variants share the physics step; only the reward differs.
    reward_d = direction.reward(after.metrics["x_velocity"],
                                jnp.clip(action_A, -1.0, 1.0),
                                jnp.array([-1.0]))
    return state, after, reward_v, reward_d

  state, after, reward_v, reward_d = reset_and_step(jax.random.key(4))
  x_velocity = float(after.pipeline_state.x.pos[0, 0]
                     - state.pipeline_state.x.pos[0, 0]) / 0.05
  control = 0.05 * (1.0 + 0.16 + 0.0 + 0.81 + 1.0 + 0.09)
  assert abs(x_velocity) > 1e-3  # the step moved the torso
  np.testing.assert_allclose(float(after.metrics["x_velocity"]), x_velocity,
                             rtol=1e-3, atol=1e-5)
  np.testing.assert_allclose(float(reward_v), -abs(x_velocity - 1.3)
                             - control, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(float(reward_d), -x_velocity - control,
                             rtol=1e-4, atol=1e-5)
  assert after.obs.shape == (17,)


def test_rollouts_are_determined_by_the_key(cheetah):
  _, params, sample_and_grad = cheetah
  goal_1 = jnp.array([1.0])
  a, _ = sample_and_grad(params, goal_1, jax.random.key(1))
  b, _ = sample_and_grad(params, goal_1, jax.random.key(1))
  c, _ = sample_and_grad(params, goal_1, jax.random.key(2))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a.actions, c.actions)
  assert a.obs.shape == (2, 5, 17) and a.actions.shape == (2, 5, 6)
  assert a.rewards.shape == a.mask.shape == (2, 5)
  np.testing.assert_array_equal(a.mask, 1.0)  # the cheetah never stops
  assert all(np.isfinite(x).all() for x in a)


def test_no_gradient_leaks_through_the_physics(cheetah):
  _, params, sample_and_grad = cheetah
  _, grads = sample_and_grad(params, jnp.array([0.5]), jax.random.key(3))
  assert jax.tree.structure(grads) == jax.tree.structure(params)
  for leaf in jax.tree.leaves(grads):
    np.testing.assert_array_equal(leaf, 0.0)


def test_evaluation_goals_are_fixed_and_apart_from_validation(cheetah):
  problem = cheetah[0]
  test = problem.eval_tasks("test")["3 goals"].support
  again = problem.eval_tasks("test")["3 goals"].support
  val = problem.eval_tasks("val")["3 goals"].support
  np.testing.assert_array_equal(test, again)
  assert test.shape == (3, 1) and not np.array_equal(test, val)
  np.random.seed(1)  # test_maml_cheetah.py's draw of the velocity goals
  np.testing.assert_allclose(test[:, 0], np.random.uniform(0.0, 2.0, 3),
                             rtol=1e-6)
