"""The jitted meta-step: traced once, deterministic, guarded, fusable."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metajax as mj
from algorithm_problems import take_steps, tiny_sine_config
from metajax.core.meta_step import tasks_of_step
from metajax.training import trainer as train
from metajax.models import MLP
from metajax.tasks import sample_sine_tasks


def _leaves_equal(a, b):
  return all(np.array_equal(x, y) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _sine_step_parts(hidden=(8,), inner_steps=2):
  """Params, the MAML meta-gradient and an in-jit sine sampler."""
  model = MLP(hidden_sizes=hidden)
  params = model.init(jax.random.key(0), jnp.zeros((1, 1)))
  inner = mj.InnerLoop(loss_fn=mj.mse_loss(model.apply),
                       num_steps=inner_steps, learning_rate=0.01)
  sampler = lambda k: sample_sine_tasks(k, 3, 4, 4)[0]
  return params, mj.maml_meta_grad(inner), sampler


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
  config = tiny_sine_config()
  results = []
  for _ in range(2):
    run = train.build_run(config)
    state, history = take_steps(run, 5)
    results.append((state.params, history[-1]))
  assert _leaves_equal(results[0], results[1])
  other = train.build_run(tiny_sine_config(run__seed=1))
  assert not _leaves_equal(other.state.params, results[0][0])


def test_fused_meta_steps_equal_single_steps():
  single = train.build_run(tiny_sine_config())
  fused = train.build_run(tiny_sine_config(outer__steps_per_call=5))
  state, _ = take_steps(single, 5)
  fused_state, fused_metrics = fused.step_fn(fused.state)
  assert fused_metrics["meta_loss"].shape == (5,)
  for a, b in zip(jax.tree.leaves(state.params),
                  jax.tree.leaves(fused_state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_prefetched_tasks_equal_the_tasks_drawn_for_any_other_state():
  # A PrefetchingStep returns the next step's tasks beside the state; the
  # caller carries them to the next call. They are the tasks `first_tasks`
  # draws for that state (here for a copy, another object), so a run fed
  # freshly drawn tasks at every call trains the same, bit for bit.
  config = tiny_sine_config(formulations__prefetch_tasks="true")
  chained, fresh = train.build_run(config), train.build_run(config)
  assert chained.prefetch
  assert isinstance(chained.step_fn, mj.PrefetchingStep)
  copy = lambda tree: jax.tree.map(jnp.copy, tree)
  a, b = chained.state, fresh.state
  tasks = chained.step_fn.first_tasks(a)
  for _ in range(4):
    a, tasks, metrics_a = chained.step_fn(a, tasks)
    assert _leaves_equal(tasks, chained.step_fn.first_tasks(copy(a)))
    b, _, metrics_b = fresh.step_fn(b, fresh.step_fn.first_tasks(copy(b)))
    assert _leaves_equal((a.params, a.opt_state, metrics_a),
                         (b.params, b.opt_state, metrics_b))
  assert int(a.step) == int(b.step) == 4
  assert chained.step_fn.cache_size() == 1


def test_step_without_prefetch_draws_the_same_tasks():
  # formulations.prefetch_tasks=false: each step draws its own tasks inside
  # its call, the same tasks, so the same training up to float
  # reassociation.
  prefetching = train.build_run(
      tiny_sine_config(formulations__prefetch_tasks="true"))
  plain = train.build_run(
      tiny_sine_config(formulations__prefetch_tasks="false"))
  assert prefetching.prefetch and not plain.prefetch
  assert not isinstance(plain.step_fn, mj.PrefetchingStep)
  a, b = prefetching.state, plain.state
  tasks = prefetching.step_fn.first_tasks(a)
  for _ in range(4):
    a, tasks, metrics_a = prefetching.step_fn(a, tasks)
    b, metrics_b = plain.step_fn(b)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5),
                 metrics_a, metrics_b)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5,
                                                       atol=1e-6),
               a.params, b.params)
  assert int(b.step) == 4


def test_prefetching_step_trains_like_the_plain_step():
  # The same tasks and the same update; XLA compiles the meta-gradient of
  # in-program tasks with different float rounding, so equal to ~1 ulp.
  params, grad_fn, sampler = _sine_step_parts()
  optimizer = optax.adam(1e-2)
  plain = mj.make_meta_step(grad_fn, optimizer, task_sampler=sampler)
  prefetching = mj.make_meta_step(grad_fn, optimizer, task_sampler=sampler,
                                  prefetch_tasks=True)
  assert isinstance(prefetching, mj.PrefetchingStep)
  assert not isinstance(plain, mj.PrefetchingStep)
  a = mj.init_meta_state(params, optimizer, jax.random.key(1))
  b = mj.init_meta_state(params, optimizer, jax.random.key(1))
  tasks = prefetching.first_tasks(b)
  for _ in range(3):
    a, metrics_a = plain(a)
    b, tasks, metrics_b = prefetching(b, tasks)
    for x, y in zip(jax.tree.leaves((a.params, a.opt_state, metrics_a)),
                    jax.tree.leaves((b.params, b.opt_state, metrics_b))):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
  assert int(a.step) == int(b.step) == 3
  assert not _leaves_equal(a.params, params)  # the steps did train
  assert prefetching.cache_size() == 1


def test_prefetching_step_equals_the_step_given_the_same_tasks_bit_for_bit():
  # The tasks-in step (no sampler) fed `tasks_of_step`'s tasks runs the same
  # update program on the same inputs as the PrefetchingStep.
  params, grad_fn, sampler = _sine_step_parts()
  optimizer = optax.adam(1e-2)
  given = mj.make_meta_step(grad_fn, optimizer)
  prefetching = mj.make_meta_step(grad_fn, optimizer, task_sampler=sampler,
                                  prefetch_tasks=True)
  a = mj.init_meta_state(params, optimizer, jax.random.key(1))
  b = mj.init_meta_state(params, optimizer, jax.random.key(1))
  tasks = prefetching.first_tasks(b)
  for _ in range(3):
    own = jax.jit(tasks_of_step, static_argnums=2)(a.key, a.step, sampler)
    assert _leaves_equal(own, tasks)
    a, metrics_a = given(a, own)
    b, tasks, metrics_b = prefetching(b, tasks)
    assert _leaves_equal((a.params, a.opt_state, metrics_a),
                         (b.params, b.opt_state, metrics_b))
  assert int(a.step) == int(b.step) == 3


@pytest.mark.parametrize("prefetch", [False, True])
def test_init_meta_state_leaves_the_callers_params_usable(prefetch):
  params, grad_fn, sampler = _sine_step_parts()
  initial = jax.tree.map(np.array, params)  # host copies
  optimizer = optax.adam(1e-2)
  step = mj.make_meta_step(grad_fn, optimizer, task_sampler=sampler,
                           prefetch_tasks=prefetch)
  state = mj.init_meta_state(params, optimizer, jax.random.key(1))
  tasks = step.first_tasks(state) if prefetch else None
  for _ in range(4):
    previous = state
    if prefetch:
      state, tasks, _ = step(state, tasks)
    else:
      state, _ = step(state)
  # The step donates its input state: the previous state's buffers are gone
  # (the caller's would be, had the state held them) ...
  assert all(leaf.is_deleted() for leaf in jax.tree.leaves(previous.params))
  # ... and the caller's params are alive and unchanged.
  assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(params))
  assert _leaves_equal(params, initial)
  assert not _leaves_equal(state.params, initial)  # the steps did train
  # They still work as params: a new state starts from them.
  again = mj.init_meta_state(params, optimizer, jax.random.key(1))
  assert _leaves_equal(again.params, initial)


def test_meta_training_lowers_the_post_adaptation_loss():
  config = tiny_sine_config(outer__num_meta_steps=300,
                            outer__steps_per_call=10,
                            model__hidden_sizes=(20,))
  run = train.build_run(config)
  held_out, _ = sample_sine_tasks(jax.random.key(99), 200, 5, 20)
  inner = mj.InnerLoop(loss_fn=run.problem.loss_fn, num_steps=1,
                       learning_rate=config.inner.lr)
  before = float(mj.meta_objective(run.state.params, held_out, inner)[0])
  state, _ = take_steps(run, 30)
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
