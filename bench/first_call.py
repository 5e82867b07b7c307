"""6. First Python call on a new channel thread vs a later call on the same thread.

Every channel runs its dialplan in a new Asterisk thread, so whatever pbx_python does the first
time a thread enters Python (a thread state, first-use caches) is paid by every call.

Method: one Asterisk (CDR, CEL and AMI off, verbose 0). Fresh Local channels, one at a time (the
previous one is gone before the next starts, so nothing contends), each run as its first priority
one Set() whose single substitution reads, left to right,
    t0 ${PYLEN(x)} t1 ${PYLEN(x)} t2          (t = ${STRFTIME(,,%s.%6q)}, microseconds)
so first = t1 - t0 is the channel thread's first Python call and second = t2 - t1 the next one on
the same thread, each with one STRFTIME. The same with the native ${LEN(x)} is the control: it
shows what "first on a new thread" costs without Python (cold caches, the first STRFTIME). Extra
cost = first - second per channel; per repetition the median over its channels; statistics over
repetitions. Channels of the two kinds alternate. A few channels of each kind run first and are
not counted (the process's first Python call imports and warms what every later thread shares).
The clock has 1 µs resolution; the per-channel differences are medians of tens of channels.
"""
from __future__ import annotations

import statistics
from typing import Any

from common import NO_AMI, NOW, Instance, Mode, log, originate_local, stats, wait_bench_lines, wait_no_channels

FUNCS = {"python": "PYLEN", "native": "LEN"}
WARMUP = 3


def extension(name: str, func: str) -> str:
    expr = f"{NOW} ${{{func}(x)}} {NOW} ${{{func}(x)}} {NOW}"
    return (f"exten => {name},1,Set(FC={expr})\n"
            f" same => n,Verbose(0,BENCH {name} ${{FC}})\n"
            " same => n,Hangup()\n")


def dialplan() -> str:
    return ("[general]\nstatic = yes\nwriteprotect = yes\n\n[bench]\n"
            + "".join(extension(f"fc_{k}", fn) for k, fn in FUNCS.items()))


def micros(stamp: str) -> int:
    """'1796103910.123456' -> microseconds (exact: no float rounding)."""
    sec, _, frac = stamp.partition(".")
    return int(sec) * 1_000_000 + int((frac + "000000")[:6])


def parse(line: str) -> tuple[int, int]:
    """A 'BENCH fc_x' line's rest 't0 v t1 v t2' -> (first µs, second µs)."""
    f = line.split()
    t0, t1, t2 = micros(f[0]), micros(f[2]), micros(f[4])
    return t1 - t0, t2 - t1


def one_channel(ast: Any, kind: str) -> tuple[int, int]:
    name = f"fc_{kind}"
    since = ast.log_offset()
    originate_local(ast, name)
    line = wait_bench_lines(ast, name, 1, since, timeout=30)[0]
    wait_no_channels(ast, 20)
    return parse(line)


def run(mode: Mode) -> dict[str, Any]:
    per_rep = 20 if mode.quick else 60
    raw: dict[str, list[list[tuple[int, int]]]] = {k: [] for k in FUNCS}
    inst = Instance("first", dialplan(), configs=NO_AMI)
    try:
        ast = inst.ast
        for _ in range(WARMUP):
            for kind in FUNCS:
                one_channel(ast, kind)
        for rep in range(mode.reps):
            rows: dict[str, list[tuple[int, int]]] = {k: [] for k in FUNCS}
            for _ in range(per_rep):
                for kind in FUNCS:
                    rows[kind].append(one_channel(ast, kind))
            for kind in FUNCS:
                raw[kind].append(rows[kind])
            log(f"first_call rep {rep + 1}/{mode.reps}: " + ", ".join(
                f"{k} first={statistics.median(a for a, _ in r)} second={statistics.median(b for _, b in r)} µs"
                for k, r in rows.items()))
        errors = [ln for ln in ast.log_text().splitlines() if " ERROR[" in ln and "python" in ln.lower()]
    finally:
        inst.close()
    return {"method": __doc__.strip(), "channels_per_rep": per_rep, "warmup_channels": WARMUP,
            "kinds": summarise(raw), "python_errors": errors[:5]}


def summarise(raw: dict[str, list[list[tuple[int, int]]]]) -> dict[str, Any]:
    """Per kind: first / second / extra µs, each the statistics over repetitions of the per-repetition
    median over channels."""
    out: dict[str, Any] = {}
    for kind, reps in raw.items():
        out[kind] = {
            "first_us": stats([statistics.median(a for a, _ in r) for r in reps if r]),
            "second_us": stats([statistics.median(b for _, b in r) for r in reps if r]),
            "extra_us": stats([statistics.median(a - b for a, b in r) for r in reps if r]),
        }
    return out


if __name__ == "__main__":
    import json
    print(json.dumps({k: {m: v[m]["median"] for m in v} for k, v in run(Mode("quick", 5))["kinds"].items()},
                     indent=1))
