"""Datasets for meta-learning: Omniglot, loaded once and sampled inside jit."""
from metajax.tasks.omniglot.images import (
    OmniglotArrays, OmniglotSplits, load_omniglot, make_split,
    select_characters, split_character_ids)
from metajax.tasks.omniglot.sampling import (
    OmniglotTasks, check_task_shape, make_task_sampler, sample_tasks)
