"""metajax: meta-learning by backpropagation in pure-functional JAX.

The functional API is re-exported here (implementation in `metajax.core`):

  adapt            inner-loop adaptation of any params pytree (lax.scan)
  with_line_search an inner optimizer whose steps never raise the loss
  InnerLoop        frozen settings of the inner loop
  maml_task_loss   post-adaptation query loss of one task
  meta_objective   vmapped mean over a TaskBatch
  maml_meta_grad   MAML's meta-gradient function for the meta-step
  make_meta_step   builds the jitted (state[, tasks]) -> (state, metrics)
  init_meta_state  the MetaState pytree
  Formulations     which equal formulation of each layer and step to run;
  for_backend      the fast ones for a backend (the defaults are portable)
"""
from metajax.algorithms.maml import maml_meta_grad
from metajax.backend import CPU, PORTABLE, Formulations, for_backend
from metajax.core.inner import (
    AdaptResult, adapt, differentiable_adam, with_line_search)
from metajax.core.losses import (
    accuracy_metric, classification_fns, cross_entropy_and_accuracy,
    cross_entropy_loss, mse_loss, tree_is_finite)
from metajax.core.meta_step import (
    PrefetchingStep, init_meta_state, make_meta_step)
from metajax.core.objective import (
    InnerLoop, check_task_batch, maml_task_loss, meta_objective)
from metajax.core.types import MetaState, TaskBatch

__version__ = "0.2.0"
