"""GPU A/B (scratch): task prefetch on sine per-call rows; Conv4 pool/fold."""
import functools, json, os, sys, time
import jax
from benchmarks import problems, timing
from metajax import meta_step, train
from metajax.models import conv4
import benchmarks.problems as bp

out = sys.argv[1]
which = sys.argv[2]
rows = []
real_make = meta_step.make_meta_step
real_pool = conv4.signed_max_pool_2x2
real_build_model = __import__("metajax.tasks.omniglot.task", fromlist=["x"]).build_model

def timed(name, config, variant):
  t0 = time.perf_counter()
  run, _ = problems.build(config)
  summary, _ = timing.time_stateful(run.step_fn, run.state, warmup=5,
                                    samples=30, target_seconds=0.05,
                                    max_seconds=8.0)
  row = {"name": name, "variant": variant, "median_ms": summary["median_ms"],
         "p25": summary["p25_ms"], "p75": summary["p75_ms"],
         "total_s": time.perf_counter() - t0}
  print(json.dumps(row), flush=True)
  rows.append(row)
  with open(os.path.join(out, f"ab_{which}.json"), "w") as f:
    json.dump({"device": timing.device_info(), "rows": rows}, f, indent=1)

if which == "sine":
  for rep in range(2):
    for steps, fo in ((1, False), (5, False), (5, True)):
      for prefetch in (True, False):
        make = functools.partial(real_make, prefetch_tasks=prefetch)
        train.make_meta_step = make
        config = problems.sine_config(inner_steps=steps, first_order=fo)
        timed(f"sine {steps}-step {'1st' if fo else '2nd'}", config,
              f"prefetch={prefetch}")
else:
  import metajax.tasks.omniglot.task as op
  for fold, argmax in ((True, True), (True, False), (False, True)):
    op.build_model = lambda c, fold=fold: conv4.Conv4(
        num_classes=c.num_ways, strided=c.model == "conv4_strided",
        conv=c.conv, fold_norm=fold)
    conv4.signed_max_pool_2x2 = functools.partial(real_pool, by_argmax=argmax)
    config = problems.omniglot_config(5, bool(os.environ.get("QUICK")), inner_steps=1, conv="im2col")
    timed("omniglot 5-way 1-shot 1-step 2nd", config,
          f"fold_norm={fold} by_argmax={argmax}")
