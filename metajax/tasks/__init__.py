"""Synthetic task families, sampled inside jit from a PRNG key."""
from metajax.tasks.regression_sampling import (
    LinearTasks, SineTasks, sample_linear_tasks, sample_sine_tasks)
