"""Conditional and attentive neural processes: the modules' invariances, the
Gaussian likelihood, the meta-gradient, training, and real Omniglot."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algorithm_problems import build_problem_with, tiny_sine_config
from conftest import data_dir_or_none
from metajax.algorithms import cnp
from metajax.core.losses import tree_is_finite
from metajax.core.types import TaskBatch
from metajax.models import neural_process as npm
from metajax.tasks.base import Problem
from metajax.training import cli as main
from metajax.training import trainer as train
from metajax.training.config import ConfigError, override

DATA_DIR = data_dir_or_none()
VARIANTS = ("cnp", "anp")
TINY = {"cnp": {"algorithm.encoder_sizes": (16, 16),
                "algorithm.decoder_sizes": (16,)},
        "anp": {"algorithm.variant": "anp", "algorithm.encoder_sizes": (16, 16),
                "algorithm.decoder_sizes": (16,), "algorithm.heads": 4,
                "algorithm.key_sizes": (8,)}}


def tiny_config(variant, **changes):
  return tiny_sine_config({"algorithm": "cnp", **TINY[variant]}, **changes)


def numpy_init(model, x_width, y_width, seed=0, dtype=np.float32):
  """`model`'s params drawn with numpy (no random-number program to
  compile): LeCun-normal kernels, small random biases."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          jnp.zeros((1, x_width)), jnp.zeros((1, y_width)),
                          jnp.ones((1,)), jnp.zeros((1, x_width)))
  draw = lambda s: (rng.normal(size=s.shape) / math.sqrt(s.shape[0])
                    if len(s.shape) > 1 else 0.1 * rng.normal(size=s.shape))
  return jax.tree.map(lambda s: jnp.asarray(draw(s).astype(dtype)), shapes)


def sine_tasks(num_tasks, support, query, seed=0, dtype=np.float32):
  """MAML's sine tasks, drawn with numpy."""
  rng = np.random.default_rng(seed)
  amplitude = rng.uniform(0.1, 5.0, size=(num_tasks, 1, 1))
  phase = rng.uniform(0.0, math.pi, size=(num_tasks, 1, 1))
  x = rng.uniform(-5.0, 5.0, size=(num_tasks, support + query, 1))
  y = amplitude * np.sin(x - phase)
  cast = lambda a: jnp.asarray(a.astype(dtype))
  return TaskBatch((cast(x[:, :support]), cast(y[:, :support])),
                   (cast(x[:, support:]), cast(y[:, support:])))


def regression_problem(tasks):
  """A regression `Problem` serving `tasks` (an MLP's params, 1 in, 1 out,
  size the neural process; the MLP itself is never run)."""
  mlp = {"params": {"Dense_0": {"kernel": jnp.zeros((1, 4))},
                    "Dense_1": {"kernel": jnp.zeros((4, 1))}}}
  return Problem(kind="regression", model=None,
                 init_params=lambda key: mlp, loss_fn=None, metric_fn=None,
                 train_sampler=lambda key: tasks, evaluate=None,
                 eval_tasks=lambda split="test", num_tasks=None: {
                     "K=5": tasks})


@functools.lru_cache(maxsize=None)
def tiny_model(variant):
  """`(model, params, jitted apply)` of a tiny 1-D Gaussian neural process."""
  model = cnp.build_model(tiny_config(variant), "regression", 1)
  return model, numpy_init(model, 1, 1), jax.jit(model.apply)


def test_sigma_floor_and_the_closed_form_gaussian_nll():
  raw = jnp.array([[0.3, -1e4], [-2.0, 0.0], [1.0, 50.0]])
  mu, sigma = npm.gaussian_from(raw)
  np.testing.assert_array_equal(mu, raw[:, :1])
  np.testing.assert_allclose(
      sigma[:, 0], 0.1 + 0.9 * np.log1p(np.exp([-1e4, 0.0, 50.0])), rtol=1e-6)
  assert sigma.min() == jnp.float32(0.1)  # softplus(-1e4) is 0: the floor
  y = jnp.array([[0.1], [2.0], [-1.0]])
  expected = np.mean(0.5 * np.log(2 * np.pi * np.square(sigma[:, 0]))
                     + np.square(y[:, 0] - mu[:, 0])
                     / (2 * np.square(sigma[:, 0])))
  np.testing.assert_allclose(npm.gaussian_nll(mu, sigma, y), expected,
                             rtol=1e-6)
  # Through a whole model, whatever the inputs, sigma stays >= 0.1.
  _, params, apply = tiny_model("anp")
  x_huge = jnp.linspace(-1e3, 1e3, 7)[:, None]
  _, sigma = apply(params, x_huge, -x_huge, jnp.ones((7,)), x_huge)
  assert np.all(np.asarray(sigma) >= 0.1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_predictions_depend_on_the_support_set_only(variant):
  _, params, apply = tiny_model(variant)
  rng = np.random.default_rng(1)
  x_c, y_c = rng.normal(size=(7, 1)), rng.normal(size=(7, 1))
  x_t = rng.normal(size=(5, 1))
  arrays = lambda *a: [jnp.asarray(v, jnp.float32) for v in a]
  ones = np.ones(7)
  mu, sigma = apply(params, *arrays(x_c, y_c, ones, x_t))
  # Invariant to the order of the support.
  order = rng.permutation(7)
  np.testing.assert_allclose(apply(params, *arrays(
      x_c[order], y_c[order], ones, x_t))[0], mu, rtol=1e-5, atol=1e-6)
  # All queries at once equal one at a time.
  one_at_a_time = jax.vmap(lambda t: apply(params, *arrays(x_c, y_c, ones),
                                           t[None])[0][0])(jnp.asarray(
                                               x_t, jnp.float32))
  np.testing.assert_allclose(one_at_a_time, mu, rtol=1e-5, atol=1e-6)
  # Masked padding: the real rows anywhere, garbage in the rest, equals the
  # real rows alone.
  real = np.array([0, 2, 3, 5])
  padded_x, padded_y = np.full((7, 1), 1e3), np.full((7, 1), -1e3)
  padded_x[real], padded_y[real] = x_c[real], y_c[real]
  mask = np.zeros(7)
  mask[real] = 1.0
  masked = apply(params, *arrays(padded_x, padded_y, mask, x_t))
  subset = apply(params, *arrays(x_c[real], y_c[real], np.ones(4), x_t))
  for got, want in zip(masked, subset):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert not np.allclose(subset[0], mu, atol=1e-3)  # the subset matters
  assert np.all(np.asarray(sigma) >= 0.1)


def test_class_codes_are_per_class_means_and_labels_only_name_them():
  config = tiny_config("cnp")
  model = cnp.build_model(config, "classification", 3)
  params = numpy_init(model, 4, 3)
  rng = np.random.default_rng(2)
  x_s, x_q = rng.normal(size=(6, 4)), rng.normal(size=(5, 4))
  labels = np.array([0, 1, 2, 2, 0, 1])
  logits = jax.jit(lambda x, l: model.apply(
      params, x, jax.nn.one_hot(l, 3), jnp.ones((6,)), jnp.asarray(
          x_q, jnp.float32)))
  base = np.asarray(logits(x_s.astype(np.float32), labels))
  assert base.shape == (5, 3)
  order = rng.permutation(6)
  np.testing.assert_allclose(logits(x_s[order].astype(np.float32),
                                    labels[order]), base, rtol=1e-5, atol=1e-6)
  relabel = np.array([1, 2, 0])  # class c is called relabel[c]
  renamed = np.asarray(logits(x_s.astype(np.float32), relabel[labels]))
  np.testing.assert_allclose(renamed[:, relabel], base, rtol=1e-5, atol=1e-6)
  r = rng.normal(size=(6, 2))
  mask = np.array([1, 1, 0, 1, 1, 1.0])
  expected = np.stack([r[(labels == c) & (mask > 0)].mean(0) for c in range(3)])
  np.testing.assert_allclose(npm.class_means(
      jnp.asarray(r), jax.nn.one_hot(labels, 3), jnp.asarray(mask)), expected,
                             rtol=1e-6)


def test_the_loss_is_the_gaussian_nll_and_evaluation_scores_the_mean(
    monkeypatch):
  tasks = sine_tasks(4, 5, 6)
  monkeypatch.setattr(train, "build_problem", build_problem_with(
      lambda config: regression_problem(tasks)))
  config = tiny_config("anp")
  _, _, problem = train.build_problem(config)
  model, np_params, apply = tiny_model("anp")
  meta_params = {"np": np_params}
  meta_grad_fn = cnp.make_meta_grad(config, problem)
  metrics = jax.jit(lambda p: meta_grad_fn(p, tasks, None, 0)[1])(meta_params)
  nll, mse = [], []
  for t in range(4):
    (x_s, y_s), (x_q, y_q) = jax.tree.map(lambda a: np.asarray(a[t]),
                                          (tasks.support, tasks.query))
    mu, sigma = map(np.asarray, apply(np_params, x_s, y_s, np.ones(5), x_q))
    nll.append(np.mean(np.log(sigma) + 0.5 * np.log(2 * np.pi)
                       + np.square(y_q - mu) / (2 * np.square(sigma))))
    mse.append(np.mean(np.square(y_q - mu)))
  np.testing.assert_allclose(metrics["meta_loss"], np.mean(nll), rtol=1e-5)
  np.testing.assert_allclose(metrics["post_mse"], np.mean(mse), rtol=1e-5)
  results = cnp.evaluate(config, problem, meta_params)
  assert list(results) == ["K=5"] and set(results["K=5"]) == {"mse", "nll"}
  np.testing.assert_allclose(results["K=5"]["mse"]["step_0"]["mean"],
                             np.mean(mse), rtol=1e-5)
  np.testing.assert_allclose(results["K=5"]["nll"]["step_0"]["mean"],
                             np.mean(nll), rtol=1e-5)
  assert results["K=5"]["mse"]["step_0"]["ci95"] > 0


def test_vmapped_meta_gradient_equals_a_loop_over_tasks(monkeypatch, x64):
  del x64
  tasks = sine_tasks(3, 6, 4, dtype=np.float64)
  monkeypatch.setattr(train, "build_problem", build_problem_with(
      lambda config: regression_problem(tasks)))
  # Each task reads a random number (2..6) of its support points.
  config = tiny_config("cnp", algorithm__min_context=2)
  _, _, problem = train.build_problem(config)
  model = cnp.build_model(config, "regression", 1)
  meta_params = {"np": numpy_init(model, 1, 1, dtype=np.float64)}
  key = jax.random.key(3)
  grads, metrics = jax.jit(cnp.make_meta_grad(config, problem))(
      meta_params, tasks, key, 0)

  def task_loss(params, task, task_key):
    (x_s, y_s), (x_q, y_q) = task.support, task.query
    mask = cnp.context_mask(task_key, 6, 2).astype(jnp.float64)
    mu, sigma = model.apply(params["np"], x_s, y_s, mask, x_q)
    return npm.gaussian_nll(mu, sigma, y_q), mask

  one_task = jax.jit(jax.value_and_grad(task_loss, has_aux=True))
  keys = jax.random.split(key, 3)
  per_task = [one_task(meta_params, jax.tree.map(lambda l: l[i], tasks),
                       keys[i]) for i in range(3)]
  counts = [int(mask.sum()) for (_, mask), _ in per_task]
  assert min(counts) >= 2 and len(set(counts)) > 1, counts
  np.testing.assert_allclose(
      metrics["meta_loss"], np.mean([loss for (loss, _), _ in per_task]),
      rtol=1e-12)
  expected = jax.tree.map(lambda *g: np.mean(g, axis=0),
                          *[g for _, g in per_task])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10,
                                                       atol=1e-14),
               grads, expected)
  assert bool(tree_is_finite(grads)) and float(optax.tree.norm(grads)) > 0


def test_a_few_fixed_tasks_are_overfit(monkeypatch):
  tasks = sine_tasks(2, 5, 5, seed=4)
  monkeypatch.setattr(train, "build_problem", build_problem_with(
      lambda config: regression_problem(tasks)))
  config = tiny_config("cnp", algorithm__decoder_sizes=(32, 32))
  _, _, problem = train.build_problem(config)
  meta_params = cnp.init_meta_params(config, problem,
                                   problem.init_params(None))
  meta_grad_fn = cnp.make_meta_grad(config, problem)
  optimizer = optax.adam(3e-3)

  @jax.jit
  def train_on(meta_params):
    def step(carry, _):
      params, opt_state = carry
      grads, metrics = meta_grad_fn(params, tasks, None, 0)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), metrics
    _, metrics = jax.lax.scan(step, (meta_params, optimizer.init(
        meta_params)), None, length=600)
    return metrics

  metrics = jax.tree.map(np.asarray, train_on(meta_params))
  mse, nll = metrics["post_mse"], metrics["meta_loss"]
  assert mse[-1] < 1e-2 * mse[0], mse[::50]
  # The NLL's floor, every mean exact at sigma = 0.1: log 0.1 + log(2 pi)/2.
  floor = math.log(0.1) + 0.5 * math.log(2 * math.pi)
  assert nll[-1] < floor + 0.2, (nll[0], nll[-1], floor)


def test_settings_it_cannot_take_are_config_errors(monkeypatch):
  for changes, field in [({"inner.steps": 5}, "inner.steps"),
                         ({"inner.first_order": True}, "inner.first_order"),
                         ({"algorithm.min_context": 6},
                          "algorithm.min_context")]:
    with pytest.raises(ConfigError, match=f"'{field}'"):
      train.build_problem(tiny_config("cnp", **{
          k.replace(".", "__"): v for k, v in changes.items()}))
  with pytest.raises(ConfigError, match="'algorithm.heads'.*anp"):
    tiny_sine_config(algorithm="cnp", algorithm__heads=4)
  with pytest.raises(ConfigError, match="'algorithm.key_sizes'.*anp"):
    tiny_sine_config(algorithm="cnp", algorithm__key_sizes=(8,))
  with pytest.raises(ConfigError, match="'algorithm.heads'.*divide.*128"):
    tiny_sine_config(algorithm="cnp", algorithm__variant="anp",
                     algorithm__heads=3)
  with pytest.raises(ConfigError, match="'algorithm.variant'"):
    tiny_sine_config(algorithm="cnp", algorithm__variant="np")
  # A problem that is neither regression nor classification.
  control = lambda config: Problem(
      kind="reinforcement", model=None, init_params=None, loss_fn=None,
      metric_fn=None, train_sampler=None, evaluate=None, eval_tasks=None)
  monkeypatch.setattr(train, "build_problem", build_problem_with(control))
  with pytest.raises(ConfigError, match="'task'.*reinforcement"):
    train.build_problem(tiny_config("cnp"))


@pytest.mark.skipif(DATA_DIR is None, reason="no Omniglot data")
def test_one_meta_step_on_real_omniglot_lowers_the_loss():
  # Width 16 and these evaluation tasks, as tests/test_omniglot_algorithms.py
  # uses: in one session the two share their compiled initialisation.
  config = override(main.load_experiment("omniglot_5way1shot_budget_cnp"), {
      "task.data_dir": DATA_DIR, "model.width": 16, "task.eval_queries": 3,
      **TINY["cnp"]})
  _, _, problem = train.build_problem(config)
  meta_params = cnp.init_meta_params(
      config, problem, problem.init_params(jax.random.key(0)))
  assert set(meta_params) == {"body", "np"}
  # The tasks tests/test_omniglot_algorithms.py evaluates on: in one session
  # the compiled sampler is shared too.
  (tasks,) = problem.eval_tasks("test", 2).values()
  meta_grad_fn = cnp.make_meta_grad(config, problem)
  outer = train.make_outer_optimizer(config)

  @jax.jit
  def one_meta_step(meta_params):
    grads, metrics = meta_grad_fn(meta_params, tasks, jax.random.key(0), 0)
    updates, _ = outer.update(grads, outer.init(meta_params), meta_params)
    stepped = optax.apply_updates(meta_params, updates)
    return metrics, meta_grad_fn(stepped, tasks, jax.random.key(0), 1)[1]

  before, after = one_meta_step(meta_params)
  assert np.isfinite(float(before["meta_loss"]))
  assert float(after["meta_loss"]) < float(before["meta_loss"]), (before,
                                                                   after)
