export METAJAX_DATA_DIR=/work/shared/data
for i in 1 2; do
  (cd /tmp/before && timeout 1500 python -m benchmarks.suite --problems omniglot5 --no-memory --out /tmp/ab/before-omni-$i > /tmp/ab/before-omni-$i.log 2>&1)
  (cd /work/main && timeout 1500 python -m benchmarks.suite --problems omniglot5 --no-memory --out /tmp/ab/after-omni-$i > /tmp/ab/after-omni-$i.log 2>&1)
done
echo done > /tmp/ab/omni.done
