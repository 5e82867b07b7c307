"""pbx_python's own CLI commands: python show applications|functions|status."""
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
        f"Thread states:   {ast.thread_states()} (Asterisk threads that ran Python and still run)",
        f"C stack:         {ast.stack_summary()}",
        "Modules:",
    ]
    for m in st.modules:
        lines.append(f"  {m.name:<30} {'ok' if m.ok else 'FAILED: ' + m.error}")
    if not st.modules:
        lines.append("  (none configured)")
    return "\n".join(lines) + "\n"


for command, summary, fn in (
        ("python show applications", "List the dialplan applications served by Python",
         show_applications),
        ("python show functions", "List the dialplan functions served by Python", show_functions),
        ("python show status", "Show the embedded Python interpreter's status", show_status)):
    REGISTRY.add_cli(CliSpec(command, fn, __name__, summary,
                             f"Usage: {command}\n       {summary}.\n"))
