"""Property tests: hostile configs, overrides and task shapes get a clear
error or a correct result, never a crash deep inside JAX."""
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metajax as mj
from experiments import sine
from metajax.training import cli as main
from metajax.training.config import (
    SECTIONS, V1_FIELDS, ConfigError, field_types, override, validate)
from metajax.models import MLP

_CONFIG = sine.get_config()
# Every overridable name of the sine config: each section's dotted fields,
# and the sections chosen by name (task, model, algorithm).
FIELDS = sorted([f"{section}.{name}" for section in SECTIONS
                 for name in field_types(type(getattr(_CONFIG, section)))]
                + ["task", "model", "algorithm"])

SETTINGS = hypothesis.settings(max_examples=60, deadline=None,
                               suppress_health_check=[hypothesis.HealthCheck.too_slow])
texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["0", "-1", "1e9", "nan", "inf", "-inf", "1.5", "true",
                     "3,4", ",", "()", "1e-300", "999999999999999999999"]),
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr))


@SETTINGS
@hypothesis.given(name=st.sampled_from(FIELDS), text=texts)
def test_any_override_is_a_valid_config_or_a_config_error(name, text):
  try:
    config = override(sine.get_config(), {name: text})
  except ConfigError as e:
    assert name in str(e)
    return
  assert validate(config) is config


@SETTINGS
@hypothesis.given(name=st.one_of(
    st.text(min_size=1, max_size=15),
    st.sampled_from(FIELDS).map(lambda n: n + "x"),
    st.sampled_from(sorted(V1_FIELDS))).filter(
        lambda n: n not in FIELDS and n not in SECTIONS))
def test_unknown_fields_are_rejected_by_name(name):
  with pytest.raises(ConfigError, match="unknown config field") as error:
    override(sine.get_config(), {name: "1"})
  if name in V1_FIELDS:  # a schema-1 flat name says where it went
    assert f"it is now {V1_FIELDS[name]!r}" in str(error.value)


@SETTINGS
@hypothesis.given(argv=st.lists(st.one_of(
    st.sampled_from(["sine", "--inner.lr", "--inner.steps=0", "--help=1",
                     "--=", "--", "-x", "seed_linear", "--task.eval_shots=,",
                     "--inner_steps=2", "--algorithm=imaml", "--task=omniglot",
                     "--algorithm.lam=0", "--inner", "--run_dir"]),
    st.text(max_size=8)), max_size=4))
def test_cli_never_crashes_on_bad_arguments(argv):
  # Anything that would start training is replaced by a validation-only run.
  try:
    experiment, overrides, flags = main.parse_args(argv)
    if experiment and "help" not in flags:
      override(main.load_experiment(experiment), overrides)
  except ConfigError as e:
    assert str(e)


_model = MLP(hidden_sizes=(4,), activation="tanh")
_params = _model.init(jax.random.key(0), jnp.zeros((1, 2)))
_inner = mj.InnerLoop(loss_fn=mj.mse_loss(_model.apply), num_steps=1,
                      learning_rate=0.1)


@SETTINGS
@hypothesis.given(
    tasks=st.integers(1, 3), q_tasks=st.integers(1, 3),
    n_support=st.integers(1, 4), n_query=st.integers(1, 4),
    y_support=st.integers(0, 2), y_query=st.integers(0, 2),
    rank=st.integers(1, 3))
def test_task_batch_shapes_give_result_or_clear_error(
    tasks, q_tasks, n_support, n_query, y_support, y_query, rank):
  def leaf(t, n, d):
    shape = (t, n, d)[:rank]
    return jnp.ones(shape)
  batch = mj.TaskBatch((leaf(tasks, n_support, 2), leaf(tasks, n_support, y_support or 1)),
                       (leaf(q_tasks, n_query, 2), leaf(q_tasks, n_query, y_query or 1)))
  well_formed = (rank == 3 and tasks == q_tasks and (y_support or 1) == 1
                 and (y_query or 1) == 1)
  try:
    loss, metrics = mj.meta_objective(_params, batch, _inner)
  except ValueError as e:
    assert not well_formed, e
    assert "task" in str(e) and ("shape" in str(e) or "axis" in str(e))
    return
  assert np.isfinite(float(loss)) and metrics["post_loss"].shape == (tasks,)
  if well_formed:  # the same as the per-task loss computed by hand
    expected = np.mean([mj.maml_task_loss(
        _params, jax.tree.map(lambda l: l[t], batch), _inner)[0]
        for t in range(tasks)])
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
