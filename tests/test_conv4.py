"""Conv4 and the fast 3x3 convolution: values, derivatives, vmap, MAML."""
# pylint: disable=protected-access,g-long-lambda
import functools

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import conv_formulations
from metajax import backend
from metajax.models.kernels import conv_ops
from metajax.models.conv4 import (MAX_POOLS, Conv4, ConvBlock, batch_moments,
                                  max_pool_2x2, signed_max_pool_2x2)

# (input channels, filters): 9 * 1 <= 16 takes the batched-im2col kernels,
# 9 * 3 > 4 the per-task XLA conv (lax.map) and shifted-matmul kernels.
CHANNELS = [(1, 16), (3, 4)]
# The formulations checked against lax.conv_general_dilated.
FORMULATIONS = pytest.mark.parametrize('conv_name', ['fast', 'im2col'])


def _conv4_fields(formulations):
  """Conv4's formulation fields as `formulations` (a backend.Formulations)
  sets them."""
  return dict(conv=formulations.conv, fold_norm=formulations.fold_norm,
              max_pool=formulations.max_pool)


# Conv4's fields under the CPU and the portable formulations.
CPU_FIELDS, PORTABLE_FIELDS = (_conv4_fields(backend.CPU),
                               _conv4_fields(backend.PORTABLE))
BOTH_FORMULATIONS = pytest.mark.parametrize(
    'formulations', [CPU_FIELDS, PORTABLE_FIELDS], ids=['cpu', 'portable'])


def _arrays(key, *shapes):
  keys = jax.random.split(jax.random.PRNGKey(key), len(shapes))
  return [jax.random.normal(k, s, jnp.float64) for k, s in zip(keys, shapes)]


def _close(a, b, rtol=1e-10):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * np.abs(y).max())


def _loss(conv, x, w):
  return jnp.sum(jnp.tanh(conv(x, w)) ** 2)


@FORMULATIONS
@pytest.mark.parametrize('cin,cout', CHANNELS)
@pytest.mark.parametrize('stride,size', [(1, 5), (2, 6), (2, 7)])
def test_conv_values_and_first_derivatives(x64, conv_name, cin, cout, stride,
                                           size):
  x, w = _arrays(0, (2, size, size, cin), (3, 3, cin, cout))
  def values_and_grads(conv):
    conv = functools.partial(conv, stride=stride)
    return conv(x, w), jax.grad(functools.partial(_loss, conv), (0, 1))(x, w)
  _close(jax.jit(values_and_grads, static_argnums=0)(
      conv_ops.CONVS[conv_name]),
         values_and_grads(conv_ops.conv_reference))


@FORMULATIONS
@pytest.mark.parametrize('cin,cout', CHANNELS)
@pytest.mark.parametrize('stride', [1, 2])
def test_conv_second_derivatives(x64, conv_name, cin, cout, stride):
  x, w, vx, vw = _arrays(1, (2, 5, 4, cin), (3, 3, cin, cout),
                         (2, 5, 4, cin), (3, 3, cin, cout))

  @functools.partial(jax.jit, static_argnums=0)
  def hvps(conv):
    conv = functools.partial(conv, stride=stride)
    grad = jax.grad(functools.partial(_loss, conv), (0, 1))
    forward_over_reverse = jax.jvp(grad, (x, w), (vx, vw))[1]
    reverse_over_reverse = jax.grad(lambda x, w: sum(
        jnp.vdot(g, v) for g, v in zip(grad(x, w), (vx, vw))), (0, 1))(x, w)
    return forward_over_reverse, reverse_over_reverse

  fast = hvps(conv_ops.CONVS[conv_name])
  ref = hvps(conv_ops.conv_reference)
  _close(fast, ref)
  _close(fast[0], ref[1])


@FORMULATIONS
@pytest.mark.parametrize('cin,cout', CHANNELS)
@pytest.mark.parametrize('in_axes', [(0, 0), (0, None), (None, 0)])
@pytest.mark.parametrize('stride', [1, 2])
def test_conv_under_vmap_and_nested_vmap(x64, conv_name, cin, cout, in_axes,
                                         stride):
  x, w = _arrays(2, (3, 2, 5, 4, cin), (3, 3, 3, cin, cout))
  args = tuple(a if ax == 0 else a[0] for a, ax in zip((x, w), in_axes))

  @functools.partial(jax.jit, static_argnums=0)
  def batched(conv, x, w):
    conv = functools.partial(conv, stride=stride)
    grad = jax.vmap(jax.grad(functools.partial(_loss, conv), (0, 1)), in_axes)
    values = jax.vmap(conv, in_axes)(x, w)
    second = jax.grad(lambda x, w: jnp.sum(grad(x, w)[1] ** 2), (0, 1))(x, w)
    return values, grad(x, w), second

  _close(batched(conv_ops.CONVS[conv_name], *args),
         batched(conv_ops.conv_reference, *args))
  nested = tuple(jnp.stack([a, 0.5 * a]) for a in args)
  per_task = lambda conv: jax.jit(jax.vmap(jax.vmap(jax.grad(
      lambda x, w: _loss(functools.partial(conv, stride=stride), x, w),
      (0, 1)), in_axes)))
  _close(per_task(conv_ops.CONVS[conv_name])(*nested),
         per_task(conv_ops.conv_reference)(*nested))


@pytest.mark.parametrize('name', ['patches', 'im2col', 'shift_sum',
                                  'cvjp_im2col'])
def test_benchmark_candidates_are_correct_to_second_order(x64, name):
  x, w, v = _arrays(5, (3, 2, 4, 4, 3), (3, 3, 3, 3, 4), (3, 3, 3, 3, 4))

  @functools.partial(jax.jit, static_argnums=0)
  def per_task_derivatives(conv):
    grad_w = jax.grad(functools.partial(_loss, conv), 1)
    hvp = jax.grad(lambda x, w, v: jnp.vdot(grad_w(x, w), v), (0, 1))
    return jax.vmap(conv)(x, w), jax.vmap(hvp)(x, w, v)

  conv = conv_formulations.CANDIDATES[name]['conv']
  _close(per_task_derivatives(conv),
         per_task_derivatives(conv_ops.conv_reference))


@pytest.mark.parametrize('cin,cout', CHANNELS)
@pytest.mark.parametrize('stride', [1, 2])
def test_generic_lowering_equals_cpu_kernels(x64, cin, cout, stride):
  # Off CPU (GPU, TPU) the primitives lower to the generic kernels.
  x, w = _arrays(6, (3, 2, 6, 5, cin), (3, 3, 3, cin, cout))
  dy = conv_ops._conv_kernel(x, w, stride)
  _close(conv_ops._conv_kernel_generic(x, w, stride), dy)
  _close(conv_ops._wgrad_kernel_generic(x, dy, stride),
         conv_ops._wgrad_kernel(x, dy, stride))
  if stride > 1:
    _close(conv_ops._tconv_kernel_generic(dy, w, stride, (6, 5)),
           conv_ops._tconv_kernel(dy, w, stride, (6, 5)))


def test_conv_rejects_mixed_dtypes():
  with pytest.raises(TypeError):
    conv_ops.conv3x3(jnp.ones((1, 3, 3, 1)), jnp.ones((3, 3, 1, 2), jnp.int32))


@pytest.mark.parametrize('by_argmax', [True, False])
def test_max_pool_value_and_one_hot_gradient(by_argmax):
  pool = functools.partial(max_pool_2x2, by_argmax=by_argmax)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 7, 3))
  window = lambda x: lax.reduce_window(
      x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID')
  np.testing.assert_array_equal(pool(x), window(x))
  v = jax.random.normal(jax.random.PRNGKey(1), (2, 2, 3, 3))
  np.testing.assert_array_equal(
      jax.grad(lambda x: jnp.vdot(pool(x), v))(x),
      jax.grad(lambda x: jnp.vdot(window(x), v))(x))
  ties = jax.grad(lambda x: jnp.sum(pool(x)))(jnp.zeros((1, 4, 4, 1)))
  np.testing.assert_array_equal(ties[0, ::2, ::2, 0], 1.)  # one per window
  assert float(jnp.sum(ties)) == 4.


@pytest.mark.parametrize('by_argmax', [True, False])
def test_signed_max_pool_is_the_pool_of_the_signed_input(by_argmax):
  # Per channel max (sign +1) or -min (sign -1); the gradient is one-hot on
  # the window's first maximal element of x * sign, ties included, in both
  # formulations (the CPU's argmax reduction, the GPU's pairwise picks).
  pool = functools.partial(signed_max_pool_2x2, by_argmax=by_argmax)
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 6, 3))
  x = x.at[0, :2, :2, 1].set(0.5)  # a tied window in a sign -1 channel
  sign = jnp.array([1., -1., 1.])
  signed = lambda x: x * sign.reshape(1, 1, 1, 3)
  window = lambda x: lax.reduce_window(
      x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID')
  v = jax.random.normal(jax.random.PRNGKey(3), (2, 2, 3, 3))
  np.testing.assert_array_equal(pool(x, sign), window(signed(x)))
  grad = jax.grad(lambda x: jnp.vdot(pool(x, sign), v))(x)
  np.testing.assert_array_equal(
      grad, jax.grad(lambda x: jnp.vdot(window(signed(x)), v))(x))
  np.testing.assert_array_equal(grad[0, :2, :2, 1],
                                [[-v[0, 0, 0, 1], 0.], [0., 0.]])


def test_signed_max_pool_takes_a_bool_only():
  x, sign = jnp.ones((1, 4, 4, 2)), jnp.ones((2,))
  for by_argmax in (None, 'auto', 1):
    with pytest.raises(ValueError, match='by_argmax'):
      signed_max_pool_2x2(x, sign, by_argmax=by_argmax)


@pytest.mark.parametrize('conv_name', ['fast', 'im2col'])
@pytest.mark.parametrize('cin,hw', [(1, (6, 8)), (3, (7, 5))])
def test_max_pooled_conv_equals_the_pool_of_the_conv(x64, conv_name, cin, hw):
  x, w, vx, vw = _arrays(8, (2,) + hw + (cin,), (3, 3, cin, 12),
                         (2,) + hw + (cin,), (3, 3, cin, 12))

  @functools.partial(jax.jit, static_argnums=0)
  def values_and_derivatives(pooled_conv):
    loss = lambda x, w: jnp.sum(jnp.sin(pooled_conv(x, w)) ** 2)
    grad = jax.grad(loss, (0, 1))
    forward_over_reverse = jax.jvp(grad, (x, w), (vx, vw))[1]
    reverse_over_reverse = jax.grad(lambda x, w: sum(
        jnp.vdot(g, v) for g, v in zip(grad(x, w), (vx, vw))), (0, 1))(x, w)
    return (pooled_conv(x, w), grad(x, w), forward_over_reverse,
            reverse_over_reverse)

  conv = conv_ops.CONVS[conv_name]
  fused = values_and_derivatives(
      lambda x, w: conv_ops.max_pooled_conv3x3(x, w, conv))
  plain = values_and_derivatives(
      lambda x, w: max_pool_2x2(conv_ops.conv_reference(x, w)))
  assert fused[0].shape == (2, hw[0] // 2, hw[1] // 2, 12)
  _close(fused, plain)


def test_max_pooled_conv_under_vmap_and_on_ties():
  # Per-task kernels (the vmapped inner loop), binary images whose empty
  # patches tie at exactly 0: the derivative takes each window's first
  # maximal element, as max_pool_2x2's does (not a split between ties).
  x = (jax.random.uniform(jax.random.PRNGKey(0), (3, 4, 8, 8, 1)) < 0.2
       ).astype(jnp.float32)
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 1, 16))
  v = jax.random.normal(jax.random.PRNGKey(2), (3, 4, 4, 4, 16))

  def grads(pooled_conv):
    loss = lambda x, w, v: jnp.vdot(pooled_conv(x, w), v)
    return jax.jit(jax.vmap(jax.grad(loss, (0, 1))))(x, w, v)

  fused = grads(conv_ops.max_pooled_conv3x3)
  plain = grads(lambda x, w: max_pool_2x2(conv_ops.conv3x3(x, w)))
  np.testing.assert_allclose(fused[1], plain[1], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(fused[0], plain[0], rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match='C = 1'):
    conv_ops.max_pooled_conv3x3(x[0], jnp.ones((3, 3, 2, 4)))


def test_batch_moments_match_numpy():
  y = 30. + jax.random.normal(jax.random.PRNGKey(0), (8, 5, 5, 3))
  mean, var = batch_moments(y)
  y64 = np.asarray(y, np.float64)
  np.testing.assert_allclose(mean, y64.mean((0, 1, 2)), rtol=1e-6)
  np.testing.assert_allclose(var, y64.var((0, 1, 2)), rtol=1e-3)


def test_batch_norm_normalises_with_the_batch_statistics():
  block = ConvBlock(6, pool=False, activation=lambda x: x)
  x = 3. + jax.random.normal(jax.random.PRNGKey(0), (4, 5, 5, 2))
  params = block.init(jax.random.PRNGKey(1), x)
  assert set(params) == {'params'}  # no batch_stats collection
  assert set(params['params']) == {'kernel', 'scale', 'bias'}
  y = block.apply(params, x)
  np.testing.assert_allclose(y.mean((0, 1, 2)), 0., atol=1e-5)
  np.testing.assert_allclose(y.var((0, 1, 2)), 1., rtol=1e-3)
  other = block.apply(params, x.at[1:].set(0.))  # the batch changes example 0
  assert not np.allclose(other[0], y[0])


@pytest.mark.parametrize('strided', [False, True])
def test_conv4_shapes(strided):
  model = Conv4(num_classes=5, strided=strided)
  x = jax.ShapeDtypeStruct((3, 28, 28, 1), jnp.float32)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  assert set(params) == {'params'}
  shapes = jax.tree.map(lambda a: a.shape, params['params'])
  assert shapes['block0'] == {'kernel': (3, 3, 1, 64), 'scale': (64,),
                              'bias': (64,)}
  assert shapes['block3']['kernel'] == (3, 3, 64, 64)
  assert shapes['head'] == {'kernel': (64, 5), 'bias': (5,)}  # 1x1x64 or mean
  assert jax.eval_shape(model.apply, params, x).shape == (3, 5)
  with pytest.raises(ValueError):
    jax.eval_shape(model.apply, params,
                   jax.ShapeDtypeStruct((2, 3, 28, 28, 1), jnp.float32))


def _tiny_problem(key=0, tasks=2, ways=3, shots=2, size=9):
  xs, xq = _arrays(key, (tasks, ways * shots, size, size, 1),
                   (tasks, ways * shots, size, size, 1))
  ys = jnp.tile(jnp.arange(ways).repeat(shots), (tasks, 1))
  return xs, ys, xq, ys


def _f64(params, negate_scale=True):
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
  if negate_scale:  # a negative scale exercises the min-pool branch
    scale = params['params']['block0']['scale']
    params['params']['block0']['scale'] = scale.at[::2].multiply(-1.)
  return params


@pytest.mark.parametrize('strided,pool_first', [(False, False), (True, False),
                                                (False, True)])
@pytest.mark.parametrize('fold_norm,max_pool', [(True, 'argmax'),
                                                (False, 'pairwise')])
def test_fast_model_equals_reference_model(x64, strided, pool_first,
                                           fold_norm, max_pool):
  # The three convs under either backend's other formulations (fold_norm
  # and max_pool as backend.CPU and backend.PORTABLE set them).
  x, = _arrays(3, (4, 12, 12, 1))
  kw = dict(num_classes=3, width=8, num_blocks=3, strided=strided,
            fold_norm=fold_norm, max_pool=max_pool)
  params = _f64(Conv4(**kw).init(jax.random.PRNGKey(0), x))
  models = [Conv4(conv='fast', pool_before_norm=pool_first, **kw),
            Conv4(conv='im2col', **kw), Conv4(conv='reference', **kw)]
  value_and_grad = lambda m: jax.jit(jax.value_and_grad(
      lambda p: jnp.sum(jnp.sin(m.apply(p, x)))))(params)
  fast, im2col, ref = [value_and_grad(m) for m in models]
  _close(fast, ref)
  _close(im2col, ref)


def test_pool_before_norm_rejects_non_monotone_activations():
  model = Conv4(num_classes=2, pool_before_norm=True, activation=jax.nn.gelu)
  with pytest.raises(ValueError):
    jax.eval_shape(model.init, jax.random.PRNGKey(0),
                   jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32))


def test_maml_meta_gradient_fast_equals_reference(x64):
  # The CPU formulations (conv 'fast', folded first block, argmax pool)
  # against the reference conv with the portable ones.
  data = _tiny_problem()
  kw = dict(num_classes=3, width=8, num_blocks=2)
  params = _f64(Conv4(**kw).init(jax.random.PRNGKey(0), data[0][0]))
  fast = conv_formulations.make_meta_step(Conv4(**CPU_FIELDS, **kw))
  ref = conv_formulations.make_meta_step(Conv4(conv='reference', **kw))
  _close(fast(params, *data), ref(params, *data), rtol=1e-9)


@BOTH_FORMULATIONS
def test_maml_meta_gradient_matches_central_differences(x64, formulations):
  data = _tiny_problem(key=4)
  model = Conv4(num_classes=3, width=4, num_blocks=2, activation=jnp.tanh,
                pool_before_norm=True, **formulations)
  params = _f64(model.init(jax.random.PRNGKey(1), data[0][0]))
  step = conv_formulations.make_meta_step(model)
  loss, grads = step(params, *data)
  direction = jax.tree.map(lambda a: jnp.cos(jnp.arange(a.size).reshape(
      a.shape) * 1.7), params)
  eps = 1e-5
  shifted = lambda s: step(jax.tree.map(
      lambda p, d: p + s * d, params, direction), *data)[0]
  numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
  analytic = sum(jnp.vdot(g, d) for g, d in zip(
      jax.tree.leaves(grads), jax.tree.leaves(direction)))
  assert np.isfinite(float(loss))
  np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


def test_conv_names_and_the_backends_choices():
  # The CPU formulation is the fast primitive, the portable one (Conv4's
  # default) im2col; 'auto' is gone.
  assert conv_ops.get_conv(backend.for_backend('cpu').conv) is conv_ops.conv3x3
  assert conv_ops.get_conv(backend.for_backend('gpu').conv) is (
      conv_ops.conv_im2col)
  assert Conv4(num_classes=2).conv == 'im2col' == backend.PORTABLE.conv
  assert conv_ops.get_conv('fast') is conv_ops.conv3x3
  assert conv_ops.get_conv('reference') is conv_ops.conv_reference
  assert conv_ops.get_conv(conv_ops.conv_im2col) is conv_ops.conv_im2col
  assert set(conv_ops.NAMES) == set(backend.CONVS)
  assert set(MAX_POOLS) == set(backend.MAX_POOLS)
  for bad in ('auto', 'fastest', None):
    with pytest.raises(ValueError, match="'fast', 'im2col', 'reference'"):
      conv_ops.get_conv(bad)


@pytest.mark.parametrize('field,value,allowed', [
    ('conv', 'auto', "'fast', 'im2col', 'reference'"),
    ('max_pool', 'auto', "'argmax', 'pairwise'"),
    ('max_pool', True, "'argmax', 'pairwise'"),
    ('fold_norm', 'auto', 'True or False')])
def test_conv4_rejects_bad_formulations(field, value, allowed):
  model = Conv4(num_classes=2, width=16, num_blocks=1, **{field: value})
  x = jax.ShapeDtypeStruct((2, 8, 8, 1), jnp.float32)
  with pytest.raises(ValueError, match=f"Conv4 field '{field}'") as error:
    jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  assert allowed in str(error.value)


@pytest.mark.parametrize('cin,stride', [(1, 1), (1, 2), (3, 1)])
def test_conv_output_moments_are_those_of_the_output(x64, cin, stride):
  x, w = _arrays(5, (3, 7, 6, cin), (3, 3, cin, 5))
  mean, var = conv_ops.conv_output_moments(x, w, stride)
  y = np.asarray(conv_ops.conv_reference(x, w, stride)).reshape(-1, 5)
  _close((mean, var), (y.mean(0), y.var(0)))


def _block_outputs_and_derivatives(block, params, x):
  """Values, gradients (params and x) and an HVP of a smooth scalar."""
  loss = lambda p, x: jnp.sum(jnp.sin(block.apply(p, x)) ** 2)
  grad = jax.grad(loss, (0, 1))
  direction = jax.tree.map(jnp.cos, params)
  hvp = jax.jvp(lambda p: grad(p, x)[0], (params,), (direction,))[1]
  return block.apply(params, x), grad(params, x), hvp


@pytest.mark.parametrize('activation', [jax.nn.relu, jnp.tanh, jax.nn.gelu])
@pytest.mark.parametrize('stride,pool', [(1, True), (2, False)])
def test_folded_block_equals_the_plain_block(x64, activation, stride, pool):
  x, = _arrays(6, (4, 8, 8, 1))
  # The CPU's conv and pool (the formulations fold_norm runs with there).
  kw = dict(width=12, stride=stride, pool=pool, activation=activation,
            conv=conv_ops.conv3x3, max_pool='argmax')
  params = ConvBlock(**kw).init(jax.random.PRNGKey(0), x)
  params = jax.tree.map(lambda a: a + 1.5 * jnp.sin(jnp.arange(a.size)).reshape(
      a.shape), params)  # a non-trivial bias and negative scales
  assert float(params['params']['scale'].min()) < 0
  folded, plain = [_block_outputs_and_derivatives(
      ConvBlock(fold_norm=fold, **kw), params, x) for fold in (True, False)]
  _close(folded, plain)


@BOTH_FORMULATIONS
def test_fold_norm_applies_to_few_input_channels_only(formulations):
  x = jnp.zeros((2, 8, 8, 1))
  kw = dict(num_classes=2, width=16, num_blocks=2,
            conv=formulations['conv'], max_pool=formulations['max_pool'])
  model = Conv4(fold_norm=True, **kw)
  params = model.init(jax.random.PRNGKey(0), x)
  jaxpr = str(jax.make_jaxpr(model.apply)(params, x))
  # block0 (1 channel) sums no squares of its output; block1 (16) does.
  assert 'f32[2,8,8,16] = square' not in jaxpr
  assert 'f32[2,4,4,16] = square' in jaxpr
  # The CPU formulations fold, the portable ones (the default) do not.
  chosen = Conv4(**{**kw, 'fold_norm': formulations['fold_norm']})
  plain = Conv4(fold_norm=False, **kw)
  plain_jaxpr = str(jax.make_jaxpr(plain.apply)(params, x))
  assert str(jax.make_jaxpr(chosen.apply)(params, x)) == (
      jaxpr if formulations['fold_norm'] else plain_jaxpr)
  assert 'f32[2,8,8,16] = square' in plain_jaxpr
  assert str(jax.make_jaxpr(Conv4(**kw).apply)(params, x)) == plain_jaxpr
  for bad in ('yes', 'auto'):
    with pytest.raises(ValueError, match="'fold_norm'"):
      Conv4(num_classes=2, fold_norm=bad).init(jax.random.PRNGKey(0), x)


@pytest.mark.parametrize('conv', ['fast', 'im2col'])
def test_maml_meta_gradient_with_folded_norm(x64, conv):
  data = _tiny_problem(key=7)
  kw = dict(num_classes=3, width=10, num_blocks=2, activation=jnp.tanh,
            conv=conv, max_pool='argmax' if conv == 'fast' else 'pairwise')
  params = _f64(Conv4(**kw).init(jax.random.PRNGKey(2), data[0][0]))
  folded = conv_formulations.make_meta_step(Conv4(fold_norm=True, **kw))
  plain = conv_formulations.make_meta_step(Conv4(fold_norm=False, **kw))
  loss, grads = folded(params, *data)
  _close((loss, grads), plain(params, *data), rtol=1e-9)
  direction = jax.tree.map(lambda a: jnp.cos(jnp.arange(a.size).reshape(
      a.shape) * 0.9), params)
  shifted = lambda s: folded(jax.tree.map(
      lambda p, d: p + s * d, params, direction), *data)[0]
  numeric = (shifted(1e-5) - shifted(-1e-5)) / 2e-5
  analytic = sum(jnp.vdot(g, d) for g, d in zip(
      jax.tree.leaves(grads), jax.tree.leaves(direction)))
  np.testing.assert_allclose(analytic, numeric, rtol=1e-6)
