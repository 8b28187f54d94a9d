"""Property tests: hostile configs, overrides, command lines and task shapes
get a clear error or a correct result; a failing loss keeps its own error."""
import contextlib
import io

import flax.errors
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metajax as mj
from experiments import sine
from metajax.training import cli as main
from metajax.training import trainer
from metajax.training.config import (
    SECTIONS, V1_FIELDS, ConfigError, field_types, override, to_dict,
    validate)
from metajax.training.run_io import write_json
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


OPTIONS = st.sampled_from([
    "--help", "-h", "--resume", "--eval_only", "--no_progress",
    "--run_dir=saved", "--run_dir=empty", "--run_dir", "--inner.lr",
    "--inner.steps=0", "--inner.steps=3", "--help=1", "--=", "--", "-x",
    "--task.eval_shots=,", "--inner_steps=2", "--algorithm=imaml",
    "--task=omniglot", "--algorithm.lam=0", "--inner", "--outer.lr=1e-2"])
WORDS = st.one_of(OPTIONS, st.sampled_from(["sine", "seed_linear"]),
                  st.text(max_size=8))
# Any words; or an experiment first, as a user would write, then options.
ARGVS = st.one_of(
    st.lists(WORDS, max_size=4),
    st.builds(lambda name, rest: [name] + rest,
              st.sampled_from(["sine", "seed_linear"]),
              st.lists(st.one_of(OPTIONS, OPTIONS, OPTIONS, WORDS), max_size=4)))
# The saved run that --run_dir=saved names (under the module's folder).
SAVED_STEPS = 120


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory):
  """A working folder holding `saved/config.json` (a sine run of
  `SAVED_STEPS` meta-steps) and an `empty/` folder with no run."""
  root = tmp_path_factory.mktemp("cli")
  saved = override(sine.get_config(),
                   {"outer.num_meta_steps": str(SAVED_STEPS)})
  write_json(str(root / "saved" / "config.json"),
             {"experiment": "sine", **to_dict(saved)})
  (root / "empty").mkdir()
  return root


def run_cli(argv, folder):
  """`main.main(argv)` run in `folder` with training and evaluation stubbed.

  Returns `(exit code, stdout, stderr, calls)`; `calls` lists
  `(name, config, run_dir, resume)` for each stub called, so nothing
  compiles: what is under test is parsing and validation.
  """
  calls = []

  def fake_train(config, run_dir, experiment="", progress=True,
                 resume=False):
    del experiment, progress
    calls.append(("train", config, run_dir, resume))
    return {"evaluation": {}}

  def fake_evaluate_saved(config, run_dir):
    calls.append(("evaluate_saved", config, run_dir, False))
    return {"evaluation": {}}

  out, err = io.StringIO(), io.StringIO()
  with pytest.MonkeyPatch.context() as patch:
    patch.chdir(folder)
    patch.setattr(trainer, "train", fake_train)
    patch.setattr(trainer, "evaluate_saved", fake_evaluate_saved)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      code = main.main(list(argv))
  return code, out.getvalue(), err.getvalue(), calls


@hypothesis.settings(max_examples=200, deadline=None, suppress_health_check=[
    hypothesis.HealthCheck.too_slow])
@hypothesis.given(argv=ARGVS)
@hypothesis.example(argv=["sine", "--run_dir", "--resume"])
@hypothesis.example(argv=["sine", "--run_dir", "--eval_only", "--eval_only"])
def test_cli_never_crashes_on_bad_arguments(cli_dir, argv):
  # The real entry point: it returns an exit code, whatever the arguments.
  code, out, err, calls = run_cli(argv, cli_dir)
  assert code in (0, 2), (code, err)
  usage = out.startswith("usage: python -m metajax")
  if code == 2:  # an error line, or the usage when no experiment is named
    assert not calls
    assert err.startswith("error: ") or (usage and not err), (out, err)
    return
  assert not err
  if not calls:  # --help
    assert usage and ({"--help", "-h"} & set(argv)), out
    return
  [(name, config, run_dir, resume)] = calls
  assert validate(config) is config
  assert out.endswith(f"run directory: {run_dir}\n")
  given = lambda flag: flag in argv  # `--run_dir --FLAG` is an error above
  assert resume == given("--resume")
  assert (name == "evaluate_saved") == given("--eval_only")


@pytest.mark.parametrize("argv,code,message", [
    (["--help"], 0, "usage: "),
    (["sine", "-h"], 0, "usage: "),
    ([], 2, "error: no EXPERIMENT given"),  # and the usage on stdout
    (["sine", "--run_dir", "--resume"], 2,
     "error: option --run_dir needs a value (--run_dir=VALUE)"),
    (["seed_linear", "--eval_only", "--run_dir=saved"], 2,
     "error: --eval_only: 'saved' holds a run of experiment 'sine', not "
     "'seed_linear'"),
    (["sine", "--resume"], 2, "error: --resume needs --run_dir=DIR"),
    (["--resume", "--run_dir=empty"], 2,
     "error: no run in 'empty' (missing empty/config.json)"),
    (["seed_linear", "--resume", "--run_dir=saved"], 2,
     "error: --resume: 'saved' holds a run of experiment 'sine', not "
     "'seed_linear'"),
    (["sine", "--inner.lr"], 2,
     "error: option --inner.lr needs a value (--inner.lr=VALUE)"),
    (["sine", "--inner_steps=2"], 2, "error: unknown config field "
     "'inner_steps': it is now 'inner.steps'"),
    (["sine", "extra"], 2, "error: unexpected argument 'extra'"),
    (["sine", "--eval_only", "--run_dir=saved", "--inner.lr=x"], 2,
     "error: config field 'inner.lr': expected a number"),
])
def test_cli_exit_codes_and_messages(cli_dir, argv, code, message):
  got, out, err, calls = run_cli(argv, cli_dir)
  assert (got, calls) == (code, [])
  assert (err if message.startswith("error: ") else out).startswith(message)


@pytest.mark.parametrize("argv,name,resume", [
    (["--resume", "--run_dir=saved", "--outer.lr=0.5"], "train", True),
    (["sine", "--resume", "--run_dir=saved"], "train", True),
    (["sine", "--eval_only", "--run_dir=saved", "--outer.lr=0.5"],
     "evaluate_saved", False),
    (["sine", "--run_dir", "saved", "--eval_only"], "evaluate_saved", False),
    (["--eval_only", "--run_dir=saved"], "evaluate_saved", False),
])
def test_cli_resume_and_eval_only_use_the_saved_config(cli_dir, argv, name,
                                                       resume):
  code, out, _, calls = run_cli(argv, cli_dir)
  assert code == 0, out
  [(called, config, run_dir, resumed)] = calls
  assert (called, run_dir, resumed) == (name, "saved", resume)
  assert config.outer.num_meta_steps == SAVED_STEPS
  assert config.outer.lr == (0.5 if "--outer.lr=0.5" in argv else 1e-3)


def test_cli_trains_the_overridden_experiment(cli_dir):
  code, _, _, calls = run_cli(
      ["sine", "--outer.num_meta_steps=70", "--run_dir=new"], cli_dir)
  [(called, config, run_dir, resume)] = calls
  assert (code, called, run_dir, resume) == (0, "train", "new", False)
  assert config == override(sine.get_config(), {"outer.num_meta_steps": 70})


def test_cli_rejects_an_experiment_without_get_config(cli_dir):
  code, _, err, _ = run_cli(["__init__"], cli_dir)
  assert code == 2 and err.startswith("error: ") and "get_config()" in err


_model = MLP(hidden_sizes=(4,), activation="tanh")
_params = _model.init(jax.random.key(0), jnp.zeros((1, 2)))
_inner = mj.InnerLoop(loss_fn=mj.mse_loss(_model.apply), num_steps=1,
                      learning_rate=0.1)
# Jitted (one compile per shape) to keep the examples fast; a shape error is
# raised while tracing, under jit as without it.
_objective = jax.jit(lambda batch: mj.meta_objective(_params, batch, _inner))
_one_task_at_a_time = jax.jit(lambda batch: jax.lax.map(
    lambda task: mj.maml_task_loss(_params, task, _inner)[0], batch))


def _expected_failure(tasks, q_tasks, n_support, n_query, y_support, y_query,
                      rank):
  """`(exception type, message or note)` that `meta_objective` must raise
  for these shapes, in the order `check_task_batch` checks them; None where
  it must return a result. x leaves have 2 features, the model's input."""
  shape = lambda t, n, d: (t, n, d)[:rank]
  support = [shape(tasks, n_support, 2), shape(tasks, n_support, y_support)]
  query = [shape(q_tasks, n_query, 2), shape(q_tasks, n_query, y_query)]
  if rank == 1:
    return ValueError, (f"task batch field support[0] has shape {support[0]};"
                        " every leaf needs shape (tasks, examples, ...)")
  if tasks != q_tasks:
    sizes = {"support[0]": tasks, "support[1]": tasks,
             "query[0]": q_tasks, "query[1]": q_tasks}
    return ValueError, ("support and query must share the leading task "
                        f"axis; got task-axis sizes {sizes}")
  if rank == 3 and y_support != y_query:
    return ValueError, (
        "task batch fields support[1] and query[1] must have the same "
        "per-example shape (after the task and example axes); got shapes "
        f"{support[1]} and {query[1]}")
  if rank == 2 and (n_support, n_query) != (2, 2):
    # Each task's x is a vector of n features; the model was built for 2.
    # Nothing in the batch's shapes says so: the model's error propagates.
    batch = mj.TaskBatch(tuple(support), tuple(query))
    return flax.errors.ScopeParamShapeError, (
        "raised by the per-task loss, vmapped over the leading task axis of "
        f"a task batch with shapes {batch}")
  return None


@SETTINGS
@hypothesis.given(
    tasks=st.integers(1, 3), q_tasks=st.integers(1, 3),
    n_support=st.integers(1, 4), n_query=st.integers(1, 4),
    y_support=st.integers(1, 2), y_query=st.integers(1, 2),
    rank=st.integers(1, 3))
# Every branch of `_expected_failure` at least once, whatever is drawn.
@hypothesis.example(tasks=2, q_tasks=2, n_support=3, n_query=4, y_support=1,
                    y_query=1, rank=3)
@hypothesis.example(tasks=2, q_tasks=2, n_support=3, n_query=4, y_support=2,
                    y_query=2, rank=3)
@hypothesis.example(tasks=2, q_tasks=2, n_support=2, n_query=2, y_support=1,
                    y_query=1, rank=2)
@hypothesis.example(tasks=2, q_tasks=2, n_support=2, n_query=3, y_support=1,
                    y_query=1, rank=2)
@hypothesis.example(tasks=2, q_tasks=2, n_support=3, n_query=3, y_support=2,
                    y_query=1, rank=3)
@hypothesis.example(tasks=2, q_tasks=3, n_support=3, n_query=3, y_support=1,
                    y_query=1, rank=3)
@hypothesis.example(tasks=2, q_tasks=3, n_support=3, n_query=3, y_support=1,
                    y_query=1, rank=1)
def test_task_batch_shapes_give_result_or_clear_error(
    tasks, q_tasks, n_support, n_query, y_support, y_query, rank):
  leaf = lambda t, n, d: jnp.ones((t, n, d)[:rank])
  batch = mj.TaskBatch(
      (leaf(tasks, n_support, 2), leaf(tasks, n_support, y_support)),
      (leaf(q_tasks, n_query, 2), leaf(q_tasks, n_query, y_query)))
  expected = _expected_failure(tasks, q_tasks, n_support, n_query, y_support,
                               y_query, rank)
  if expected is not None:
    error_type, text = expected
    with pytest.raises(Exception) as error:
      _objective(batch)
    assert type(error.value) is error_type, error.value
    if error_type is ValueError:  # from check_task_batch, before tracing
      assert str(error.value) == text
    else:  # the model's own error, with the batch's shapes as a note (JAX
      # may add its own note on traceback filtering)
      assert error.value.__notes__.count(text) == 1, error.value.__notes__
    return
  loss, metrics = _objective(batch)
  assert metrics["post_loss"].shape == (tasks,)
  # The mean of the per-task losses computed one task at a time.
  per_task = _one_task_at_a_time(batch)
  assert per_task.shape == (tasks,) and np.all(np.isfinite(per_task))
  np.testing.assert_allclose(float(loss), np.mean(per_task), rtol=1e-5)


def test_unrelated_loss_error_propagates_as_itself_with_a_note():
  raised = []

  def loss_fn(params, batch):
    raised.append(KeyError("no such layer"))
    raise raised[-1]

  inner = mj.InnerLoop(loss_fn=loss_fn, num_steps=1, learning_rate=0.1)
  batch = mj.TaskBatch((jnp.ones((3, 4, 2)), jnp.ones((3, 4, 1))),
                       (jnp.ones((3, 5, 2)), jnp.ones((3, 5, 1))))
  with pytest.raises(KeyError) as error:
    mj.meta_objective(_params, batch, inner)
  note = ("raised by the per-task loss, vmapped over the leading task axis of "
          "a task batch with shapes TaskBatch(support=((3, 4, 2), (3, 4, 1)), "
          "query=((3, 5, 2), (3, 5, 1)))")
  assert error.value is raised[0] and len(raised) == 1
  assert error.value.args == ("no such layer",)
  assert error.value.__notes__.count(note) == 1, error.value.__notes__
  # The meta-gradient (what a meta-step traces) lets it through the same way.
  raised.clear()
  with pytest.raises(KeyError) as error:
    jax.grad(lambda p: mj.meta_objective(p, batch, inner)[0])(_params)
  assert error.value is raised[0]
  assert error.value.__notes__.count(note) == 1, error.value.__notes__


def test_empty_task_batch_is_rejected_before_tracing():
  with pytest.raises(ValueError, match=r"^a task batch needs arrays in "
                     r"support and query, got TaskBatch\(support=\(\), "
                     r"query=\(\)\)$"):
    mj.meta_objective(_params, mj.TaskBatch((), ()), _inner)
