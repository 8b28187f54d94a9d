"""Checkpoints of the full meta-state with Orbax, verified on restore.

A checkpoint holds the `MetaState` (params, outer optimizer state, step, PRNG
key data, non-finite counters) and a SHA-256 digest of its arrays. Orbax
writes each step into a temporary directory and renames it when complete, so
a process killed mid-write leaves no partial checkpoint behind; the digest
catches files corrupted after the fact. Task samplers are pure functions of
`fold_in(key, step)`, so the state is all a run needs to continue exactly.
"""
import hashlib
import os
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp

from metajax.core.types import MetaState


class CorruptCheckpointError(RuntimeError):
  """A checkpoint failed to restore or did not match its digest."""


def _to_saveable(state: MetaState) -> dict:
  return {"params": state.params, "opt_state": state.opt_state,
          "step": state.step, "key_data": jax.random.key_data(state.key),
          "nonfinite_count": state.nonfinite_count,
          "first_nonfinite_step": state.first_nonfinite_step}


def state_digest(tree) -> str:
  """SHA-256 over every leaf's dtype, shape and bytes, in tree order."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    leaf = np.asarray(leaf)
    digest.update(f"{leaf.dtype}{leaf.shape}".encode())
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()


class Checkpointer:
  """Saves and restores `MetaState`s under `directory`, keeping the last N."""

  def __init__(self, directory: str, max_to_keep: int = 3):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True,
            enable_async_checkpointing=False))

  def save(self, state: MetaState) -> int:
    """Writes `state` at its step (synchronously); returns the step.

    Raises ValueError when a checkpoint at that step or a later one exists:
    Orbax would skip the save without a word.
    """
    tree = jax.device_get(_to_saveable(state))
    step = int(tree["step"])
    saved = self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(tree),
        digest=ocp.args.JsonSave({"sha256": state_digest(tree)})))
    if not saved:
      raise ValueError(f"checkpoint at step {step} not written: "
                       f"{self.directory} holds steps {self.steps()}")
    self._manager.wait_until_finished()
    return step

  def set_aside(self, step: int) -> str:
    """Moves the checkpoint at `step` out of the directory (into
    `unreadable_checkpoints/<step>` beside it), so that the run can write
    that step again; nothing is deleted. Returns the new path."""
    target = os.path.join(os.path.dirname(self.directory),
                          "unreadable_checkpoints", str(step))
    if os.path.exists(target):
      target = f"{target}-{len(os.listdir(os.path.dirname(target)))}"
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.rename(os.path.join(self.directory, str(step)), target)
    self._manager.reload()
    return target

  def steps(self) -> list:
    return sorted(self._manager.all_steps())

  def restore(self, template: MetaState, step=None) -> MetaState:
    """The checkpoint at `step` (default: the newest valid one).

    A checkpoint that fails to load or to match its digest is reported with
    a warning and skipped in favour of the previous one; if none is valid,
    raises CorruptCheckpointError naming the directory.
    """
    candidates = [step] if step is not None else self.steps()[::-1]
    if not candidates:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    target = jax.device_get(_to_saveable(template))
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    problems = []
    for candidate in candidates:
      try:
        restored = self._manager.restore(candidate, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract),
            digest=ocp.args.JsonRestore()))
        tree, digest = restored["state"], restored["digest"]["sha256"]
        if state_digest(tree) != digest:
          raise CorruptCheckpointError("contents do not match the digest")
      except Exception as e:  # pylint: disable=broad-except
        problems.append(f"step {candidate}: {type(e).__name__}: {e}")
        warnings.warn(f"checkpoint at step {candidate} in {self.directory} is "
                      f"corrupted and was not loaded ({e})")
        continue
      return MetaState(
          params=tree["params"], opt_state=tree["opt_state"],
          step=tree["step"], key=jax.random.wrap_key_data(tree["key_data"]),
          nonfinite_count=tree["nonfinite_count"],
          first_nonfinite_step=tree["first_nonfinite_step"])
    raise CorruptCheckpointError(
        f"no valid checkpoint in {self.directory}: " + "; ".join(problems))

  def close(self):
    self._manager.close()
