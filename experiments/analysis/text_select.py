"""Chooses each text row's encoder and stopping point on the validation classes.

For every row (task, ways, shots, algorithm) of docs/text.md, each candidate
encoder of `experiments._text_base.ENCODERS` is trained once with
`row_config` (constant outer rate, `run.seed`), exactly as `python -m metajax`
trains it, and its parameters are validated after each of `STOPS` meta-steps
on `--val_tasks` episodes of the validation classes (HuffPost 20-24,
CLINC150 utility and work), 25 queries per class. The candidate and stop
with the best validation accuracy are chosen; then, and only for that one,
the 1,000 meta-test episodes are evaluated. With a constant rate a run of N
steps is a prefix of a longer one, so the chosen row is reproduced by
`python -m metajax <row> ` with `outer.num_meta_steps` = the chosen stop.

  PYTHONPATH=. python experiments/analysis/text_select.py ROW [ROW ...] \
      [--val_tasks=1000] [--out=runs/text_select] [--encoders=idf] \
      [--stops=500,1000]

ROW is a row name of `ROWS` (e.g. huffpost_5way1shot_protonet) or `all`.
`--encoders` restricts the row's candidate encoders to those named (to save
CPU; each must be one of the row's own candidates); `--stops` replaces
`STOPS` (fewer or earlier stops for the slow 30-way MAML rows).
Prints one line per candidate and stop and the chosen row with its test
accuracy; writes `<out>/<ROW>.json`.
"""
import json
import os
import sys
import time

import jax

from experiments._text_base import row_config
from metajax.training import trainer

STOPS = (500, 1000, 2000, 3000)
HUFFPOST_ENCODERS = ("mean", "idf")
# `ngram_idf` (an 8.4 M-entry table under Adam) trains about 6 times slower
# than the GloVe encoders on the CPU, too slow for the selection budget.
CLINC_ENCODERS = ("mean", "idf")
CLINC_MAML_ENCODERS = CLINC_ENCODERS


def _rows():
  rows = {}
  for shots in (1, 5):
    for algorithm in ("protonet", "matching", "maml", "fomaml", "anil",
                      "cnp"):
      rows[f"huffpost_5way{shots}shot_{algorithm}"] = (
          "huffpost", 5, shots, algorithm, HUFFPOST_ENCODERS)
  for ways in (5, 30):
    for shots in (1, 5):
      for algorithm in ("protonet", "matching", "maml", "fomaml", "anil"):
        rows[f"clinc150_{ways}way{shots}shot_{algorithm}"] = (
            "clinc150", ways, shots, algorithm,
            CLINC_MAML_ENCODERS if algorithm in ("maml", "fomaml", "anil")
            else CLINC_ENCODERS)
  return rows


ROWS = _rows()


def accuracy(run, params, split, num_tasks):
  """Mean accuracy and interval after the last evaluated inner step."""
  (result,) = trainer.evaluate(run, params, split, num_tasks).values()
  last = list(result["accuracy"])[-1]
  return result["accuracy"][last]


def select(row, val_tasks, only_encoders=None, stops=STOPS):
  """Trains the row's candidates, validates each stop, tests the best."""
  task, ways, shots, algorithm, encoders = ROWS[row]
  if only_encoders is not None:
    encoders = tuple(e for e in encoders if e in only_encoders)
  candidates, best = [], None
  for encoder in encoders:
    config = row_config(task, ways, shots, algorithm, encoder, max(stops))
    start = time.perf_counter()
    run = trainer.build_run(config)
    state, tasks = run.state, run.first_tasks(run.state)
    for done in range(1, max(stops) + 1):
      state, tasks, _ = run.call(state, tasks)
      if done in stops:
        params = jax.tree.map(lambda a: a.copy(), state.params)
        val = accuracy(run, params, "val", val_tasks)
        record = {"encoder": encoder, "steps": done, "val": val["mean"],
                  "val_ci95": val["ci95"],
                  "seconds": time.perf_counter() - start}
        candidates.append(record)
        print(f"{row} {encoder} {done} steps: val {100 * val['mean']:.1f} "
              f"+- {100 * val['ci95']:.1f} % ({record['seconds']:.0f} s)",
              flush=True)
        if best is None or val["mean"] > best[0]["val"]:
          best = (record, run, params)
  record, run, params = best
  test = accuracy(run, params, "test", run.config.eval.num_tasks)
  chosen = {**record, "test": test["mean"], "test_ci95": test["ci95"]}
  print(f"{row} CHOSEN {record['encoder']} {record['steps']} steps: test "
        f"{100 * test['mean']:.1f} +- {100 * test['ci95']:.1f} %", flush=True)
  return {"row": row, "encoders": list(encoders), "stops": list(stops),
          "val_tasks": val_tasks,
          "candidates": candidates, "chosen": chosen}


def main(argv):
  val_tasks, out, rows = 1000, os.path.join("runs", "text_select"), []
  encoders, stops = None, STOPS
  for arg in argv:
    if arg.startswith("--val_tasks="):
      val_tasks = int(arg.split("=", 1)[1])
    elif arg.startswith("--encoders="):
      encoders = tuple(arg.split("=", 1)[1].split(","))
    elif arg.startswith("--stops="):
      try:
        stops = tuple(sorted(int(s) for s in arg.split("=", 1)[1].split(",")))
      except ValueError:
        stops = ()
      if not stops or stops[0] < 1:
        raise SystemExit(f"--stops: expected positive meta-step counts "
                         f"separated by commas, got {arg.split('=', 1)[1]!r}")
    elif arg.startswith("--out="):
      out = arg.split("=", 1)[1]
    elif arg == "all":
      rows.extend(ROWS)
    elif arg in ROWS:
      rows.append(arg)
    else:
      raise SystemExit(f"unknown row {arg!r}; expected 'all' or one of "
                       f"{sorted(ROWS)}")
  for row in rows if encoders is not None else ():
    unknown = set(encoders) - set(ROWS[row][4])
    if unknown:
      raise SystemExit(f"--encoders: {sorted(unknown)} not among {row}'s "
                       f"candidates {list(ROWS[row][4])}")
  os.makedirs(out, exist_ok=True)
  for row in rows:
    result = select(row, val_tasks, encoders, stops)
    with open(os.path.join(out, f"{row}.json"), "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main(sys.argv[1:])
