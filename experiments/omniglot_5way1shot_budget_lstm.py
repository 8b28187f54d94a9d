"""An LSTM sequence learner (SNAIL's sequences, `algorithm.backbone=lstm`)
on the strided Conv4's features, under the shared 4-minute CPU budget.

The same episodes as `omniglot_5way1shot_budget_snail`: each query's
sequence is the support's (embedding, one-hot label) pairs in a random
order, then the query; one LSTM layer of 200 units (the size of Santoro et
al. 2016's LSTM baseline, without their external memory) reads it and
predicts the query's class at the last step.

  python -m metajax omniglot_5way1shot_budget_lstm

Paper: none for this exact setting (Mishra et al. 2018 and Santoro et al.
2016 report LSTM baselines on other Omniglot protocols).
"""
from experiments.omniglot_5way1shot_budget import budget_config
from experiments.omniglot_5way1shot_budget_snail import NO_INNER_LOOP

NUM_STEPS = 3_000  # What 4 minutes of this CPU buys; see the README.


def get_config():
  return budget_config(
      NUM_STEPS, {
      "algorithm": "snail", **NO_INNER_LOOP,
      "algorithm.backbone": "lstm", "algorithm.lstm_size": 200})
