#!/bin/bash
# Second plan: finish baseline round 1, then the flood amplifier, then more baseline rounds.
cd /work/main
PY=.venv/bin/python
P=bench/abort_probe/probe.py
while pgrep -f "bench/abort_probe/probe.py --variant A --stop seq" >/dev/null; do sleep 1; done
$PY $P --variant B --stop seq -n 20
for stop in seq simul; do
  for v in A B; do
    $PY $P --variant $v --stop $stop -n 15 --flood 2000 --cores
  done
done
for v in A B; do
  $PY $P --variant $v --stop simul-now -n 10 --flood 2000 --cores
done
for round in 2 3 4; do
  for stop in seq simul; do
    for v in A B; do
      $PY $P --variant $v --stop $stop -n 20
    done
  done
done
