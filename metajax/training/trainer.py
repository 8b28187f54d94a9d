"""The one trainer: builds the jitted meta-step from a config and runs it.

Metrics are fetched one logging call late so the host never waits on the
device; nothing is converted to Python per step.
"""
import dataclasses
import functools
import json
import os
import time
import warnings
from typing import Any

import jax
import optax
import tqdm

from metajax import algorithms, tasks
from metajax.algorithms.base import Algorithm
from metajax.backend import Formulations
from metajax.core.inner import with_line_search
from metajax.core.meta_step import init_meta_state, make_meta_step
from metajax.parallel import sharding
from metajax.settings import ConfigError
from metajax.tasks.base import Problem
from metajax.training import plots, run_io
from metajax.training.checkpoint import Checkpointer
from metajax.training.config import (
    Config, resolve_formulations, to_dict, validate)


class NonFiniteError(RuntimeError):
  """Training met a non-finite loss or gradient under the "stop" policy."""


@dataclasses.dataclass
class Run:
  """The pieces of a run, built once from a config.

  `step_fn` is `step(state) -> (state, metrics)`, or with `prefetch`
  `step(state, tasks) -> (state, next_tasks, metrics)` whose first tasks
  come from `step_fn.first_tasks(state)`. `first_tasks` and `call` run
  either form the same way:

    tasks = run.first_tasks(state)
    state, tasks, metrics = run.call(state, tasks)
  """
  config: Config
  algorithm: Algorithm
  problem: Problem
  formulations: Formulations
  state: Any
  step_fn: Any
  outer_optimizer: optax.GradientTransformation
  prefetch: bool

  def first_tasks(self, state):
    """The first call's tasks under `prefetch`, else None."""
    return self.step_fn.first_tasks(state) if self.prefetch else None

  def call(self, state, tasks):
    """One call of the step: `(state, next call's tasks, metrics)`."""
    if self.prefetch:
      return self.step_fn(state, tasks)
    state, metrics = self.step_fn(state)
    return state, None, metrics


def make_outer_optimizer(config: Config):
  """The outer optimizer, with `outer.schedule` over the meta-steps."""
  outer = config.outer
  learning_rate = outer.lr
  if outer.schedule == "cosine":  # MAML++
    learning_rate = optax.cosine_decay_schedule(outer.lr, outer.num_meta_steps)
  elif outer.schedule == "linear":  # Reptile's annealed epsilon
    learning_rate = optax.linear_schedule(outer.lr, 0.0, outer.num_meta_steps)
  if outer.optimizer == "sgd":
    return optax.sgd(learning_rate)
  return optax.adam(learning_rate)


def _sharded(config: Config, state):
  """`(make_step, state)` over `run.num_devices` devices, state replicated."""
  try:
    mesh = sharding.make_task_mesh(config.run.num_devices)
    sharding.check_divisible(config.outer.meta_batch_size, mesh)
  except ValueError as error:
    raise ConfigError(f"config field 'run.num_devices': {error}") from None
  make_step = functools.partial(sharding.make_sharded_meta_step, mesh=mesh)
  return make_step, sharding.replicate_state(state, mesh)


def build_problem(config: Config, backend_name=None) -> tuple:
  """`(algorithm, formulations, problem)` for a validated `config`."""
  validate(config)
  algorithm = algorithms.get(config.algorithm.NAME)
  formulations = resolve_formulations(config, backend_name)
  problem = tasks.get(config.task.NAME).build(config, formulations)
  algorithm.check(config, problem)
  return algorithm, formulations, problem


def build_run(config: Config, backend_name=None) -> Run:
  """Problem, initial `MetaState` and the jitted meta-step for `config`.

  Raises ConfigError, before anything compiles, for settings the task, the
  algorithm or the devices cannot take.
  """
  algorithm, formulations, problem = build_problem(config, backend_name)
  init_key, train_key = jax.random.split(jax.random.key(config.run.seed))
  outer_optimizer = make_outer_optimizer(config)
  params = algorithm.init_meta_params(config, problem,
                                  problem.init_params(init_key))
  state = init_meta_state(params, outer_optimizer, train_key)
  make_step = make_meta_step
  prefetch = (formulations.prefetch_tasks
              and config.outer.steps_per_call == 1)
  if config.run.num_devices != 1:  # Tasks sharded over a mesh.
    make_step, state = _sharded(config, state)
    prefetch = False
  options = {"prefetch_tasks": True} if prefetch else {}
  step_fn = make_step(
      algorithm.make_meta_grad(config, problem), outer_optimizer,
      task_sampler=problem.train_sampler,
      steps_per_call=config.outer.steps_per_call,
      nonfinite_policy=config.outer.nonfinite_policy, **options)
  return Run(config, algorithm, problem, formulations, state, step_fn,
             outer_optimizer, prefetch)


def _last(metrics, fused: bool) -> dict:
  """Host copy of a call's metrics (the last step's, when fused)."""
  return {k: (v[-1] if fused else v).item() for k, v in metrics.items()}


def evaluate(run: Run, meta_params, split: str = "test",
             num_tasks=None) -> dict:
  """The task's meta-test protocol on `meta_params` (or the algorithm's own
  evaluation, for algorithms without an inner loop)."""
  if run.algorithm.evaluate is not None:
    return run.algorithm.evaluate(run.config, run.problem, meta_params,
                                  split, num_tasks)
  params, inner = test_time_adaptation(run, meta_params)
  return run.problem.evaluate(params, inner, split, num_tasks)


def test_time_adaptation(run: Run, meta_params):
  """The algorithm's `eval_adaptation`, its steps under a backtracking line
  search on the support loss when `eval.line_search` is set."""
  params, inner = run.algorithm.eval_adaptation(run.config, run.problem,
                                                meta_params)
  if run.config.eval.line_search:
    base = inner.optimizer or optax.sgd(inner.learning_rate)
    inner = dataclasses.replace(inner, optimizer=with_line_search(base))
  return params, inner


def test_time_optimizer(run: Run) -> str:
  """What `test_time_adaptation` adapts with, for results.json."""
  described = run.algorithm.eval_optimizer(run.config)
  if run.config.eval.line_search and run.algorithm.evaluate is None:
    described += ", backtracking line search on the support loss"
  return described


def run_validation(run: Run, meta_params) -> dict:
  """A quick check on 100 held-out tasks during training (the validation
  split where the task has one)."""
  return evaluate(run, meta_params, split="val",
                  num_tasks=min(100, run.config.eval.num_tasks))


class _MetricsWriter:
  """Writes a call's metrics one call late, so the host never waits on the
  device just to log; raises NonFiniteError under the "stop" policy."""

  def __init__(self, log, bar, stop_on_nonfinite, fused):
    self.log, self.bar, self.stop, self.fused = log, bar, stop_on_nonfinite, fused
    self.pending = None
    self.start = time.perf_counter()

  def flush(self):
    if self.pending is None:
      return
    record, self.pending = _last(self.pending, self.fused), None
    first_bad = int(record.pop("first_nonfinite_step"))
    record["step"] = int(record["step"]) + 1
    record["elapsed_seconds"] = time.perf_counter() - self.start
    self.log.write(record)
    self.bar.set_postfix(loss=f"{record['meta_loss']:.4g}")
    if first_bad >= 0 and self.stop:
      raise NonFiniteError(
          f"non-finite loss or gradient at meta-step {first_bad}; training "
          "stopped with the last good parameters saved (set "
          "--outer.nonfinite_policy=skip to skip such steps instead)")


def _resume(run, run_dir, checkpointer):
  """The newest valid checkpoint's state, with the metrics log cut to it."""
  state = checkpointer.restore(run.state)
  step = int(state.step)
  # Newer checkpoints failed to load (each was reported); they are moved
  # aside, not deleted, or the run could never write its own at those steps
  # (Orbax does not overwrite).
  for newer in checkpointer.steps():
    if newer > step:
      moved = checkpointer.set_aside(newer)
      warnings.warn(f"the unreadable checkpoint at step {newer} was moved to "
                    f"{moved}")
  metrics_path = os.path.join(run_dir, "metrics.jsonl")
  if os.path.exists(metrics_path):
    kept = [r for r in run_io.read_metrics(metrics_path) if r["step"] <= step]
    run_io.atomic_write_bytes(metrics_path, "".join(
        json.dumps(r) + "\n" for r in kept).encode())
  return state


def train(config: Config, run_dir: str, experiment: str = "",
          progress: bool = True, resume: bool = False) -> dict:
  """Trains, evaluates and writes everything into `run_dir`.

  With `run.checkpoint_every`, the full meta-state is checkpointed every
  that many steps (and at the end) under `run_dir/checkpoints`; `resume`
  continues from the newest valid checkpoint and gives the same parameters,
  bit for bit, as an uninterrupted run. With `outer.max_train_seconds`,
  training stops after the first call past that much wall time (compiling
  included) and is evaluated as usual; `results.json` records
  `meta_steps_done` and `stopped_by_time_limit`.

  Raises:
    ConfigError: before compiling, for a bad config.
    NonFiniteError: when a loss or gradient is not finite and the policy is
      "stop"; the last good parameters and all metrics so far are saved.
  """
  if not resume and os.path.exists(os.path.join(run_dir, "config.json")):
    raise FileExistsError(
        f"run directory {run_dir!r} already holds a run; continue it with "
        "--resume or choose another --run_dir")
  run = build_run(config)
  os.makedirs(run_dir, exist_ok=True)
  checkpointer = Checkpointer(os.path.join(run_dir, "checkpoints"),
                              max_to_keep=config.run.keep_checkpoints)
  state = _resume(run, run_dir, checkpointer) if resume else run.state
  run_io.write_json(os.path.join(run_dir, "config.json"),
                    {"experiment": experiment, **to_dict(config)})
  first_step = int(state.step)
  log = run_io.MetricsLog(os.path.join(run_dir, "metrics.jsonl"))
  validation_log = run_io.MetricsLog(os.path.join(run_dir, "validation.jsonl"))
  outer, settings = config.outer, config.run
  bar = tqdm.tqdm(total=outer.num_meta_steps, initial=first_step,
                  disable=not progress, unit="step", dynamic_ncols=True)
  writer = _MetricsWriter(log, bar, outer.nonfinite_policy == "stop",
                          outer.steps_per_call > 1)
  compile_seconds = None
  tasks = run.first_tasks(state)
  try:
    for done in range(first_step + outer.steps_per_call,
                      outer.num_meta_steps + 1, outer.steps_per_call):
      state, tasks, metrics = run.call(state, tasks)
      if compile_seconds is None:
        jax.block_until_ready(state)
        compile_seconds = time.perf_counter() - writer.start
      writer.flush()
      out_of_time = bool(outer.max_train_seconds) and (
          time.perf_counter() - writer.start >= outer.max_train_seconds)
      if (done % settings.log_every == 0 or done == outer.num_meta_steps
          or out_of_time):
        writer.pending = metrics
      bar.update(outer.steps_per_call)
      if config.eval.every and done % config.eval.every == 0:
        validation_log.write({"step": done, **run_validation(
            run, state.params)})
      if settings.checkpoint_every and done % settings.checkpoint_every == 0:
        writer.flush()  # the log reaches the checkpoint before it is written
        checkpointer.save(state)
      if out_of_time:
        break
    writer.flush()
  except NonFiniteError:
    run_io.save_params(os.path.join(run_dir, "params.msgpack"), state.params)
    raise
  finally:
    bar.close()
    log.close()
    validation_log.close()
  seconds = time.perf_counter() - writer.start
  if int(state.step) not in checkpointer.steps():
    checkpointer.save(state)
  checkpointer.close()
  run_io.save_params(os.path.join(run_dir, "params.msgpack"), state.params)
  steps_done = int(state.step)
  timed_steps = steps_done - first_step - outer.steps_per_call
  timed_seconds = seconds - (compile_seconds or 0.0)
  results = {
      "experiment": experiment, "device": str(jax.devices()[0].device_kind),
      "train_seconds": seconds, "compile_seconds": compile_seconds,
      "meta_steps_per_second": (timed_steps / timed_seconds
                                if timed_steps > 0 and timed_seconds > 0
                                else None),
      "meta_steps_done": steps_done,
      "stopped_by_time_limit": steps_done < outer.num_meta_steps,
      "nonfinite_steps": int(state.nonfinite_count),
      "final_metrics": run_io.read_metrics(
          os.path.join(run_dir, "metrics.jsonl"))[-1],
      **_evaluation_record(run, state.params),
  }
  run_io.write_json(os.path.join(run_dir, "results.json"), results)
  write_plots(run, state.params, run_dir, experiment)
  return results


def _evaluation_record(run: Run, meta_params) -> dict:
  """The meta-test evaluation with what produced it, for results.json and
  eval_results.json."""
  return {"backend": jax.default_backend(),
          "formulations": dataclasses.asdict(run.formulations),
          "test_time_optimizer": test_time_optimizer(run),
          "evaluation": evaluate(run, meta_params)}


def write_plots(run: Run, meta_params, run_dir: str, experiment: str):
  """The learning curve, and the task's own figures of the trained model."""
  records = run_io.read_metrics(os.path.join(run_dir, "metrics.jsonl"))
  plots.plot_learning_curve(records, os.path.join(run_dir, "learning_curve.png"),
                            title=experiment)
  # The task's figures show gradient adaptation of its own model; an
  # algorithm with its own evaluation (no inner loop) has neither.
  if run.problem.write_figures is not None and run.algorithm.evaluate is None:
    params, inner = test_time_adaptation(run, meta_params)
    run.problem.write_figures(params, inner, run_dir)


def evaluate_saved(config: Config, run_dir: str) -> dict:
  """Re-evaluates the params saved in `run_dir`; writes eval_results.json."""
  run = build_run(config)
  params = run_io.load_params(os.path.join(run_dir, "params.msgpack"),
                              run.state.params)
  results = _evaluation_record(run, params)
  run_io.write_json(os.path.join(run_dir, "eval_results.json"), results)
  return results


def _diverged_note(stats: dict) -> str:
  """" (median M, N diverged)" where some tasks diverged, else ""."""
  if not stats.get("num_diverged"):
    return ""
  return f" (median {stats['median']:.4g}, {stats['num_diverged']} diverged)"


def format_results(results: dict) -> str:
  """A short human-readable summary of the evaluation."""
  lines = []
  for setting, metrics in results["evaluation"].items():
    for name, per_step in (metrics.items() if "step_0" not in metrics
                           else [("", metrics)]):
      cells = ", ".join(f"{step}: {v['mean']:.4g} ± {v['ci95']:.2g}"
                        + _diverged_note(v) for step, v in per_step.items())
      lines.append(f"{setting} {name}: {cells}".replace("  ", " "))
  if results.get("stopped_by_time_limit"):
    lines.append(f"stopped by max_train_seconds after "
                 f"{results['meta_steps_done']} meta-steps")
  if results.get("meta_steps_per_second"):
    lines.append(f"{results['meta_steps_per_second']:.1f} meta-steps/s on "
                 f"{results['device']} (after compiling, "
                 f"{results['compile_seconds']:.1f} s)")
  return "\n".join(lines)
