"""Few-shot text classification data: HuffPost and CLINC150, read from the
publishers' files once, cached, and sampled inside jit."""
from metajax.tasks.text.corpus import (
    CORPORA, TextCorpus, load_corpus, load_vectors)
from metajax.tasks.text.sampling import (
    TextTasks, check_task_shape, make_task_sampler, sample_tasks)
