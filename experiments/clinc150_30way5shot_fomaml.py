"""First-order MAML on CLINC150 30-way 5-shot, chosen on validation classes.

`experiments._text_base.row_config` with the `idf` encoder (the idf-weighted
mean of the frozen GloVe vectors, a residual 256-unit ReLU branch starting
at zero, L2-normalised times a learned scale) and 500 meta-steps of 8 tasks
at a constant Adam rate of 1e-3, the stop chosen among 500, 1,000, 2,000 and
3,000 meta-steps on 500 validation episodes (domains utility and work; best
69.4 %), never on the meta-test classes, by

  PYTHONPATH=. python experiments/analysis/text_select.py \
      --val_tasks=500 --encoders=idf clinc150_30way5shot_fomaml

Only the `idf` encoder was a candidate (to save CPU: it won every earlier
validation). Training is unstable here: at the 1,000-step stop the
validation accuracy was at chance (3.4 %), back to 57-59 % at 2,000-3,000.
Inner loop: 5 SGD steps at 0.1 in training, 10 at test. Meta-train on 6 domains, meta-test on small_talk and meta
(`metajax.tasks.text.task`).

  python -m metajax clinc150_30way5shot_fomaml

Measured (2026-12-07, 2-core CPU shared with other jobs, 29 s of training to
the chosen stop, validation passes included): 60.0 +- 0.1 % on the 1,000
meta-test episodes (25 queries per class). Untrained nearest mean: 68.2 %
(char 3-grams), 61.9 % (GloVe). No published number on this split.
"""
from experiments._text_base import row_config


def get_config():
  return row_config("clinc150", ways=30, shots=5, algorithm="fomaml",
                    encoder="idf", num_meta_steps=500)
