"""1. Dispatch cost per call: Python function/application vs native, FastAGI and pbx_lua.

One Asterisk (CDR, CEL and AMI off, verbose 0) runs dialplan While loops on one Local channel at a
time. Each loop body holds k_lo (1) or k_hi (10) calls; the dialplan takes its own timestamps
(STRFTIME %s.%6q) before and after the loop and logs them, so originate and log latency are not
measured. marginal cost per call = (per-iteration time with k_hi - with k_lo) / (k_hi - k_lo).
A repetition runs every variant: its k_lo and k_hi loops each run `tries` times, alternating, and
the fastest run of each counts (best-of-N filters out bursts of other load on a shared VM, which
only ever slow a loop down); the statistics are over repetitions.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any, Callable

from common import (NO_AMI, FastAgiServer, Instance, Mode, loadavg, log, loop_extension, marginal_cost,
                    stats)


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    group: str
    body: Callable[[int], list[str]]
    n_quick: int
    n_full: int
    k_hi: int = 10
    check: str = ""      # "VAR=value" the loop must leave on the channel (checked once per run)
    tries: int = 3       # runs of each loop per repetition; the fastest counts


def _repeat(item: str) -> Callable[[int], list[str]]:
    return lambda k: [item] * k


def _in_one_set(expr: str) -> Callable[[int], list[str]]:
    return lambda k: [f"Set(X={expr * k})"]


def variants(agi: FastAgiServer | None) -> list[Variant]:
    v = [
        Variant("len", "native function ${LEN(hello)}", "function", _in_one_set("${LEN(hello)}"), 3000, 10000,
                check="X=5"),
        Variant("pylen", "Python function ${PYLEN(hello)}", "function", _in_one_set("${PYLEN(hello)}"), 3000, 10000,
                check="X=5"),
        Variant("noop", "native app NoOp()", "application", _repeat("NoOp()"), 3000, 10000),
        Variant("set", "native app Set(PYX=hello)", "application", _repeat("Set(PYX=hello)"), 3000, 10000,
                check="PYX=hello"),
        Variant("pynop", "Python app PyNop() (no C call inside)", "application", _repeat("PyNop()"), 3000, 10000),
        Variant("pyset", "Python app PySet(hello) (one set_var)", "application", _repeat("PySet(hello)"), 3000, 10000,
                check="PYX=hello"),
        Variant("pysetnow", "Python app PySetNow(hello) (set_var + get_var: 1 C call)", "application",
                _repeat("PySetNow(hello)"), 1500, 5000, check="PYX=hello"),
        Variant("gosub", "native Gosub into Set + Return", "gosub", _repeat("Gosub(sub-set,s,1)"), 1500, 5000,
                check="SUBX=hello"),
    ]
    if agi is not None:
        v += [
            Variant("agi_noop", "FastAGI (panoramisk), connect + no command", "fastagi",
                    _repeat(f"AGI({agi.url('noop')})"), 10, 20),
            Variant("agi_set", "FastAGI (panoramisk), one SET VARIABLE", "fastagi",
                    _repeat(f"AGI({agi.url('set')})"), 10, 20, check="AGIX=hello"),
        ]
    v += [
        Variant("lua", "pbx_lua: Gosub into a Lua context that sets a variable", "lua",
                _repeat("Gosub(luabench,set,1)"), 3, 4, k_hi=4,
                check="LUAX=hello", tries=1),
        Variant("lua_nas", "pbx_lua: same, Lua calls autoservice_stop() first", "lua",
                _repeat("Gosub(luabench,setnas,1)"), 3, 4, k_hi=4,
                check="LUAX=hello", tries=1),
    ]
    return v


EXTENSIONS_LUA = textwrap.dedent("""\
    extensions = {
      luabench = {
        ["set"] = function(c, e)
          channel.LUAX:set("hello")
          app.Return()
        end;
        ["setnas"] = function(c, e)
          autoservice_stop()
          channel.LUAX:set("hello")
          app.Return()
        end;
      };
    }
    """)


def dialplan(vs: list[Variant], mode: Mode) -> str:
    parts = ["[general]\nstatic = yes\nwriteprotect = yes\n\n[sub-set]\n"
             "exten => s,1,Set(SUBX=hello)\n same => n,Return()\n\n[bench]\n"]
    for v in vs:
        n = v.n_quick if mode.quick else v.n_full
        for k in (1, v.k_hi):
            report = f"{v.check.split('=')[0]}=${{{v.check.split('=')[0]}}}" if v.check else ""
            parts.append(loop_extension(f"{v.key}_{k}", n, v.body(k), report=report))
    return "".join(parts)


def check_loop(v: Variant, seen_lo: str, seen_hi: str) -> None:
    """Raise when a loop of variant v did not do its work (its output starts with v.check)."""
    if v.check and not (seen_lo.startswith(v.check) and seen_hi.startswith(v.check)):
        raise RuntimeError(f"dispatch {v.key}: the loop did not do its work: "
                           f"expected {v.check}, saw {seen_lo!r} / {seen_hi!r}")


def run(mode: Mode, only_variants: list[str] | None = None) -> dict[str, Any]:
    from common import pick_host, release_host
    host = pick_host()
    agi = FastAgiServer(host)
    try:
        vs = variants(agi)
        if only_variants:
            vs = [v for v in vs if v.key in only_variants]
        raw: dict[str, list[dict[str, float]]] = {v.key: [] for v in vs}
        inst = Instance("disp", dialplan(vs, mode), host=host, configs={**NO_AMI, "extensions.lua": EXTENSIONS_LUA},
                        noload=())
        try:
            ast = inst.ast
            for rep in range(mode.reps):
                for v in vs:
                    n = v.n_quick if mode.quick else v.n_full
                    raw[v.key].append(marginal_cost(ast, v.key, n, v.k_hi, v.tries,
                                                    check=lambda lo, hi, v=v: check_loop(v, lo, hi)))
                log(f"dispatch rep {rep + 1}/{mode.reps}: " + ", ".join(
                    f"{k}={r[-1]['marginal_us']:.2f}" for k, r in raw.items() if r))
            errors = [ln for ln in ast.log_text().splitlines() if " ERROR[" in ln and "python" in ln.lower()]
        finally:
            inst.close()
    finally:
        agi.close()
        release_host(host)
    out: dict[str, Any] = {"method": __doc__.strip(), "loadavg_end": loadavg(), "variants": {}, "python_errors": errors[:5]}
    for v in vs:
        rows = raw[v.key]
        out["variants"][v.key] = {
            "label": v.label, "group": v.group, "n": rows[0]["n"] if rows else 0, "k": [1, v.k_hi],
            "marginal_us": stats([r["marginal_us"] for r in rows]),
            "iter_lo_us": stats([r["iter_lo_us"] for r in rows]),
            "iter_hi_us": stats([r["iter_hi_us"] for r in rows]),
        }
    return out


if __name__ == "__main__":
    import json
    import sys
    res = run(Mode("quick", 5), sys.argv[1:] or None)
    print(json.dumps({k: (v["marginal_us"]["median"], v["iter_lo_us"]["median"]) for k, v in res["variants"].items()}, indent=1))
