import json, glob, sys, statistics
kind = sys.argv[1]
def load(side):
    runs = []
    for path in sorted(glob.glob(f"benchmarks/results/cpu-redesign-ab/{side}-{kind}-*/results.json")):
        d = json.load(open(path))
        runs.append({r["name"]: r["ms_per_step"] for r in d["rows"] if r["framework"] == "metajax"})
    return runs
before, after = load("before"), load("after")
names = list(before[0])
print(f"| row | before: median [p25-p75] per run, ms | after: median [p25-p75] per run, ms | after / before (median of run medians) |")
print("| --- | --- | --- | --- |")
for n in names:
    fmt = lambda runs: "; ".join(f"{r[n]['median_ms']:.3g} [{r[n]['p25_ms']:.3g}-{r[n]['p75_ms']:.3g}]" for r in runs if n in r)
    mb = statistics.median(r[n]["median_ms"] for r in before)
    ma = statistics.median(r[n]["median_ms"] for r in after if n in r)
    print(f"| {n} | {fmt(before)} | {fmt(after)} | {ma/mb:.2f} |")
