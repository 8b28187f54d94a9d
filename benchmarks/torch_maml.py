"""PyTorch MAML baselines for the suite (the only module importing torch).

Two formulations of the same meta-step as metajax's (sampling the tasks, the
inner SGD steps, the post-adaptation query loss averaged over tasks, one
outer Adam step):
  "torch loop": a Python loop over tasks with
    `torch.autograd.grad(create_graph=True)`, as in most MAML code;
  "torch.func": `functional_call` + `grad` inside a `vmap` over tasks.
Problems: the sine MLP and Omniglot's Conv4 (3x3 conv 64 without bias, batch norm with
batch statistics, ReLU, 2x2 max-pool, four times, then a linear head) on
random images. Install with `pip install -e .[torch]` (CPU wheel). On a
CUDA machine the rows run on the GPU (`--device`), with TF32 matmuls and
convolutions allowed, matching JAX's default f32 precision there, and a
`torch.cuda.synchronize()` closing every timed step.

The suite runs this module in its own process (`python -m
benchmarks.torch_maml --problems sine`, JSON on the last line): in the JAX
process, XLA's CPU worker threads compete with torch's and slow it 5-20x.
"""
import argparse
import json
import time

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from benchmarks import problems, report, timing


def sine_model(hidden=(40, 40)):
  layers, width = [], 1
  for h in hidden:
    layers += [nn.Linear(width, h), nn.ReLU()]
    width = h
  return nn.Sequential(*layers, nn.Linear(width, 1))


class SpatialMean(nn.Module):
  def forward(self, x):
    return x.mean(dim=(2, 3))


def conv4_model(ways, strided=False):
  """MAML's Conv4; `strided`: Finn's Omniglot net (stride-2 convs, no
  max-pool, spatial mean), with torch's symmetric padding (same sizes as
  'SAME', 28-14-7-4-2)."""
  def block(cin):
    if strided:
      return [nn.Conv2d(cin, 64, 3, stride=2, padding=1, bias=False),
              nn.BatchNorm2d(64, track_running_stats=False), nn.ReLU()]
    return [nn.Conv2d(cin, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64, track_running_stats=False), nn.ReLU(),
            nn.MaxPool2d(2)]
  head = [SpatialMean()] if strided else [nn.Flatten()]
  return nn.Sequential(*block(1), *block(64), *block(64), *block(64),
                       *head, nn.Linear(64, ways))


def sample_sine(config, generator):
  """`(xs, ys, xq, yq)` with a leading task axis, MAML's sine family."""
  task = config.task
  t = config.outer.meta_batch_size
  k, q = task.support_points, task.query_points
  device = generator.device
  amp = torch.empty(t, 1, 1, device=device).uniform_(*task.amplitude_range,
                                                     generator=generator)
  phase = torch.empty(t, 1, 1, device=device).uniform_(*task.phase_range,
                                                       generator=generator)
  x = torch.empty(t, k + q, 1, device=device).uniform_(*task.x_range,
                                                       generator=generator)
  y = amp * torch.sin(x - phase)
  return x[:, :k], y[:, :k], x[:, k:], y[:, k:]


def sample_images(config, generator):
  """Random binary images and class-major labels, Omniglot's shapes."""
  t, n = config.outer.meta_batch_size, config.task.ways
  k, q = config.task.shots, config.task.queries
  device = generator.device
  xs = (torch.rand(t, n * k, 1, 28, 28, generator=generator,
                   device=device) < 0.2).float()
  xq = (torch.rand(t, n * q, 1, 28, 28, generator=generator,
                   device=device) < 0.2).float()
  ys = torch.arange(n, device=device).repeat_interleave(k).expand(t, -1)
  yq = torch.arange(n, device=device).repeat_interleave(q).expand(t, -1)
  return xs, ys, xq, yq


class TorchMaml:
  """One MAML meta-step in either formulation."""

  def __init__(self, config, formulation, device="cpu"):
    torch.manual_seed(config.run.seed)
    self.config, self.formulation = config, formulation
    if config.task.NAME == "sine":
      self.model = sine_model(config.model.hidden_sizes)
      self.loss = nn.functional.mse_loss
      self.sample = sample_sine
    else:
      self.model = conv4_model(config.task.ways,
                               strided=config.model.strided)
      self.loss = nn.functional.cross_entropy
      self.sample = sample_images
    self.model.to(device)
    self.params = {n: p for n, p in self.model.named_parameters()}
    self.optimizer = torch.optim.Adam(self.model.parameters(),
                                      lr=config.outer.lr)
    self.generator = torch.Generator(device=device).manual_seed(
        config.run.seed)

  def adapt(self, params, x, y):
    """`inner_steps` SGD steps on one task's support set."""
    inner = self.config.inner
    for _ in range(inner.steps):
      loss = self.loss(functional_call(self.model, params, (x,)), y)
      grads = torch.autograd.grad(loss, list(params.values()),
                                  create_graph=not inner.first_order)
      params = {n: p - inner.lr * g
                for (n, p), g in zip(params.items(), grads)}
    return params

  def loop_loss(self, tasks):
    total = 0.0
    for xs, ys, xq, yq in zip(*tasks):
      fast = self.adapt(self.params, xs, ys)
      total = total + self.loss(functional_call(self.model, fast, (xq,)), yq)
    return total / self.config.outer.meta_batch_size

  def func_loss(self, tasks):
    inner = self.config.inner

    def support_loss(params, x, y):
      return self.loss(functional_call(self.model, params, (x,)), y)

    def task_loss(params, xs, ys, xq, yq):
      for _ in range(inner.steps):
        grads = grad(support_loss)(params, xs, ys)
        if inner.first_order:
          grads = {n: g.detach() for n, g in grads.items()}
        params = {n: p - inner.lr * grads[n] for n, p in params.items()}
      return support_loss(params, xq, yq)

    return vmap(task_loss, in_dims=(None, 0, 0, 0, 0))(self.params,
                                                       *tasks).mean()

  def step(self):
    tasks = self.sample(self.config, self.generator)
    self.optimizer.zero_grad(set_to_none=True)
    loss = (self.loop_loss(tasks) if self.formulation == "torch loop"
            else self.func_loss(tasks))
    loss.backward()
    self.optimizer.step()
    if self.generator.device.type == "cuda":
      torch.cuda.synchronize()
    return loss.detach()


def time_steps(maml, warmup, samples, max_seconds):
  start = time.perf_counter()
  maml.step()
  if time.perf_counter() - start < 1.0:  # slow steps: one warm-up call
    for _ in range(warmup - 1):
      maml.step()
  times = []
  deadline = time.perf_counter() + max_seconds
  while len(times) < samples and (len(times) < 3
                                  or time.perf_counter() < deadline):
    start = time.perf_counter()
    maml.step()
    times.append(time.perf_counter() - start)
  return timing.summarize_ms(times)


ROW = "ROW "  # prefix of the JSON line printed for each row by `main`


def default_device() -> str:
  return "cuda" if torch.cuda.is_available() else "cpu"


def benchmark(families, quick=False, log=print, on_row=None, device=None,
              only="", max_seconds=30.0):
  """`(rows, skipped)`: both formulations on each family's cases (those
  `problems.select(..., only)` keeps); each row times at most 30 samples
  in about `max_seconds` (at least 3)."""
  device = device or default_device()
  if device.startswith("cuda"):
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
  rows, skipped = [], []
  for family in families:
    seen = set()
    for case in problems.select(problems.cases(family, quick), only):
      if case.tasks_given:  # PyTorch rows draw their tasks in the step.
        continue
      # Fused calls are a compiled-step notion: time the plain step once.
      name = case.name.split(" fused")[0]
      config = problems.changed(case.config, outer__steps_per_call=1)
      if name in seen:
        continue
      seen.add(name)
      for formulation in ("torch loop", "torch.func"):
        maml = TorchMaml(config, formulation, device)
        try:
          summary = time_steps(maml, 1 if quick else 5, 3 if quick else 30,
                               2.0 if quick else max_seconds)
        except RuntimeError as e:  # e.g. vmap over batch-norm statistics
          skipped.append(f"{formulation} {case.name}: {e}".splitlines()[0])
          continue
        row = {"name": name, "framework": formulation,
               "task": config.task.NAME,
               "data": "random images" if config.task.NAME == "omniglot"
                       else f"synthetic {config.task.NAME} tasks",
               "algorithm": config.algorithm.NAME,
               "inner_steps": config.inner.steps,
               "first_order": config.inner.first_order,
               "meta_batch_size": config.outer.meta_batch_size,
               "steps_per_call": 1, "ms_per_step": summary,
               "tasks_per_second": config.outer.meta_batch_size
                                   / (summary["median_ms"] / 1e3),
               "torch": torch.__version__, "device": device,
               "torch_threads": torch.get_num_threads()}
        log(report.row_line(row))
        rows.append(row)
        if on_row:
          on_row(row)
  return rows, skipped


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--problems", default="sine")
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--rows", default="",
                      help="only rows whose name contains one of these "
                           "comma-separated parts")
  parser.add_argument("--device", default="",
                      help="cpu or cuda (default: cuda when available)")
  parser.add_argument("--max-seconds", type=float, default=30.0,
                      help="time budget of one row's samples (at least 3)")
  args = parser.parse_args(argv)
  if args.max_seconds <= 0:
    parser.error(f"--max-seconds must be positive, got {args.max_seconds}")
  rows, skipped = benchmark(args.problems.split(","), args.quick,
                            device=args.device or None,
                            only=args.rows, max_seconds=args.max_seconds,
                            log=lambda line: print(line, flush=True),
                            on_row=lambda row: print(ROW + json.dumps(row),
                                                     flush=True))
  print(json.dumps({"rows": rows, "skipped": skipped}))


if __name__ == "__main__":
  main()
