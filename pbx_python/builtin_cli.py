"""pbx_python's own CLI commands: python show applications|functions|switches|status."""
from __future__ import annotations

import sys

from . import _runtime
from . import asterisk as ast
from .registry import CliSpec, Registry

REGISTRY = Registry()


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header)] + [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def show_applications(argv: list[str]) -> str:
    reg = _runtime.state.registry
    rows = []
    for spec in sorted(reg.apps.values(), key=lambda s: s.name.lower()):
        st = spec.stats
        rows.append((spec.name, spec.module, str(st.calls), str(st.errors)))
    return _table(("Application", "Python module", "Calls", "Errors"), rows) + \
        f"{len(rows)} Python application(s)\n"


def show_functions(argv: list[str]) -> str:
    reg = _runtime.state.registry
    rows = []
    for spec in sorted(reg.functions.values(), key=lambda s: s.name):
        st = spec.stats
        rows.append((spec.name, spec.module, "yes" if spec.writer else "no", str(st.calls),
                     str(st.errors)))
    return _table(("Function", "Python module", "Writable", "Calls", "Errors"), rows) + \
        f"{len(rows)} Python function(s)\n"


def show_switches(argv: list[str]) -> str:
    """Each switch as Asterisk matches it (its table, in match order), with the Python handler
    of each extension and its counters. `python show switches <name>`: that switch only."""
    from . import patterns
    wanted = argv[3] if len(argv) > 3 else None
    if len(argv) > 4:
        raise _runtime.ShowUsage()
    reg = _runtime.state.registry
    table = {name: (lookups, pats) for name, lookups, pats in ast.switch_dump()}
    names = sorted(set(table) | set(reg.switches))
    if wanted is not None:
        if wanted not in names:
            return f"No Python switch named '{wanted}' (use: switch => Python/<name>)\n"
        names = [wanted]
    out = []
    for name in names:
        sw = reg.switches.get(name)
        lookups, pats = table.get(name, (0, None))
        if pats is None:   # declared but not (yet) in Asterisk's table: Python's own order
            pats = patterns.in_dialplan_order(s.pattern for s in sw.extensions.values()) if sw else []
        specs = {s.pattern: s for s in sw.extensions.values()} if sw else {}
        out.append(f"Switch Python/{name} ({sw.module if sw else '?'}): {len(pats)} extension(s), "
                   f"{lookups} lookup(s) since the last load")
        rows = []
        for i, pat in enumerate(pats, 1):
            spec = specs.get(pat)
            rows.append((str(i), pat, spec.handler_name if spec else "(gone)",
                         str(spec.stats.calls) if spec else "-",
                         str(spec.stats.errors) if spec else "-"))
        out.append(_table(("#", "Extension", "Handler", "Calls", "Errors"), rows).rstrip("\n"))
        out.append("")
    out.append(f"{len(names)} Python switch(es)")
    return "\n".join(out) + "\n"


def _gil_wait(spin: int) -> str:
    if getattr(sys, "_is_gil_enabled", lambda: True)() is False:
        return "no GIL (free-threaded Python)"
    if not spin:
        return "CPython's own (gil_spin = 0)"
    return f"queued, the first in line spins up to {spin} us (gil_spin)"


def show_status(argv: list[str]) -> str:
    st = _runtime.state
    venv = sys.prefix if sys.prefix != sys.base_prefix else "(none)"
    lines = [
        f"Python:          {sys.version.split()[0]} ({sys.executable})",
        f"Virtual env:     {venv}",
        f"Asterisk:        {ast.version()}",
        f"Last load:       {st.last_load}",
        f"On exception:    {st.config.on_exception}",
        f"GIL wait:        {_gil_wait(st.config.gil_spin)}",
        f"Applications:    {len(st.registry.apps)}",
        f"Functions:       {len(st.registry.functions)}",
        f"Switches:        {len(st.registry.switches)}",
        f"Thread states:   {ast.thread_states()} (Asterisk threads that ran Python and still run)",
        f"C stack:         {ast.stack_summary()}",
        "Modules:",
    ]
    for m in st.modules:
        lines.append(f"  {m.name:<30} {'ok' if m.ok else 'FAILED: ' + m.error}")
    if not st.modules:
        lines.append("  (none configured)")
    return "\n".join(lines) + "\n"


REGISTRY.add_cli(CliSpec("python show switches", show_switches, __name__,
                         "List the Python dialplan switches and their extensions",
                         "Usage: python show switches [name]\n"
                         "       List the Python dialplan switches (switch => Python/<name>), each "
                         "extension\n       in match order with its handler and counters.\n"))

for command, summary, fn in (
        ("python show applications", "List the dialplan applications served by Python",
         show_applications),
        ("python show functions", "List the dialplan functions served by Python", show_functions),
        ("python show status", "Show the embedded Python interpreter's status", show_status)):
    REGISTRY.add_cli(CliSpec(command, fn, __name__, summary,
                             f"Usage: {command}\n       {summary}.\n"))
