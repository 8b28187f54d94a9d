"""Sequence learners (SNAIL, LSTM): causal; each layer equals its formula."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax.models import snail
from metajax.models.sequence import BACKBONES, LSTM, lstm_bias_init

TINY = {"snail": {"tc_filters": 4, "attention_sizes": (4, 6)},
        "lstm": {"hidden_size": 5}}


def random_params(module, x, seed=0):
  """Normal(0, 0.5) params of `module`'s shapes for input `x` (no compile:
  `module.init` compiles a threefry per parameter, seconds of CPU)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(module.init, jax.random.key(0), x)
  return jax.tree.map(lambda s: jnp.asarray(
      0.5 * rng.normal(size=s.shape), s.dtype), shapes)


def numpy_causal_attention(q, k, v):
  length = q.shape[1]
  mask = np.where(np.tril(np.ones((length, length))) > 0, 0.0, -np.inf)
  logits = q @ np.swapaxes(k, 1, 2) / np.sqrt(q.shape[-1]) + mask
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  return (weights / weights.sum(-1, keepdims=True)) @ v


def test_causal_attention_equals_numpy_softmax_with_mask():
  rng = np.random.default_rng(0)
  q, k = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 3))
  v = rng.normal(size=(2, 5, 4))
  np.testing.assert_allclose(
      snail.causal_attention(*map(jnp.asarray, (q, k, v))),
      numpy_causal_attention(q, k, v), rtol=1e-5, atol=1e-6)
  # The block appends that attention of its own projections to its input.
  x = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
  block = snail.AttentionBlock(key_size=4, value_size=2)
  params = random_params(block, x)["params"]
  qkv = (np.asarray(x) @ np.asarray(params["qkv"]["kernel"])
         + np.asarray(params["qkv"]["bias"])[None, None])
  query, key, value = qkv[..., :4], qkv[..., 4:8], qkv[..., 8:]
  assert value.shape == (2, 5, 2)
  expected = np.concatenate(
      [np.asarray(x), numpy_causal_attention(query, key, value)], axis=-1)
  np.testing.assert_allclose(block.apply({"params": params}, x), expected,
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("taps,dilation", [(2, 1), (2, 2), (2, 4), (3, 2),
                                           (2, 8)])
def test_dilated_causal_conv_equals_an_explicit_loop(taps, dilation):
  rng = np.random.default_rng(taps * 10 + dilation)
  x, kernel = rng.normal(size=(2, 7, 3)), rng.normal(size=(taps, 3, 4))
  bias = rng.normal(size=(4,))
  expected = np.zeros((2, 7, 4))
  for t in range(7):
    expected[:, t] = bias
    for i in range(taps):
      source = t - (taps - 1 - i) * dilation
      if source >= 0:
        expected[:, t] += x[:, source] @ kernel[i]
  np.testing.assert_allclose(
      snail.causal_conv1d(jnp.asarray(x), jnp.asarray(kernel),
                          jnp.asarray(bias), dilation),
      expected, rtol=1e-5, atol=1e-5)


def test_tc_blocks_have_log2_depth_and_doubling_dilations():
  assert [snail.tc_depth(t) for t in (2, 3, 4, 5, 6, 8, 9, 26, 101)] == [
      1, 2, 2, 3, 3, 3, 4, 5, 7]
  model = BACKBONES["snail"](num_outputs=2, max_length=6, **TINY["snail"])
  params = jax.eval_shape(model.init, jax.random.key(0),
                          jnp.zeros((1, 6, 3)))["params"]
  assert sorted(params["tc1"]) == ["dense0", "dense1", "dense2"]
  # Each dense block appends its filters: the output layer reads the input
  # (3), the attention values (2 + 3) and 3 dense blocks' 4 filters.
  assert params["output"]["kernel"].shape == (3 + 2 + 3 + 3 * 4, 2)
  # Dilations 1 and 2 (max_length 4, depth 2): a TC block's new features at
  # t read exactly the inputs t-3..t.
  block = snail.TCBlock(max_length=4, filters=2)
  x_1xTxD = jax.random.normal(jax.random.key(1), (1, 7, 3))
  block_params = random_params(block, x_1xTxD)
  jacobian = jax.jit(jax.jacfwd(
      lambda x: block.apply(block_params, x)[0, :, 3:]))(
      x_1xTxD)[:, :, 0]
  reach = np.abs(np.asarray(jacobian)).sum(axis=(1, 3)) > 0
  back = np.arange(7)[:, None] - np.arange(7)[None, :]
  np.testing.assert_array_equal(reach, (back >= 0) & (back <= 3))


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_outputs_do_not_depend_on_later_inputs(name):
  model = BACKBONES[name](num_outputs=3, max_length=8, **TINY[name])
  x_1xTxD = jax.random.normal(jax.random.key(1), (1, 7, 4))
  params = random_params(model, x_1xTxD)
  jacobian = jax.jit(jax.jacfwd(lambda x: model.apply(params, x)[0]))(
      x_1xTxD)[:, :, 0]  # [T out, C, T in, D]
  reach = np.abs(np.asarray(jacobian)).sum(axis=(1, 3))  # [T out, T in]
  later = np.triu(np.ones((7, 7), bool), k=1)
  assert np.all(reach[later] == 0), reach
  assert np.all(reach[~later] > 0), reach  # every earlier input is read


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_sequences_longer_than_max_length_raise(name):
  model = BACKBONES[name](num_outputs=2, max_length=4, **TINY[name])
  with pytest.raises(ValueError, match="max_length=4"):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 5, 3)))


def test_lstm_equals_a_numpy_loop():
  model = LSTM(num_outputs=2, max_length=4, hidden_size=3)
  x = jax.random.normal(jax.random.key(2), (2, 4, 5))
  params = random_params(model, x)["params"]
  w_x, w_h, b = (np.asarray(params[n]) for n in
                 ("input_kernel", "recurrent_kernel", "bias"))
  sigmoid = lambda z: 1 / (1 + np.exp(-z))
  h, c, outputs = np.zeros((2, 3)), np.zeros((2, 3)), []
  for t in range(4):
    i, f, g, o = np.split(np.asarray(x[:, t]) @ w_x + h @ w_h + b, 4, -1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    outputs.append(h @ np.asarray(params["output"]["kernel"])
                   + np.asarray(params["output"]["bias"]))
  np.testing.assert_allclose(model.apply({"params": params}, x),
                             np.stack(outputs, 1), rtol=1e-5, atol=1e-5)


def test_lstm_forget_gate_bias_starts_at_one():
  bias = np.asarray(lstm_bias_init(None, (12,)))
  np.testing.assert_array_equal(bias, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
