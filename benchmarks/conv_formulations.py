"""Which 3x3 conv formulation makes a vmapped MAML Conv4 step fast on CPU.

The step: Omniglot-shaped 5-way 1-shot tasks (5 support and 75 query images,
28x28x1), 32 tasks, one inner SGD step (rate 0.4, cross-entropy), the gradient
of the mean query loss w.r.t. the initial params through the inner step (second
order), as `jax.grad(mean(jax.vmap(task_loss)))`. Every candidate is the same
`Conv4` with a different `conv` function, and every one takes this backend's
other formulations (`fold_norm`, `max_pool`) from `backend.for_backend()`;
`--formulations` picks them:

  reference     lax.conv_general_dilated; vmap turns it into a grouped conv
                (feature_group_count=T), i.e. the "tasks as channel groups"
                formulation. Minutes per step: opt-in.
  patches       lax.conv_general_dilated_patches @ W (autodiff). Opt-in.
  im2col        9 shifted slices, concat, @ W (autodiff).
  shift_sum     sum of 9 shifted slices @ W_ij (autodiff).
  cvjp_im2col   im2col with a custom_vjp whose bwd is im2col again.
  fast          conv_ops.conv3x3 (the CPU formulation, `backend.CPU.conv`).
  fast_pool_first  conv_ops.conv3x3 and Conv4(pool_before_norm=True).
  torch         a PyTorch per-task loop (create_graph=True) on the same
                params and data; skipped if torch is missing.

Run: python -m benchmarks.conv_formulations [--num_tasks 32 --repeats 3]
Each formulation runs in its own worker process (XLA programs sharing a
process slow each other down by up to 1.5x, and torch's threads fight XLA's),
and the workers step round-robin, so that load spikes on a shared box hit all
alike; the table shows the median and the min over repeats, and CPU seconds.
GFLOP/s use the XLA cost analysis of the `reference` program (the useful
work; programs with loops under-report their own count, shown as `own GF`).
"""
import argparse
import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from metajax import backend
from metajax.models.kernels import conv_ops
from metajax.models.conv4 import Conv4

WAYS, SHOTS, QUERIES, INNER_LR = 5, 1, 15, 0.4


# --------------------------------------------------------------- candidates
def _shifted_NxHxWx9xC(x_NxHxWxC):
  _, h, w, _ = x_NxHxWxC.shape
  x_pad = jnp.pad(x_NxHxWxC, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return [x_pad[:, i:i + h, j:j + w] for i in range(3) for j in range(3)]


def _strided(conv):
  def strided_conv(x, w, stride=1):
    y = conv(x, w)
    offset = conv_ops._offset  # pylint: disable=protected-access
    o_h, o_w = offset(x.shape[1], stride), offset(x.shape[2], stride)
    return y if stride == 1 else y[:, o_h::stride, o_w::stride]
  return strided_conv


def im2col(x, w):
  cols = jnp.concatenate(_shifted_NxHxWx9xC(x), axis=-1)
  return jnp.einsum('nhwk,kd->nhwd', cols, w.reshape(-1, w.shape[-1]))


def patches(x, w):  # patch features come out ordered (C, kh, kw)
  cols = lax.conv_general_dilated_patches(
      x, (3, 3), (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  w_kxd = jnp.transpose(w, (2, 0, 1, 3)).reshape(-1, w.shape[-1])
  return jnp.einsum('nhwk,kd->nhwd', cols, w_kxd)


def shift_sum(x, w):
  w_9xcxd = w.reshape((9,) + w.shape[2:])
  return sum(jnp.einsum('nhwc,cd->nhwd', s, w_9xcxd[k])
             for k, s in enumerate(_shifted_NxHxWx9xC(x)))


@jax.custom_vjp
def cvjp_im2col(x, w):
  return im2col(x, w)


def _cvjp_fwd(x, w):
  return im2col(x, w), (x, w)


def _cvjp_bwd(res, dy):
  x, w = res
  dx = cvjp_im2col(dy, jnp.swapaxes(w[::-1, ::-1], 2, 3))
  cols = jnp.concatenate(_shifted_NxHxWx9xC(x), axis=-1)
  dw = jnp.einsum('nhwk,nhwd->kd', cols, dy).reshape(w.shape)
  return dx, dw


cvjp_im2col.defvjp(_cvjp_fwd, _cvjp_bwd)

CANDIDATES = {
    'reference': dict(conv='reference'),
    'patches': dict(conv=_strided(patches)),
    'im2col': dict(conv=_strided(im2col)),
    'shift_sum': dict(conv=_strided(shift_sum)),
    'cvjp_im2col': dict(conv=_strided(cvjp_im2col)),
    'fast': dict(conv='fast'),
    'fast_pool_first': dict(conv='fast', pool_before_norm=True),
}


def conv4(strided=False, **candidate):
  """The benchmark's Conv4: a candidate's fields over this backend's others."""
  found = backend.for_backend()
  kw = dict(conv=found.conv, fold_norm=found.fold_norm,
            max_pool=found.max_pool)
  return Conv4(WAYS, strided=strided, **{**kw, **candidate})


# -------------------------------------------------------------- meta-step
def make_meta_step(model):
  def xent(params, x, y):
    logp = jax.nn.log_softmax(model.apply(params, x))
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

  def task_loss(params, xs, ys, xq, yq):
    grads = jax.grad(xent)(params, xs, ys)
    adapted = jax.tree.map(lambda p, g: p - INNER_LR * g, params, grads)
    return xent(adapted, xq, yq)

  def meta_loss(params, xs, ys, xq, yq):
    return jnp.mean(jax.vmap(task_loss, (None, 0, 0, 0, 0))(
        params, xs, ys, xq, yq))
  return jax.jit(jax.value_and_grad(meta_loss))


def make_data(num_tasks, seed=0):
  rng = np.random.default_rng(seed)
  xs = rng.random((num_tasks, WAYS * SHOTS, 28, 28, 1), np.float32)
  xq = rng.random((num_tasks, WAYS * QUERIES, 28, 28, 1), np.float32)
  ys = np.tile(np.arange(WAYS).repeat(SHOTS), (num_tasks, 1)).astype(np.int32)
  yq = np.tile(np.arange(WAYS).repeat(QUERIES), (num_tasks, 1)).astype(np.int32)
  return xs, ys, xq, yq


def _timed(fn, *args):
  t, c = time.perf_counter(), time.process_time()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - t, time.process_time() - c


def matmul_peak_gflops(n=2048, repeats=5):
  a = jnp.asarray(np.random.default_rng(0).random((n, n), np.float32))
  mm = jax.jit(jnp.matmul).lower(a, a).compile()
  mm(a, a).block_until_ready()
  seconds = np.median([_timed(mm, a, a)[0] for _ in range(repeats)])
  return 2 * n**3 / seconds / 1e9


def _flops(compiled):
  cost = compiled.cost_analysis()
  return (cost[0] if isinstance(cost, list) else cost).get('flops', 0.)


# ----------------------------------------------------------------- workers
def _torch_step(data):
  """The same meta-step as a PyTorch per-task loop, on the saved inputs."""
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  num_blocks = sum(k.endswith('/kernel') and k.startswith('block')
                   for k in data.files)
  names = [f'block{i}/{n}' for i in range(num_blocks)
           for n in ('kernel', 'scale', 'bias')] + ['head/kernel', 'head/bias']
  layout = {'kernel': (3, 2, 0, 1)}  # HWIO -> OIHW; the head is transposed
  params = [torch.tensor(np.ascontiguousarray(
      data[n].transpose(layout['kernel']) if n.startswith('block') and
      n.endswith('kernel') else data[n].T)).requires_grad_() for n in names]
  xs, xq = (torch.tensor(data[k].transpose(0, 1, 4, 2, 3).copy())
            for k in ('xs', 'xq'))
  ys, yq = (torch.tensor(data[k]).long() for k in ('ys', 'yq'))
  strided = bool(data['strided'])

  def same_pad(x):  # TF/XLA 'SAME' for stride 2 pads the extra row at the end
    pads = []
    for size in (x.shape[3], x.shape[2]):
      total = max((-(-size // 2) - 1) * 2 + 3 - size, 0)
      pads += [total // 2, total - total // 2]
    return F.pad(x, pads)

  def forward(p, x):
    for i in range(num_blocks):
      kernel, scale, bias = p[3 * i:3 * i + 3]
      y = (F.conv2d(same_pad(x), kernel, stride=2) if strided else
           F.conv2d(x, kernel, padding=1))
      x = F.relu(F.batch_norm(y, None, None, scale, bias, training=True,
                              eps=1e-5))
      x = x if strided else F.max_pool2d(x, 2)
    x = x.mean((2, 3)) if strided else x.flatten(1)
    return F.linear(x, p[-2], p[-1])

  def meta_step():
    for p in params:
      p.grad = None
    total = 0.
    for t in range(xs.shape[0]):
      inner = F.cross_entropy(forward(params, xs[t]), ys[t])
      grads = torch.autograd.grad(inner, params, create_graph=True)
      adapted = [p - INNER_LR * g for p, g in zip(params, grads)]
      loss = F.cross_entropy(forward(adapted, xq[t]), yq[t]) / xs.shape[0]
      loss.backward()
      total += loss.item()
    return total

  loss = meta_step()
  for _ in range(2):  # torch's first steps run erratically slow (warm-up)
    meta_step()
  grads = {n: (p.grad.numpy().transpose(2, 3, 1, 0) if n.startswith('block')
               and n.endswith('kernel') else p.grad.numpy().T)
           for n, p in zip(names, params)}
  return meta_step, dict(loss=loss, own_gflop=np.nan, compile_s=0.,
                         threads=torch.get_num_threads(), **grads)


def _jax_step(data, name):
  """Compiles the meta-step of one candidate on the saved inputs."""
  strided = bool(data['strided'])
  params = _unflatten({k: data[k] for k in data.files if '/' in k})
  batch = [jnp.asarray(data[k]) for k in ('xs', 'ys', 'xq', 'yq')]
  model = conv4(strided, **CANDIDATES[name])
  t = time.perf_counter()
  compiled = make_meta_step(model).lower(params, *batch).compile()
  compile_s = time.perf_counter() - t
  loss, grads = jax.block_until_ready(compiled(params, *batch))
  flat = {k: np.asarray(v) for k, v in _flatten(grads).items()}
  return (lambda: jax.block_until_ready(compiled(params, *batch)),
          dict(loss=float(loss), own_gflop=_flops(compiled) / 1e9,
               compile_s=compile_s, threads=os.cpu_count(), **flat))


def worker(work_dir, name):
  """Serves timed meta-steps of one formulation, one per line on stdin."""
  data = np.load(os.path.join(work_dir, 'in.npz'))
  step, out = _torch_step(data) if name == 'torch' else _jax_step(data, name)
  np.savez(os.path.join(work_dir, f'{name}.npz'), **out)
  print('ready', flush=True)
  for line in sys.stdin:
    del line
    t, c = time.perf_counter(), time.process_time()
    step()
    print(time.perf_counter() - t, time.process_time() - c, flush=True)


def _flatten(params):
  return {'/'.join(k.key for k in path[1:]): v
          for path, v in jax.tree_util.tree_flatten_with_path(params)[0]}


def _unflatten(flat):
  tree = {'params': {}}
  for name, value in flat.items():
    scope, leaf = name.split('/')
    tree['params'].setdefault(scope, {})[leaf] = value
  return tree


@contextlib.contextmanager
def stepper(work_dir, name):
  """Starts a worker for `name`; yields (step, results) once it compiled."""
  proc = subprocess.Popen(
      [sys.executable, '-m', 'benchmarks.conv_formulations', '--worker', name,
       '--work_dir', work_dir], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
      text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(
          __file__))))
  try:
    if proc.stdout.readline().strip() != 'ready':
      raise RuntimeError(f'worker {name} failed')
    out = dict(np.load(os.path.join(work_dir, f'{name}.npz')))

    def step():
      proc.stdin.write('step\n')
      proc.stdin.flush()
      return tuple(float(v) for v in proc.stdout.readline().split())
    yield step, out
  finally:
    proc.stdin.close()
    proc.wait()


# -------------------------------------------------------------------- main
def _max_rel_diff(tree_a, tree_b):
  return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))) /
                   (np.max(np.abs(np.asarray(b))) + 1e-30))
             for a, b in zip(jax.tree.leaves(tree_a), jax.tree.leaves(tree_b)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--num_tasks', type=int, default=32)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--formulations', default='im2col,shift_sum,cvjp_im2col,'
                      'fast_pool_first,fast,torch')
  parser.add_argument('--strided', action='store_true')
  parser.add_argument('--worker', help=argparse.SUPPRESS)
  parser.add_argument('--work_dir', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return worker(args.work_dir, args.worker)

  names = args.formulations.split(',')
  if 'torch' in names and importlib.util.find_spec('torch') is None:
    names.remove('torch')
  data = make_data(args.num_tasks)
  params = conv4(args.strided).init(
      jax.random.PRNGKey(0), jnp.asarray(data[0][0]))
  print(f'jax {jax.__version__}, {os.cpu_count()} CPUs, {args.num_tasks} tasks,'
        f' strided={args.strided}, repeats={args.repeats}', flush=True)
  peak = matmul_peak_gflops()
  print(f'f32 matmul peak (2048^3, median of 5): {peak:.0f} GFLOP/s',
        flush=True)
  useful_gflop = _flops(make_meta_step(conv4(
      args.strided, conv='reference')).lower(
          params, *data).compile()) / 1e9

  results = {}
  with tempfile.TemporaryDirectory() as work_dir, \
      contextlib.ExitStack() as stack:
    np.savez(os.path.join(work_dir, 'in.npz'), strided=args.strided,
             **{k: np.asarray(v) for k, v in _flatten(params).items()},
             **dict(zip(('xs', 'ys', 'xq', 'yq'), data)))
    for name in names:  # one process each: programs sharing a process
      step, out = stack.enter_context(stepper(work_dir, name))  # slow each
      results[name] = dict(step=step, out=out, times=[])     # other down
      print(f'{name} ready (compile {out["compile_s"]:.1f}s, '
            f'{int(out["threads"])} threads)', flush=True)
    for _ in range(args.repeats):  # round-robin, so load spikes hit all alike
      for r in results.values():
        r['times'].append(r['step']())

  base = results['fast' if 'fast' in results else names[0]]['out']
  base_grads = _unflatten({k: v for k, v in base.items() if '/' in k})
  torch_ms = (np.median([t[0] for t in results['torch']['times']]) * 1e3
              if 'torch' in results else float('nan'))
  print(f'\nuseful work (XLA cost of `reference`): {useful_gflop:.1f} GFLOP\n')
  print('| formulation | ms/step median | min | CPU s | GFLOP/s | % peak | '
        'vs torch | own GF | loss diff | grad rel diff |')
  print('|---|---|---|---|---|---|---|---|---|---|')
  for name, r in results.items():
    wall, cpu = np.array(r['times']).T
    ms = np.median(wall) * 1e3
    gflops = useful_gflop / np.median(wall)
    grads = _unflatten({k: v for k, v in r['out'].items() if '/' in k})
    print(f'| {name} | {ms:.0f} | {wall.min() * 1e3:.0f} | '
          f'{np.median(cpu):.2f} | {gflops:.1f} | {100 * gflops / peak:.1f} | '
          f'{torch_ms / ms:.2f}x | {float(r["out"]["own_gflop"]):.1f} | '
          f'{abs(float(r["out"]["loss"]) - float(base["loss"])):.1e} | '
          f'{_max_rel_diff(grads, base_grads):.1e} |')
  print(f'\nf32 matmul peak again: {matmul_peak_gflops():.0f} GFLOP/s')


if __name__ == '__main__':
  main()
