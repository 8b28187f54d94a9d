"""The one trainer: builds the jitted meta-step from a config and runs it.

Metrics are fetched one logging call late so the host never waits on the
device; nothing is converted to Python per step.
"""
import dataclasses
import json
import os
import time

import jax
import optax
import tqdm

from metajax import algorithms
from metajax.training import plots
from metajax.training import run_io
from metajax.parallel import sharding
from metajax.algorithms._common import inner_loop
from metajax.training.checkpoint import Checkpointer
from metajax.training.config import Config, ConfigError, validate
from metajax.core.meta_step import init_meta_state, make_meta_step
from metajax.tasks.base import build_problem


class NonFiniteError(RuntimeError):
  """Training met a non-finite loss or gradient under the "stop" policy."""


@dataclasses.dataclass
class Run:
  """The pieces of a run, built once from a config."""
  config: Config
  problem: object
  state: object
  step_fn: object
  outer_optimizer: object


def make_outer_optimizer(config: Config):
  """The outer optimizer, with `config.outer_schedule` over the meta-steps."""
  learning_rate = config.outer_lr
  if config.outer_schedule == "cosine":  # MAML++
    learning_rate = optax.cosine_decay_schedule(config.outer_lr,
                                                config.num_meta_steps)
  elif config.outer_schedule == "linear":  # Reptile's annealed epsilon
    learning_rate = optax.linear_schedule(config.outer_lr, 0.0,
                                          config.num_meta_steps)
  if config.outer_optimizer == "sgd":
    return optax.sgd(learning_rate)
  return optax.adam(learning_rate)


def check_config(config: Config) -> Config:
  """Validates every field and the algorithm combination, before compiling."""
  validate(config)
  algorithm = algorithms.get_algorithm(config.algorithm)
  if hasattr(algorithm, "check"):
    algorithm.check(config)
  if config.num_meta_steps % config.steps_per_call:
    raise ConfigError(
        f"config field 'num_meta_steps' ({config.num_meta_steps}) must be a "
        f"multiple of 'steps_per_call' ({config.steps_per_call})")
  if config.checkpoint_every % config.log_every:
    raise ConfigError(
        f"config field 'checkpoint_every' ({config.checkpoint_every}) must be "
        f"a multiple of 'log_every' ({config.log_every})")
  if config.log_every % config.steps_per_call:
    raise ConfigError(
        f"config field 'log_every' ({config.log_every}) must be a multiple of "
        f"'steps_per_call' ({config.steps_per_call})")
  return config


def build_run(config: Config) -> Run:
  """Problem, initial `MetaState` and the jitted meta-step for `config`."""
  check_config(config)
  algorithm = algorithms.get_algorithm(config.algorithm)
  problem = build_problem(config)
  init_key, train_key = jax.random.split(jax.random.key(config.seed))
  outer_optimizer = make_outer_optimizer(config)
  params = problem.init_params(init_key)
  if hasattr(algorithm, "init_meta_params"):
    params = algorithm.init_meta_params(config, params)
  state = init_meta_state(params, outer_optimizer, train_key)
  make_step = make_meta_step
  if config.num_devices != 1:  # Tasks sharded over a mesh, state replicated.
    make_step, state = sharding.for_config(config, state)
  step_fn = make_step(
      algorithm.make_meta_grad(config, problem), outer_optimizer,
      task_sampler=problem.train_sampler,
      steps_per_call=config.steps_per_call,
      nonfinite_policy=config.nonfinite_policy)
  return Run(config, problem, state, step_fn, outer_optimizer)


def _last(metrics, fused: bool) -> dict:
  """Host copy of a call's metrics (the last step's, when fused)."""
  return {k: (v[-1] if fused else v).item() for k, v in metrics.items()}


def eval_adaptation(config: Config, problem, meta_params):
  """`(init_params, InnerLoop)` used to adapt to a meta-test task.

  Algorithms whose test-time adaptation differs from plain SGD on the whole
  initialisation (learned rates, partial adaptation) define
  `eval_adaptation(config, problem, meta_params)` in their module.
  """
  algorithm = algorithms.get_algorithm(config.algorithm)
  if hasattr(algorithm, "eval_adaptation"):
    return algorithm.eval_adaptation(config, problem, meta_params)
  return meta_params, inner_loop(config, problem, optimizer=None)


def evaluate(config: Config, problem, meta_params) -> dict:
  """The task family's meta-test protocol on `meta_params`."""
  algorithm = algorithms.get_algorithm(config.algorithm)
  if hasattr(algorithm, "evaluate"):
    return algorithm.evaluate(config, problem, meta_params)
  params, inner = eval_adaptation(config, problem, meta_params)
  if problem.classification:
    from metajax.tasks.omniglot.task import evaluate_classification  # pylint: disable=g-import-not-at-top
    return evaluate_classification(params, problem, config, inner)
  from metajax.tasks.regression import evaluate_regression  # pylint: disable=g-import-not-at-top
  return evaluate_regression(params, problem, config, inner)


def run_validation(config: Config, problem, meta_params) -> dict:
  """A quick check on held-out tasks during training (validation split for
  Omniglot, 100 tasks; fresh tasks for regression)."""
  small = dataclasses.replace(config, eval_num_tasks=min(100, config.eval_num_tasks))
  params, inner = eval_adaptation(small, problem, meta_params)
  if problem.classification:
    from metajax.tasks.omniglot.task import evaluate_classification  # pylint: disable=g-import-not-at-top
    return evaluate_classification(params, problem, small, inner, split="val")
  from metajax.tasks.regression import evaluate_regression  # pylint: disable=g-import-not-at-top
  return evaluate_regression(params, problem, small, inner)


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
          "--nonfinite_policy=skip to skip such steps instead)")


def _resume(run, run_dir, checkpointer):
  """The newest valid checkpoint's state, with the metrics log cut to it."""
  state = checkpointer.restore(run.state)
  step = int(state.step)
  metrics_path = os.path.join(run_dir, "metrics.jsonl")
  if os.path.exists(metrics_path):
    kept = [r for r in run_io.read_metrics(metrics_path) if r["step"] <= step]
    run_io.atomic_write_bytes(metrics_path, "".join(
        json.dumps(r) + "\n" for r in kept).encode())
  return state


def train(config: Config, run_dir: str, experiment: str = "",
          progress: bool = True, resume: bool = False) -> dict:
  """Trains, evaluates and writes everything into `run_dir`.

  With `config.checkpoint_every`, the full meta-state is checkpointed every
  that many steps (and at the end) under `run_dir/checkpoints`; `resume`
  continues from the newest valid checkpoint and gives the same parameters,
  bit for bit, as an uninterrupted run. With `config.max_train_seconds`,
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
                              max_to_keep=config.keep_checkpoints)
  state = _resume(run, run_dir, checkpointer) if resume else run.state
  run_io.write_json(os.path.join(run_dir, "config.json"),
                    {"experiment": experiment, **run_io.config_dict(config)})
  first_step = int(state.step)
  log = run_io.MetricsLog(os.path.join(run_dir, "metrics.jsonl"))
  validation_log = run_io.MetricsLog(os.path.join(run_dir, "validation.jsonl"))
  bar = tqdm.tqdm(total=config.num_meta_steps, initial=first_step,
                  disable=not progress, unit="step", dynamic_ncols=True)
  writer = _MetricsWriter(log, bar, config.nonfinite_policy == "stop",
                          config.steps_per_call > 1)
  compile_seconds = None
  try:
    for done in range(first_step + config.steps_per_call,
                      config.num_meta_steps + 1, config.steps_per_call):
      state, metrics = run.step_fn(state)
      if compile_seconds is None:
        jax.block_until_ready(state)
        compile_seconds = time.perf_counter() - writer.start
      writer.flush()
      out_of_time = bool(config.max_train_seconds) and (
          time.perf_counter() - writer.start >= config.max_train_seconds)
      if (done % config.log_every == 0 or done == config.num_meta_steps
          or out_of_time):
        writer.pending = metrics
      bar.update(config.steps_per_call)
      if config.eval_every and done % config.eval_every == 0:
        validation_log.write({"step": done, **run_validation(
            config, run.problem, state.params)})
      if config.checkpoint_every and done % config.checkpoint_every == 0:
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
  timed_steps = steps_done - first_step - config.steps_per_call
  timed_seconds = seconds - (compile_seconds or 0.0)
  results = {
      "experiment": experiment, "device": str(jax.devices()[0].device_kind),
      "train_seconds": seconds, "compile_seconds": compile_seconds,
      "meta_steps_per_second": (timed_steps / timed_seconds
                                if timed_steps > 0 and timed_seconds > 0
                                else None),
      "meta_steps_done": steps_done,
      "stopped_by_time_limit": steps_done < config.num_meta_steps,
      "nonfinite_steps": int(state.nonfinite_count),
      "final_metrics": run_io.read_metrics(
          os.path.join(run_dir, "metrics.jsonl"))[-1],
      "evaluation": evaluate(config, run.problem, state.params),
  }
  run_io.write_json(os.path.join(run_dir, "results.json"), results)
  write_plots(config, run.problem, state.params, run_dir, experiment)
  return results


def write_plots(config, problem, meta_params, run_dir, experiment):
  records = run_io.read_metrics(os.path.join(run_dir, "metrics.jsonl"))
  plots.plot_learning_curve(records, os.path.join(run_dir, "learning_curve.png"),
                            title=experiment)
  if problem.family is not None:
    params, inner = eval_adaptation(config, problem, meta_params)
    plots.plot_regression_adaptation(
        params, problem, inner, os.path.join(run_dir, "adaptation.png"),
        seed=config.eval_seed, shots=min(config.eval_shots))


def evaluate_saved(config: Config, run_dir: str) -> dict:
  """Re-evaluates the params saved in `run_dir`; writes eval_results.json."""
  run = build_run(config)
  params = run_io.load_params(os.path.join(run_dir, "params.msgpack"),
                              run.state.params)
  results = {"evaluation": evaluate(config, run.problem, params)}
  run_io.write_json(os.path.join(run_dir, "eval_results.json"), results)
  return results


def format_results(results: dict) -> str:
  """A short human-readable summary of the evaluation."""
  lines = []
  for setting, metrics in results["evaluation"].items():
    for name, per_step in (metrics.items() if "step_0" not in metrics
                           else [("", metrics)]):
      cells = ", ".join(f"{step}: {v['mean']:.4g} ± {v['ci95']:.2g}"
                        for step, v in per_step.items())
      lines.append(f"{setting} {name}: {cells}".replace("  ", " "))
  if results.get("stopped_by_time_limit"):
    lines.append(f"stopped by max_train_seconds after "
                 f"{results['meta_steps_done']} meta-steps")
  if results.get("meta_steps_per_second"):
    lines.append(f"{results['meta_steps_per_second']:.1f} meta-steps/s on "
                 f"{results['device']} (after compiling, "
                 f"{results['compile_seconds']:.1f} s)")
  return "\n".join(lines)
