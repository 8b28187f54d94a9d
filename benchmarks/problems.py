"""The benchmarked problems, as metajax `Config`s, and how each is built.

Sine: MAML's regression (MLP 1-40-40-1, meta-batch 25, K=10). Omniglot:
Conv4, 1-shot, 5-way (15 queries per class, meta-batch 32, inner rate 0.4)
and 20-way (5 queries per class, meta-batch 16, 5 steps at 0.1), as in the
MAML paper; "omniglot5s" is the 5-way problem on Finn's strided Conv4 (the
network the MAML paper trained on Omniglot). Omniglot uses the real images when $METAJAX_DATA_DIR holds them,
else random images of the same shape (a meta-step's cost does not depend on
pixel values); each row says which. Every row times the meta-step alone, as
the PyTorch rows do: the post-adaptation loss and its gradient, without the
pre-adaptation query metrics training logs (`run.pre_metrics=False`).

Configs change through `metajax.training.config.override` (dotted names):
`sine_config(True, {"inner.steps": 3})`, or with `__` for the dot,
`sine_config(True, inner__steps=3)`.
"""
import dataclasses
import itertools
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from metajax import algorithms
from metajax.algorithms.base import InnerConfig
from metajax.core import losses
from metajax.core.meta_step import init_meta_state, make_meta_step
from metajax.models import configs as model_configs
from metajax.tasks.base import EvalConfig
from metajax.tasks.regression import SineConfig
from metajax.training import trainer as train
from metajax.training.config import (
    Config, OuterConfig, RunConfig, override, resolve_formulations, validate)

FAMILIES = ("sine", "omniglot5", "omniglot20", "omniglot5s")
# Omniglot families: (ways, strided); "omniglot5s" is Finn's strided Conv4.
OMNIGLOT = {"omniglot5": (5, False), "omniglot20": (20, False),
            "omniglot5s": (5, True)}
RANDOM_CHARACTERS = 1100  # the MAML split's train characters
NUM_DRAWERS = 20


@dataclasses.dataclass(frozen=True)
class Case:
  """One benchmark row: a name, its family and the config it runs.

  `tasks_given` times the meta-step with its tasks passed in, drawn before
  the timing (`build(..., tasks_given=True)`), instead of drawn inside it.
  """
  name: str
  family: str
  config: Config
  tasks_given: bool = False


def _order(first_order: bool) -> str:
  return "1st" if first_order else "2nd"


def changed(config: Config, changes: Optional[dict] = None,
            **short) -> Config:
  """`override(config, changes)`, plus `short` keywords where `__` stands
  for the dot (`inner__steps=5` is `{"inner.steps": 5}`)."""
  changes = dict(changes or {})
  changes.update({k.replace("__", "."): v for k, v in short.items()})
  return override(config, changes) if changes else validate(config)


def _formulation(name: str) -> str:
  """The suite's `--conv`/`--dense` value as a `formulations` field: 'auto'
  (or '') takes the preset's choice."""
  return "" if name in ("", "auto") else name


def sine_config(quick: bool = False, changes: Optional[dict] = None,
                **short) -> Config:
  """The MAML sine config (tiny widths and batch under `quick`)."""
  config = Config(
      task=SineConfig(support_points=10, query_points=10),
      model=model_configs.MLPConfig(hidden_sizes=(40, 40)),
      algorithm=algorithms.get("maml").config_class(),
      inner=InnerConfig(lr=0.01),
      outer=OuterConfig(lr=1e-3, meta_batch_size=25, num_meta_steps=1000),
      run=RunConfig(log_every=10, pre_metrics=False))
  if quick:
    config = override(config, {
        "model.hidden_sizes": (8, 8), "outer.meta_batch_size": 4,
        "task.support_points": 5, "task.query_points": 5})
  return changed(config, changes, **short)


def omniglot_config(ways: int, quick: bool = False,
                    changes: Optional[dict] = None, **short) -> Config:
  """MAML's Omniglot 1-shot config for `ways` 5 or 20 (tiny under `quick`);
  random images unless `task.data_dir` is set (see `build`)."""
  from metajax.tasks.omniglot.task import OmniglotConfig  # pylint: disable=g-import-not-at-top
  five = ways == 5
  config = Config(
      task=OmniglotConfig(ways=ways, shots=1, queries=15 if five else 5,
                          eval_queries=15),
      model=model_configs.Conv4Config(),
      algorithm=algorithms.get("maml").config_class(),
      inner=InnerConfig(steps=1 if five else 5, lr=0.4 if five else 0.1),
      outer=OuterConfig(lr=1e-3, meta_batch_size=32 if five else 16,
                        num_meta_steps=1000),
      eval=EvalConfig(),
      run=RunConfig(log_every=10, pre_metrics=False))
  if quick:
    config = override(config, {"task.ways": 2, "task.queries": 1,
                               "outer.meta_batch_size": 2})
  return changed(config, changes, **short)


def family_config(family: str, quick: bool = False,
                  changes: Optional[dict] = None, **short) -> Config:
  """The base config of `family` (one of `FAMILIES`)."""
  if family == "sine":
    return sine_config(quick, changes, **short)
  ways, strided = OMNIGLOT[family]
  config = omniglot_config(ways, quick, {"model.strided": True} if strided
                           else None)
  return changed(config, changes, **short)


def cases(family: str, quick: bool = False, conv: str = "auto",
          dense: str = "auto") -> list:
  """The rows of `family`: inner steps x order, plus fused rows for sine.

  `conv` is the Omniglot rows' Conv4 formulation (`formulations.conv`),
  `dense` the sine MLP's layer product (`formulations.dense`); 'auto' (or
  '') leaves it to the preset, as the trainer does.
  """
  if family == "sine":
    dense_change = {"formulations.dense": _formulation(dense)}
    if quick:
      config = sine_config(True, dense_change, inner__steps=2)
      return [Case("sine 2-step 2nd fused x2", family,
                   changed(config, outer__steps_per_call=2)),
              Case("sine 2-step 2nd tasks given", family, config, True)]
    rows = []
    for steps in (1, 5):
      for first_order in (False, True):
        config = sine_config(False, dense_change, inner__steps=steps,
                             inner__first_order=first_order)
        name = f"sine {steps}-step {_order(first_order)}"
        rows.append(Case(name, family, config))
        rows.append(Case(f"{name} fused x10", family,
                         changed(config, outer__steps_per_call=10)))
        if not first_order:
          rows.append(Case(f"{name} tasks given", family, config, True))
    return rows
  ways, strided = OMNIGLOT[family]
  strided_name = " strided" if strided else ""
  conv_change = {"formulations.conv": _formulation(conv)}
  if quick:
    config = family_config(family, True, conv_change)
    return [Case(f"omniglot {ways}-way{strided_name} (2-way quick) "
                 f"{config.inner.steps}-step 2nd", family, config)]
  steps_list = (5,) if ways == 20 else (1,) if strided else (1, 5)
  return [Case(f"omniglot {ways}-way 1-shot{strided_name} {steps}-step "
               f"{_order(fo)}", family,
               family_config(family, False, conv_change, inner__steps=steps,
                             inner__first_order=fo))
          for steps in steps_list for fo in (False, True)]


def select(cases_, rows: str = "") -> list:
  """The cases whose name contains one of the comma-separated `rows` (all
  cases when `rows` is empty), e.g. `"20-way,5-way 1-shot 5-step 1st"`."""
  patterns = [p.strip() for p in rows.split(",") if p.strip()]
  return [c for c in cases_
          if not patterns or any(p in c.name for p in patterns)]


def conv4_missing() -> Optional[str]:
  """Why the Omniglot rows cannot run (None when `Conv4` imports)."""
  try:
    from metajax.models.conv4 import Conv4  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    return f"metajax.models.conv4.Conv4 is not importable ({e})"
  return None


def omniglot_data_dir() -> Optional[str]:
  """$METAJAX_DATA_DIR when it holds `omniglot/`, else None."""
  data_dir = os.environ.get("METAJAX_DATA_DIR", "")
  return data_dir if os.path.isdir(os.path.join(data_dir, "omniglot")) else None


def random_omniglot_split(num_characters: int, seed: int = 0):
  """`OmniglotTasks` of uniformly random binary 28x28 images."""
  from metajax.tasks.omniglot import OmniglotTasks  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  images = 255 * (rng.random((num_characters, NUM_DRAWERS, 28, 28)) < 0.2)
  return OmniglotTasks(jnp.asarray(images.astype(np.uint8)),
                       jnp.arange(num_characters, dtype=jnp.int32))


def _no_evaluation(what: str):
  def unavailable(*args, **kwargs):
    del args, kwargs
    raise NotImplementedError(
        f"{what}: this benchmark Problem (random Omniglot images, built by "
        "benchmarks/problems.py) times meta-steps only and has no "
        "meta-test tasks; evaluate on the real images (task.data_dir)")
  return unavailable


def random_omniglot_problem(config: Config, num_characters: int,
                            backend_name: Optional[str] = None):
  """The Omniglot `Problem` of `config` on random images, its model built
  with the formulations `config` resolves to on `backend_name` (None: this
  backend). It has no evaluation (`evaluate` and `eval_tasks` raise
  NotImplementedError)."""
  from metajax.tasks.omniglot import make_task_sampler  # pylint: disable=g-import-not-at-top
  from metajax.tasks.base import Problem  # pylint: disable=g-import-not-at-top
  validate(config)
  task = config.task
  model_configs.require(config.model, ("conv4",), task.NAME)
  formulations = resolve_formulations(config, backend_name)
  split = random_omniglot_split(num_characters)
  model = model_configs.build(config.model, task.ways, formulations)
  sampler = make_task_sampler(split, ways=task.ways, shots=task.shots,
                              queries=task.queries,
                              num_tasks=config.outer.meta_batch_size)
  return Problem(
      kind="classification", model=model,
      init_params=lambda key: model.init(key, jnp.zeros((1, 28, 28, 1))),
      **losses.classification_fns(model.apply), train_sampler=sampler,
      evaluate=_no_evaluation("Problem.evaluate"),
      eval_tasks=_no_evaluation("Problem.eval_tasks"),
      formulations=formulations, num_classes=task.ways)


def run_from_problem(config: Config, problem) -> train.Run:
  """What `train.build_run` does, for a `problem` built here (one device;
  the problem's formulations decide the task prefetch)."""
  validate(config)
  if config.run.num_devices != 1:
    raise ValueError("run_from_problem builds single-device steps, got "
                     f"run.num_devices={config.run.num_devices}")
  algorithm = algorithms.get(config.algorithm.NAME)
  algorithm.check(config, problem)
  init_key, train_key = jax.random.split(jax.random.key(config.run.seed))
  outer_optimizer = train.make_outer_optimizer(config)
  params = algorithm.init_meta_params(config, problem,
                                  problem.init_params(init_key))
  state = init_meta_state(params, outer_optimizer, train_key)
  prefetch = (problem.formulations.prefetch_tasks
              and config.outer.steps_per_call == 1)
  step_fn = make_meta_step(
      algorithm.make_meta_grad(config, problem), outer_optimizer,
      task_sampler=problem.train_sampler,
      steps_per_call=config.outer.steps_per_call,
      nonfinite_policy=config.outer.nonfinite_policy,
      prefetch_tasks=prefetch)
  return train.Run(config, algorithm, problem, problem.formulations, state,
                   step_fn, outer_optimizer, prefetch)


def build(config: Config, quick: bool = False, tasks_given: bool = False,
          backend_name: Optional[str] = None):
  """`(train.Run, data_description)` for `config`.

  Omniglot runs on the real split when `omniglot_data_dir()` finds it (and
  not under `quick`), else on random images. `tasks_given`: the run's step
  takes its tasks from a few batches drawn up front (`with_tasks_given`).
  `backend_name`: build the program that backend runs, with its
  formulations (`train.build_run(config, backend_name)`); None: this one.
  """
  if tasks_given:
    run, data = build(config, quick, backend_name=backend_name)
    return (with_tasks_given(run),
            f"{data}, {GIVEN_BATCHES} batches drawn before timing")
  if config.task.NAME != "omniglot":
    return (train.build_run(config, backend_name),
            f"synthetic {config.task.NAME} tasks")
  data_dir = None if quick else omniglot_data_dir()
  if data_dir:
    config = override(config, {"task.data_dir": data_dir})
    return (train.build_run(config, backend_name),
            f"Omniglot images from {data_dir}")
  num_characters = 8 if quick else RANDOM_CHARACTERS
  problem = random_omniglot_problem(config, num_characters, backend_name)
  return (run_from_problem(config, problem),
          f"random 28x28 images ({num_characters} characters; "
          "METAJAX_DATA_DIR unset)")


def stateful_step(run: train.Run) -> tuple:
  """`(step, carry)` with `carry, metrics = step(carry)` one call of
  `run.step_fn` from `run.state` (donated).

  With `run.prefetch` the carry is `(state, tasks)`: each call trains on the
  tasks the previous call drew and draws the next call's (the first ones
  from `first_tasks`), as the trainer runs it; else it is the state.
  """
  if not run.prefetch:
    return run.step_fn, run.state
  step_fn = run.step_fn

  def step(carry):
    state, tasks, metrics = step_fn(*carry)
    return (state, tasks), metrics

  return step, (run.state, step_fn.first_tasks(run.state))


GIVEN_BATCHES = 8


def with_tasks_given(run: train.Run) -> train.Run:
  """`run` whose `step_fn(state)` is the jitted `step(state, tasks)` without
  a sampler, on `GIVEN_BATCHES` task batches drawn up front, in turn.

  This times the meta-step alone, as a caller who brings their own tasks
  (a data pipeline) runs it; the other rows draw tasks inside the step.
  """
  if run.config.outer.steps_per_call != 1:
    raise ValueError(
        "tasks_given times unfused steps (outer.steps_per_call=1), got "
        f"outer.steps_per_call={run.config.outer.steps_per_call}")
  step = make_meta_step(run.algorithm.make_meta_grad(run.config, run.problem),
                        run.outer_optimizer,
                        nonfinite_policy=run.config.outer.nonfinite_policy)
  draw = jax.jit(run.problem.train_sampler)
  batches = [draw(key) for key in jax.random.split(jax.random.key(1),
                                                   GIVEN_BATCHES)]
  next_batch = itertools.cycle(batches).__next__

  def step_fn(state):
    return step(state, next_batch())

  step_fn.lower = lambda state: step.lower(state, batches[0])
  return dataclasses.replace(run, step_fn=step_fn, prefetch=False)
