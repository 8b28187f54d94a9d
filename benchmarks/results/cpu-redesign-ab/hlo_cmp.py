import glob, hashlib, re, collections, sys
def mods(d):
    out = collections.Counter(); sizes = {}
    for p in glob.glob(f"{d}/*after_optimizations.txt"):
        t = open(p).read()
        t = re.sub(r"HloModule \S+", "HloModule M", t)
        t = re.sub(r'metadata=\{[^}]*\}', '', t)
        t = re.sub(r'source_file="[^"]*"', '', t)
        t = "\n".join(l for l in t.splitlines() if not re.match(r"^\d+ ", l) and l.strip() not in ("FileNames","FunctionNames","FileLocations","StackFrames"))
        t = re.sub(r', stack_frame_id=\d+', '', t)
        t = t.replace("make_meta_step__locals__", "")
        h = hashlib.sha1(t.encode()).hexdigest()[:10]
        name = re.sub(r"^module_\d+\.", "", p.split("/")[-1]).replace(".cpu_after_optimizations.txt","")
        name = re.sub(r"\.\d+$","",name)
        out[(name, h)] += 1; sizes[(name,h)] = len(t)
    return out, sizes
a, sa = mods("/tmp/dump-before"); b, sb = mods("/tmp/dump-main")
big = lambda c, s: {k: v for k, v in c.items() if s[k] > 20000}
A, B = big(a, sa), big(b, sb)
print("large modules before:", len(A), "after:", len(B))
print("same (name, hash):", len(set(A) & set(B)))
print("only before:", sorted(set(A) - set(B)))
print("only after:", sorted(set(B) - set(A)))
