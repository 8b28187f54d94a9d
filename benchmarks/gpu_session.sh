#!/usr/bin/env bash
# One GPU lease, end to end (about 9 minutes on an H200):
#   1. which Conv4 formulation (formulations.conv) is fastest there, for the suite's
#      Omniglot row and for the paper's strided training config
#      (benchmarks.pick_conv);
#   2. the MAML paper's four Omniglot configs (5/20-way, 1/5-shot) trained side
#      by side on the one GPU for TRAIN_SECONDS of wall time each
#      (outer.max_train_seconds; steps fused 10 per call (outer.steps_per_call),
#      pre-adaptation metrics off (run.pre_metrics)),
#      then evaluated on the 600 fixed meta-test tasks;
#   3. the benchmark suite (sine, Omniglot 5- and 20-way, PyTorch on the same
#      GPU in the same run), its FLOPs counted on CPU beforehand with
#      `python -m benchmarks.suite --problems sine,omniglot5,omniglot20
#      --flops-only --flops-for gpu --out benchmarks/results/flops-gpu` (the
#      GPU's formulations, lowered on CPU: GPU backends only count compiled
#      modules, and compiling unrolled Omniglot steps takes minutes).
#
# Run from the repository root on a CUDA machine that has jax[cuda], flax,
# optax, orbax-checkpoint and torch, with the Omniglot zips under
# $METAJAX_DATA_DIR/omniglot:
#   OUT_DIR=gpu-session TRAIN_SECONDS=200 TOTAL_SECONDS=560 \
#     bash benchmarks/gpu_session.sh
# Everything lands in OUT_DIR: env.txt, pick_*.json/.log, runs/<experiment>
# (results.json, metrics, validation) with runs/<experiment>.log, suite/ and
# suite.log. Every stage has a time limit and the suite gets what is left of
# TOTAL_SECONDS, so the script ends inside it.
set -u
OUT_DIR=${OUT_DIR:-gpu-session}
TRAIN_SECONDS=${TRAIN_SECONDS:-200}
TOTAL_SECONDS=${TOTAL_SECONDS:-560}
PY=${PYTHON:-python3}
END=$((SECONDS + TOTAL_SECONDS))
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT_DIR/runs" "$OUT_DIR/suite"
stamp() { echo "[$(date +%T)] $*"; }

stamp "environment" > "$OUT_DIR/env.txt"
{ nvidia-smi -L; $PY -c "import jax, flax, optax, orbax.checkpoint, torch;
print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__,
      'optax', optax.__version__, 'torch', torch.__version__)"; } \
  >> "$OUT_DIR/env.txt" 2>&1
cat "$OUT_DIR/env.txt"

pick() {  # name, then pick_conv arguments; echoes the fastest formulation
  local best
  best=$(timeout 100 $PY -m benchmarks.pick_conv --out "$OUT_DIR/pick_$1.json" \
           "${@:2}" 2> "$OUT_DIR/pick_$1.err" | tee "$OUT_DIR/pick_$1.log" \
         | tail -1)
  case $best in fast|im2col|reference) echo "$best" ;; *) echo fast ;; esac
}
stamp "conv formulations"
suite_conv=$(pick suite)
train_conv=$(pick train --experiment omniglot_5way1shot \
               --overrides outer.steps_per_call=10,run.pre_metrics=false)
cat "$OUT_DIR"/pick_*.log
stamp "suite conv: $suite_conv, training conv: $train_conv"

stamp "training, $TRAIN_SECONDS s each, side by side"
for experiment in omniglot_5way1shot omniglot_5way5shot omniglot_20way1shot \
                  omniglot_20way5shot; do
  timeout $((TRAIN_SECONDS + 110)) $PY -m metajax "$experiment" \
    --outer.steps_per_call=10 --run.pre_metrics=false \
    --formulations.conv="$train_conv" \
    --outer.max_train_seconds="$TRAIN_SECONDS" \
    --run_dir="$OUT_DIR/runs/$experiment" \
    --no_progress > "$OUT_DIR/runs/$experiment.log" 2>&1 &
done
wait
tail -n 4 "$OUT_DIR"/runs/*.log

stamp "benchmark suite, $((END - SECONDS - 5)) s left"
timeout $((END - SECONDS - 5)) $PY -m benchmarks.suite \
  --problems sine,omniglot5,omniglot20 --torch --torch-seconds 10 --no-memory \
  --conv "$suite_conv" --flops-from benchmarks/results/flops-gpu/flops.json \
  --out "$OUT_DIR/suite" > "$OUT_DIR/suite.log" 2>&1
tail -n 40 "$OUT_DIR/suite.log"
stamp "done"
