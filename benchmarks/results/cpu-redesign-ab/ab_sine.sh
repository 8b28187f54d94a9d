for i in 1 2 3; do
  (cd /tmp/before && timeout 900 python -m benchmarks.suite --problems sine --no-memory --out /tmp/ab/before-sine-$i > /tmp/ab/before-sine-$i.log 2>&1)
  (cd /work/main && timeout 900 python -m benchmarks.suite --problems sine --no-memory --out /tmp/ab/after-sine-$i > /tmp/ab/after-sine-$i.log 2>&1)
done
