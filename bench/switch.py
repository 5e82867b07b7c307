"""7. Whole contexts: extensions.conf vs the Python switch vs pbx_lua's switch.

The same context three ways: in extensions.conf, as `switch => Python/bench` (bench/px_switch_bench.py)
and as `switch => Lua` (extensions.lua). Each holds the same twelve extensions and patterns; the
one called is the pattern _5XXX (number 5345), which Asterisk tries after the more specific ones. Two measures,
as in section 1 (While loops on one Local channel, dialplan-side timestamps, marginal cost =
(time with k_hi calls - with 1) / (k_hi - 1), the fastest of `tries` runs per repetition):
  lookup  ${DIALPLAN_EXISTS(<context>,5345,1)} inside one Set(): Asterisk's exists check alone
          (the switch's table in C for Python; Lua runs its matcher)
  gosub   Gosub(<context>,5345,1) into a body that sets SWX=hello and returns: the lookups
          Gosub and the PBX make, then the body (Set + Return in extensions.conf; Python's
          chan.set_var + exec_app("Return"); Lua's channel.SWX:set + app.Return())
Asterisk itself puts every switch lookup made with a channel between ast_autoservice_start() and
ast_autoservice_stop() (main/pbx.c, pbx_find_extension: a switch may block, e.g. on the network),
and autoservice_stop waits, polling every millisecond, until the autoservice thread has let the
channel go: that round trip, not the switch's own matching, is most of a switch lookup's cost, for
Python's switch and pbx_lua's alike. So the switch loops are short (k_hi = 4).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common import NO_AMI, Instance, Mode, loadavg, log, loop_extension, marginal_cost, stats

#: The context's other extensions (none matches 5345 except _5XXX); the same list
#: is in bench/px_switch_bench.py.
OTHERS = ["100", "101", "200", "_1XX", "_2XX", "_3XXX", "_4XXX", "_51XX", "_52XX", "_6XXX", "_9."]
TARGET = "_5XXX"
NUMBER = "5345"
CONTEXTS = {"conf": "sw-conf", "python": "sw-py", "lua": "sw-lua"}


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    kind: str          # conf | python | lua
    measure: str       # lookup | gosub
    n_quick: int
    n_full: int
    k_hi: int = 10
    tries: int = 3

    def body(self, k: int) -> list[str]:
        ctx = CONTEXTS[self.kind]
        if self.measure == "lookup":
            return [f"Set(X={f'${{DIALPLAN_EXISTS({ctx},{NUMBER},1)}}' * k})"]
        return [f"Gosub({ctx},{NUMBER},1)"] * k

    @property
    def check(self) -> str:
        return "X=" + "1" if self.measure == "lookup" else "SWX=hello"


VARIANTS = [
    Variant("conf_lookup", "extensions.conf: exists (DIALPLAN_EXISTS)", "conf", "lookup", 3000, 10000),
    Variant("py_lookup", "switch => Python: exists (DIALPLAN_EXISTS)", "python", "lookup", 30, 100, k_hi=4),
    Variant("lua_lookup", "switch => Lua: exists (DIALPLAN_EXISTS)", "lua", "lookup", 30, 100, k_hi=4),
    Variant("conf_gosub", "extensions.conf: Gosub into Set + Return", "conf", "gosub", 1500, 5000),
    Variant("py_gosub", "switch => Python: Gosub into set_var + Return", "python", "gosub", 10, 40, k_hi=4),
    Variant("lua_gosub", "switch => Lua: Gosub into SWX:set + Return", "lua", "gosub", 10, 40, k_hi=4),
]


def extensions_conf(vs: list[Variant], mode: Mode) -> str:
    parts = ["[general]\nstatic = yes\nwriteprotect = yes\n\n[sw-conf]\n"]
    for p in OTHERS:
        parts.append(f"exten => {p},1,Set(SWX=other)\n same => n,Return()\n")
    parts.append(f"exten => {TARGET},1,Set(SWX=hello)\n same => n,Return()\n\n")
    parts.append("[sw-py]\nswitch => Python/bench\n\n[sw-lua]\nswitch => Lua\n\n[bench]\n")
    for v in vs:
        n = v.n_quick if mode.quick else v.n_full
        var = v.check.split("=")[0]
        for k in (1, v.k_hi):
            parts.append(loop_extension(f"{v.key}_{k}", n, v.body(k), report=f"{var}=${{{var}}}"))
    return "".join(parts)


def extensions_lua() -> str:
    fns = "".join(f'    ["{p}"] = function(c, e) channel.SWX:set("other") app.Return() end;\n'
                  for p in OTHERS)
    return ("extensions = {\n  [\"sw-lua\"] = {\n" + fns
            + f'    ["{TARGET}"] = function(c, e) channel.SWX:set("hello") app.Return() end;\n'
            + "  };\n}\n")


def check_loop(v: Any, seen_lo: str, seen_hi: str) -> None:
    """Raise when a loop of variant v did not do its work (the body's result, the lookup's)."""
    want = v.check if v.measure == "gosub" else None
    if want and not (seen_lo == want and seen_hi == want):
        raise RuntimeError(f"switch {v.key}: the loop did not do its work: "
                           f"expected {want}, saw {seen_lo!r} / {seen_hi!r}")
    if v.measure == "lookup" and not (seen_hi == "X=" + "1" * v.k_hi):
        raise RuntimeError(f"switch {v.key}: the lookup did not find {NUMBER}: saw {seen_hi!r}")


def run(mode: Mode, only_variants: list[str] | None = None) -> dict[str, Any]:
    vs = [v for v in VARIANTS if not only_variants or v.key in only_variants]
    raw: dict[str, list[dict[str, float]]] = {v.key: [] for v in vs}
    inst = Instance("switch", extensions_conf(vs, mode), noload=(),
                    configs={**NO_AMI, "extensions.lua": extensions_lua()},
                    pymodules=("px_switch_bench",))
    try:
        ast = inst.ast
        for rep in range(mode.reps):
            for v in vs:
                n = v.n_quick if mode.quick else v.n_full
                raw[v.key].append(marginal_cost(ast, v.key, n, v.k_hi, v.tries,
                                                check=lambda lo, hi, v=v: check_loop(v, lo, hi)))
            log(f"switch rep {rep + 1}/{mode.reps}: " + ", ".join(
                f"{k}={r[-1]['marginal_us']:.2f}" for k, r in raw.items() if r))
        errors = [ln for ln in ast.log_text().splitlines()
                  if " ERROR[" in ln and ("python" in ln.lower() or "lua" in ln.lower())]
    finally:
        inst.close()
    out: dict[str, Any] = {"method": __doc__.strip(), "loadavg_end": loadavg(), "variants": {},
                           "errors": errors[:5]}
    for v in vs:
        rows = raw[v.key]
        out["variants"][v.key] = {
            "label": v.label, "kind": v.kind, "measure": v.measure,
            "n": rows[0]["n"] if rows else 0, "k": [1, v.k_hi],
            "marginal_us": stats([r["marginal_us"] for r in rows]),
            "iter_lo_us": stats([r["iter_lo_us"] for r in rows]),
        }
    return out


if __name__ == "__main__":
    import json
    import sys
    res = run(Mode("quick", 5), sys.argv[1:] or None)
    print(json.dumps({k: v["marginal_us"]["median"] for k, v in res["variants"].items()}, indent=1))
