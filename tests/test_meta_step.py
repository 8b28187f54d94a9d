"""The jitted meta-step: traced once, deterministic, guarded, fusable."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metajax as mj
from experiments import sine
from metajax.training import trainer as train
from metajax.models import MLP
from metajax.tasks import sample_sine_tasks


def _tiny_config(**changes):
  base = dataclasses.replace(
      sine.get_config(), hidden_sizes=(8,), meta_batch_size=4, num_support=5,
      num_query=5, num_meta_steps=20, steps_per_call=1, log_every=10,
      eval_num_tasks=20, eval_num_query=10)
  return dataclasses.replace(base, **changes)


def _leaves_equal(a, b):
  return all(np.array_equal(x, y) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_meta_step_is_traced_once_across_many_calls():
  model = MLP(hidden_sizes=(8,))
  traces = []

  def loss_fn(params, batch):
    traces.append(1)  # runs only while tracing
    return mj.mse_loss(model.apply)(params, batch)

  inner = mj.InnerLoop(loss_fn=loss_fn, num_steps=2, learning_rate=0.01)
  optimizer = optax.adam(1e-3)
  state = mj.init_meta_state(model.init(jax.random.key(0), jnp.zeros((1, 1))),
                             optimizer, jax.random.key(1))
  step = mj.make_meta_step(mj.maml_meta_grad(inner), optimizer,
                           task_sampler=lambda k: sample_sine_tasks(k, 3, 4, 4)[0])
  state, _ = step(state)
  traced = len(traces)
  for _ in range(10):
    state, metrics = step(state)
  assert len(traces) == traced
  assert int(state.step) == 11
  assert step.cache_size() == 1


def test_same_seed_gives_bit_identical_results():
  config = _tiny_config()
  results = []
  for _ in range(2):
    run = train.build_run(config)
    state = run.state
    for _ in range(5):
      state, metrics = run.step_fn(state)
    results.append((state.params, metrics))
  assert _leaves_equal(results[0], results[1])
  other = train.build_run(_tiny_config(seed=1))
  assert not _leaves_equal(other.state.params, results[0][0])


def test_fused_meta_steps_equal_single_steps():
  single = train.build_run(_tiny_config())
  fused = train.build_run(_tiny_config(steps_per_call=5))
  state = single.state
  for _ in range(5):
    state, _ = single.step_fn(state)
  fused_state, fused_metrics = fused.step_fn(fused.state)
  assert fused_metrics["meta_loss"].shape == (5,)
  for a, b in zip(jax.tree.leaves(state.params),
                  jax.tree.leaves(fused_state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_prefetched_tasks_equal_the_tasks_drawn_for_any_other_state():
  # Each unfused call draws the next step's tasks and keeps them for the state
  # it returned. Called with that state the step uses them; called with a copy
  # (another object) it draws the tasks first. Same results, bit for bit.
  config = _tiny_config()
  chained, copied = train.build_run(config), train.build_run(config)
  copy = lambda state: jax.tree.map(jnp.copy, state)
  a, b = chained.state, copied.state
  for _ in range(4):
    a, metrics_a = chained.step_fn(a)
    assert chained.step_fn.prefetched["state"] is a
    b, metrics_b = copied.step_fn(copy(b))
    assert _leaves_equal((a.params, a.opt_state, metrics_a),
                         (b.params, b.opt_state, metrics_b))
  assert int(a.step) == int(b.step) == 4
  assert chained.step_fn.cache_size() == 1


def test_step_without_prefetch_draws_the_same_tasks(monkeypatch):
  # prefetch_tasks=False draws each step's own tasks inside its call: the
  # same tasks, so the same training up to float reassociation.
  config = _tiny_config()
  prefetching = train.build_run(config)
  monkeypatch.setattr(train, "make_meta_step", functools.partial(
      mj.make_meta_step, prefetch_tasks=False))
  plain = train.build_run(config)
  assert not hasattr(plain.step_fn, "prefetched")
  a, b = prefetching.state, plain.state
  for _ in range(4):
    a, metrics_a = prefetching.step_fn(a)
    b, metrics_b = plain.step_fn(b)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5),
                 metrics_a, metrics_b)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5,
                                                       atol=1e-6),
               a.params, b.params)
  assert int(b.step) == 4


def test_meta_training_lowers_the_post_adaptation_loss():
  config = _tiny_config(num_meta_steps=300, steps_per_call=10, hidden_sizes=(20,))
  run = train.build_run(config)
  held_out, _ = sample_sine_tasks(jax.random.key(99), 200, 5, 20)
  inner = mj.InnerLoop(loss_fn=run.problem.loss_fn, num_steps=1,
                       learning_rate=config.inner_lr)
  before = float(mj.meta_objective(run.state.params, held_out, inner)[0])
  state = run.state
  for _ in range(30):
    state, _ = run.step_fn(state)
  after = float(mj.meta_objective(state.params, held_out, inner)[0])
  assert after < 0.8 * before


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_nonfinite_step_never_reaches_the_params(policy):
  model = MLP(hidden_sizes=(4,))
  inner = mj.InnerLoop(loss_fn=mj.mse_loss(model.apply), num_steps=1)
  optimizer = optax.sgd(0.1)
  params = model.init(jax.random.key(0), jnp.zeros((1, 1)))
  state = mj.init_meta_state(params, optimizer, jax.random.key(1))
  step = mj.make_meta_step(mj.maml_meta_grad(inner), optimizer,
                           nonfinite_policy=policy)
  good, _ = sample_sine_tasks(jax.random.key(2), 2, 3, 3)
  bad = good._replace(query=(good.query[0], good.query[1].at[0, 0, 0].set(jnp.nan)))
  state, _ = step(state, good)
  after_good = jax.tree.map(np.asarray, state.params)
  state, metrics = step(state, bad)
  assert int(metrics["nonfinite"]) == 1
  assert _leaves_equal(state.params, after_good)
  assert int(state.first_nonfinite_step) == 1
  state, _ = step(state, good)
  assert int(state.nonfinite_count) == 1
  # "stop" freezes at the last good state; "skip" goes on with good batches.
  assert _leaves_equal(state.params, after_good) == (policy == "stop")


def test_query_scoring_runs_the_model_once_with_loss_and_metrics_fn():
  model = MLP(hidden_sizes=(8,), output_size=3)
  x = jax.random.normal(jax.random.key(0), (4, 6, 2))
  labels = jnp.tile(jnp.arange(3).repeat(2), (4, 1))
  tasks = mj.TaskBatch((x, labels), (x, labels))
  params = model.init(jax.random.key(1), x[0])
  calls = []

  def counted_apply(p, inputs):
    calls.append(inputs.shape)
    return model.apply(p, inputs)

  both = mj.InnerLoop(num_steps=1, learning_rate=0.1, pre_metrics=False,
                      **mj.classification_fns(counted_apply))
  separate = dataclasses.replace(both, loss_and_metrics_fn=None)

  def objective_and_model_calls(inner):
    calls.clear()
    return mj.meta_objective(params, tasks, inner), len(calls)

  (loss_both, metrics_both), calls_both = objective_and_model_calls(both)
  (loss_sep, metrics_sep), calls_sep = objective_and_model_calls(separate)
  assert calls_sep == calls_both + 1  # the separate accuracy forward
  np.testing.assert_allclose(loss_both, loss_sep, rtol=1e-6)
  assert set(metrics_both) == set(metrics_sep) >= {"post_accuracy"}
  for name in metrics_both:
    np.testing.assert_allclose(metrics_both[name], metrics_sep[name],
                               rtol=1e-6)
