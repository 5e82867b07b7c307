"""2. Concurrency: 1, 4, 10 and 50 channels running Python vs native loops at the same time.

One Asterisk (CDR, CEL and AMI off, verbose 0). For each level c, c Local channels are originated;
they wait in the dialplan for the global GO=1 (set once every channel is up), then each runs
total/c iterations of its loop body and logs dialplan-side timestamps:
  python: PySet(${PYLEN(hello)})        (a Python application whose argument calls a Python function)
  native: Set(PYX=${LEN(hello)})
Aggregate throughput = total iterations / (last channel's end - first channel's start).
The same total work is split across the channels at every level.
"""
from __future__ import annotations

import re
import time
from typing import Any

from common import NO_AMI, Instance, Mode, log, loop_extension, stats, wait_bench_lines, wait_no_channels

LEVELS = (1, 4, 10, 50)
BODIES = {"native": ["Set(PYX=${LEN(hello)})"], "python": ["PySet(${PYLEN(hello)})"]}


def dialplan(total: int) -> str:
    parts = ["[general]\nstatic = yes\nwriteprotect = yes\n\n[bench]\n"]
    for c in LEVELS:
        for impl, body in BODIES.items():
            parts.append(loop_extension(f"{impl}_{c}", total // c, body, barrier=True))
    return "".join(parts)


def active_channels(ast: Any) -> int:
    m = re.search(r"(\d+) active channels?", ast.cli("core show channels count"))
    return int(m.group(1)) if m else -1


def one_step(ast: Any, impl: str, c: int, total: int) -> dict[str, float]:
    name = f"{impl}_{c}"
    ast.cli("dialplan set global GO 0")
    since = ast.log_offset()
    for _ in range(c):
        ast.cli(f"channel originate Local/{name}@bench application Wait 3600")
    deadline = time.monotonic() + 60
    while active_channels(ast) < 2 * c:       # both halves of every Local channel are up
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: only {active_channels(ast)} of {2 * c} channels up")
        time.sleep(0.05)
    time.sleep(0.2)                           # every ;2 half is in the barrier loop
    ast.cli("dialplan set global GO 1")
    lines = wait_bench_lines(ast, name, c, since, timeout=600)
    t0s = [float(ln.split()[0]) for ln in lines]
    t1s = [float(ln.split()[1]) for ln in lines]
    wall = max(t1s) - min(t0s)
    iters = (total // c) * c
    wait_no_channels(ast, 60)
    return {"wall_s": wall, "iterations": iters, "throughput": iters / wall,
            "start_spread_ms": (max(t0s) - min(t0s)) * 1e3}


def run(mode: Mode) -> dict[str, Any]:
    total = 10000 if mode.quick else 30000
    raw: dict[str, dict[int, list[dict[str, float]]]] = {i: {c: [] for c in LEVELS} for i in BODIES}
    inst = Instance("conc", dialplan(total), configs=NO_AMI)
    try:
        for rep in range(mode.reps):
            for c in LEVELS:
                for impl in BODIES:
                    raw[impl][c].append(one_step(inst.ast, impl, c, total))
            log(f"concurrency rep {rep + 1}/{mode.reps}: " + ", ".join(
                f"{impl}@{c}={raw[impl][c][-1]['throughput']:.0f}/s" for c in LEVELS for impl in BODIES))
        errors = [ln for ln in inst.ast.log_text().splitlines() if " ERROR[" in ln]
    finally:
        inst.close()
    levels: dict[str, Any] = {}
    for c in LEVELS:
        nat = [r["throughput"] for r in raw["native"][c]]
        py = [r["throughput"] for r in raw["python"][c]]
        levels[str(c)] = {
            "native_per_s": stats(nat), "python_per_s": stats(py),
            "ratio": stats([p / n for p, n in zip(py, nat)]),     # per repetition (adjacent runs)
            "native_start_spread_ms": stats([r["start_spread_ms"] for r in raw["native"][c]]),
            "python_start_spread_ms": stats([r["start_spread_ms"] for r in raw["python"][c]]),
        }
    return {"method": __doc__.strip(), "total_iterations": total, "bodies": BODIES, "levels": levels,
            "errors": errors[:5]}


if __name__ == "__main__":
    import json
    r = run(Mode("quick", 5))
    print(json.dumps({c: (v["native_per_s"]["median"], v["python_per_s"]["median"], v["ratio"]["median"])
                      for c, v in r["levels"].items()}, indent=1))
