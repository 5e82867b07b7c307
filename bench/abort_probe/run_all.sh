#!/bin/bash
# Alternating blocks of 20 iterations per variant and stop mode; results in results.jsonl.
cd /work/main
PY=.venv/bin/python
for round in 1 2 3; do
  for stop in simul seq; do
    for v in A B; do
      $PY bench/abort_probe/probe.py --variant $v --stop $stop -n 20 || echo "probe failed rc=$?"
    done
  done
done
for v in A B; do
  $PY bench/abort_probe/probe.py --variant $v --stop simul-now -n 20 || echo "probe failed rc=$?"
done
