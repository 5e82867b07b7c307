"""``pbx-python doctor``: is this machine ready to run pbx_python, and what does it run?

Each check is a small function returning :class:`Check` lines, ``ok`` or ``FAIL``, each with what
was checked and a one-line detail (a few checks add indented lines below). ``run()`` prints them
and returns 1 when any failed. Nothing here needs a running Asterisk; the last check asks one over
its control socket (``asterisk -C <asterisk.conf> -rx ...``) when there is one.

The configured Python modules are imported in a dry run, by the interpreter the module embeds
(``python =`` in pbx_python.conf), in a child process: the decorators collect what each module
declares into a registry and nothing is registered anywhere, no ``on_load`` hook runs.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import sysconfig
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

from . import building
from .config import Config, ConfigError, parse

MIN_ASTERISK = 22
CONFIG_NAME = "pbx_python.conf"


@dataclass
class Check:
    ok: bool
    what: str
    detail: str
    more: list[str] = field(default_factory=list)   # indented lines printed below

    def lines(self) -> list[str]:
        head = f"{'ok' if self.ok else 'FAIL':<4}  {self.what}: {self.detail}"
        return [head, *(f"      {line}" for line in self.more)]


# -- Asterisk -------------------------------------------------------------------------------------

def check_asterisk(prefix: Path) -> Check:
    binary = prefix / "sbin" / "asterisk"
    if not binary.is_file():
        return Check(False, "Asterisk", f"no {binary}: is {prefix} an Asterisk prefix? "
                     "(--asterisk-prefix or ASTERISK_PREFIX)")
    try:
        out = subprocess.run([str(binary), "-V"], capture_output=True, text=True, timeout=30,
                             check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(False, "Asterisk", f"{binary} -V failed: {exc}")
    text = out.stdout.strip()
    m = re.match(r"Asterisk (\d+)\.\S*", text)
    if not m:
        return Check(False, "Asterisk", f"{binary} -V printed {text or out.stderr.strip()!r}, "
                     "not a version")
    if int(m.group(1)) < MIN_ASTERISK:
        return Check(False, "Asterisk", f"{m.group(0)} at {prefix}: pbx_python needs "
                     f"Asterisk {MIN_ASTERISK} or later")
    return Check(True, "Asterisk", f"{m.group(0)} ({binary})")


def check_headers(prefix: Path) -> Check:
    header = prefix / "include" / "asterisk.h"
    if not header.is_file():
        return Check(False, "Asterisk headers", f"no {header}: install them (Asterisk's 'make "
                     "install-headers', Debian's asterisk-dev) to build the module")
    return Check(True, "Asterisk headers", str(header.parent))


def check_libpython() -> Check:
    """The running Python: the one `pbx-python build` links into the module."""
    what = "shared libpython"
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return Check(False, what, f"{sys.executable} was built without --enable-shared: it cannot "
                     "be embedded (use Debian's python3, or pyenv with PYTHON_CONFIGURE_OPTS="
                     "--enable-shared)")
    lib = Path(sysconfig.get_config_var("LIBDIR") or "") / (sysconfig.get_config_var("LDLIBRARY") or "")
    if not lib.is_file():
        return Check(False, what, f"{sys.executable} says its libpython is {lib}, which does not exist")
    return Check(True, what, f"{lib} (Python {sys.version.split()[0]}, {sys.executable})")


_LIBPYTHON = re.compile(rb"libpython(\d+\.\d+[a-z]*)\.so")


def linked_python(so: Path) -> Optional[str]:
    """The Python version (and ABI flags: ``3.11``, ``3.13t``) whose libpython a built
    pbx_python.so links (its DT_NEEDED name, read from the file), or None if none is named."""
    try:
        m = _LIBPYTHON.search(so.read_bytes())
    except OSError:
        return None
    return m.group(1).decode() if m else None


def check_installed(moddir: Path) -> Check:
    so = moddir / "pbx_python.so"
    if not so.exists():
        return Check(False, "module installed", f"no {so}: run 'pbx-python install'")
    linked = linked_python(so)
    return Check(True, "module installed",
                 f"{so} (links libpython{linked})" if linked else str(so))


# -- pbx_python.conf ------------------------------------------------------------------------------

def read_config(path: Path) -> list[tuple[str, str, str]]:
    """(category, key, value) triples of an Asterisk configuration file, in file order, as
    Asterisk's parser gives them to the module: ';' comments (``\\;`` is a literal ';'), ';-- --;'
    block comments, ``=`` and ``=>``, ``#include``/``#tryinclude`` (relative to the file's
    directory), templates (``[t](!)``, not a category themselves) and ``[cat](t)`` inheritance."""
    triples: list[tuple[str, str, str]] = []
    templates: dict[str, list[tuple[str, str]]] = {}
    state = {"cat": None, "template": False, "block": False}

    def add(key: str, value: str) -> None:
        cat = state["cat"]
        if cat is None:
            raise ConfigError(f"{key} = {value} comes before any [section]")
        templates.setdefault(cat, []).append((key, value))
        if not state["template"]:
            triples.append((cat, key, value))

    def read(file: Path, depth: int) -> None:
        if depth > 10:
            raise ConfigError(f"#include nested too deep at {file}")
        for raw in file.read_text(errors="replace").splitlines():
            line = _strip_comment(raw, state)
            if not line:
                continue
            if line.startswith("#"):
                m = re.match(r"#(try)?include\s+\"?([^\"]+)\"?$", line)
                if not m:
                    continue                       # #exec and friends: not for a dry check
                target = Path(m.group(2).strip())
                target = target if target.is_absolute() else file.parent / target
                if target.is_file():
                    read(target, depth + 1)
                elif not m.group(1):
                    raise ConfigError(f"{file}: #include {m.group(2)}: no such file")
                continue
            if line.startswith("["):
                m = re.match(r"\[([^\]]+)\]\s*(?:\(([^)]*)\))?", line)
                if not m:
                    raise ConfigError(f"{file}: bad section line {raw.strip()!r}")
                name, options = m.group(1).strip(), [o.strip() for o in (m.group(2) or "").split(",") if o.strip()]
                state["cat"], state["template"] = name, "!" in options
                templates[name] = []
                for parent in (o for o in options if o not in ("!", "+")):
                    for key, value in templates.get(parent, []):
                        add(key, value)
                continue
            m = re.match(r"([^=]+?)\s*=>?\s*(.*)$", line)
            if not m:
                raise ConfigError(f"{file}: not 'key = value': {raw.strip()!r}")
            add(m.group(1).strip(), m.group(2).strip())

    read(path, 0)
    return triples


def _strip_comment(raw: str, state: dict) -> str:
    out, i = [], 0
    while i < len(raw):
        if state["block"]:
            end = raw.find("--;", i)
            if end < 0:
                return "".join(out).strip()
            state["block"], i = False, end + 3
            continue
        if raw.startswith(";--", i):
            state["block"], i = True, i + 3
            continue
        ch = raw[i]
        if ch == "\\" and raw.startswith(";", i + 1):
            out.append(";")
            i += 2
            continue
        if ch == ";":
            break
        out.append(ch)
        i += 1
    return "".join(out).strip()


def check_config(path: Path) -> tuple[Check, Optional[Config]]:
    what = CONFIG_NAME
    if not path.is_file():
        return Check(False, what, f"no {path}: copy {building.SAMPLE} there and list your "
                     "modules (or give --config)"), None
    try:
        config = parse(read_config(path))
    except (ConfigError, OSError) as exc:
        return Check(False, what, f"{path}: {exc}"), None
    modules = ", ".join(config.modules) or "none"
    return Check(True, what, f"{path} (modules: {modules}; on_exception = {config.on_exception})"), config


# -- the embedded Python ----------------------------------------------------------------------------

_PROBE = ("import sys, pbx_python; print(sys.prefix); print(sys.base_prefix); "
          "print(pbx_python.__version__); print(pbx_python.__file__); "
          "print('%d.%d' % sys.version_info[:2] + sys.abiflags)")


def embedded_python(config: Optional[Config]) -> str:
    """The interpreter the module embeds: pbx_python.conf's python, else (the module's default,
    the Python that built it) the one running this command."""
    return (config.python if config is not None and config.python else "") or sys.executable


def check_venv(config: Optional[Config], linked: Optional[str] = None) -> Check:
    """The interpreter the module embeds can import pbx_python; with `linked` (the version whose
    libpython the installed module links), it must be that version."""
    what = "embedded Python"
    python = embedded_python(config)
    source = f"python = {python}" if config is not None and config.python else \
        f"python not set (the module embeds the Python that built it; assumed: {python})"
    if not os.access(python, os.X_OK):
        return Check(False, what, f"{source}: not an executable (pbx_python.so refuses to load)")
    try:
        out = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=60,
                             check=False, stdin=subprocess.DEVNULL, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(False, what, f"{source}: cannot run: {exc}")
    lines = out.stdout.splitlines()
    if out.returncode != 0 or len(lines) < 5:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return Check(False, what, f"{source}: cannot import pbx_python ({last}): "
                     f"install it into that environment ({python} -m pip install <checkout>)")
    prefix, base, version, where, pyver = lines[-5:]
    if linked and pyver != linked:
        return Check(False, what, f"{source}: Python {pyver}, but the installed pbx_python.so "
                     f"links libpython{linked}: rebuild it with that Python ({Path(python).parent}"
                     "/pbx-python install)")
    venv = f"venv {prefix}" if prefix != base else "no venv (the system's site-packages)"
    return Check(True, what, f"{source}: {venv}, pbx_python {version} "
                 f"({Path(where).parent})")


def dry_run(paths: Sequence[str], modules: Sequence[str]) -> list[dict]:
    """Import each module with the decorators collecting into a fresh registry; what each
    declares, or why it failed. Runs in the embedded interpreter (``python -m pbx_python.doctor``).

    A declaration belongs to the listed module it was made in (or the most specific listed
    package holding it), as the loader counts them: a module imported by another is still shown
    as declaring its own names."""
    from .registry import Registry, collect_into
    for path in reversed(list(paths)):
        if path not in sys.path:
            sys.path.insert(0, path)
    registry = Registry()
    previous = collect_into(registry)
    errors: dict[str, str] = {}
    try:
        for name in modules:
            try:
                importlib.import_module(name)
            except BaseException as exc:  # noqa: BLE001 - user code may raise anything
                errors[name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    finally:
        collect_into(previous)

    def owner(module: str) -> Optional[str]:
        roots = [m for m in modules if module == m or module.startswith(m + ".")]
        return max(roots, key=len) if roots else None

    results = []
    for name in modules:
        results.append({
            "module": name, "ok": name not in errors, "error": errors.get(name, ""),
            "applications": sorted(s.name for s in registry.apps.values() if owner(s.module) == name),
            "functions": sorted(s.name for s in registry.functions.values() if owner(s.module) == name),
            "cli": sorted(s.command for s in registry.clis.values() if owner(s.module) == name),
            "switches": sorted(f"Python/{sw.name} ({len(sw.in_match_order())} extensions)"
                               for sw in registry.switches.values() if owner(sw.module) == name),
        })
    return results


def check_modules(config: Config, timeout: float = 120) -> list[Check]:
    if not config.modules:
        return [Check(True, "modules", "none listed in [general] modules")]
    python = embedded_python(config)
    request = json.dumps({"paths": config.paths, "modules": config.modules})
    try:
        out = subprocess.run([python, "-m", "pbx_python.doctor", "--dry-run", request],
                             capture_output=True, text=True, timeout=timeout, check=False,
                             stdin=subprocess.DEVNULL, cwd="/")
        results = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        return [Check(False, "modules", f"the dry run with {python} failed: {exc}")]
    checks = []
    for r in results:
        what = f"module {r['module']}"
        if not r["ok"]:
            checks.append(Check(False, what, f"import failed: {r['error'].splitlines()[-1]}",
                                r["error"].splitlines()[:-1][-6:]))
            continue
        parts = [f"{label} {', '.join(r[key]) or '(none)'}" for label, key in
                 (("applications", "applications"), ("functions", "functions"),
                  ("CLI commands", "cli"))]
        if r.get("switches"):
            parts.append(f"switches {', '.join(r['switches'])}")
        checks.append(Check(True, what, "; ".join(parts)))
    return checks


# -- the running Asterisk ---------------------------------------------------------------------------

def check_running(prefix: Path, asterisk_conf: Path, rundir: Path) -> Check:
    what = "running Asterisk"
    ctl = rundir / "asterisk.ctl"
    if not ctl.exists():
        return Check(True, what, f"none (no control socket {ctl}); the running module's checks "
                     "are skipped")
    binary = prefix / "sbin" / "asterisk"

    def rx(command: str) -> str:
        conf = ["-C", str(asterisk_conf)] if asterisk_conf.is_file() else []
        res = subprocess.run([str(binary), *conf, "-rx", command],
                             capture_output=True, text=True, timeout=20, check=False,
                             stdin=subprocess.DEVNULL)
        return res.stdout

    try:
        loaded = rx("module show like pbx_python")
        if "pbx_python.so" not in loaded:
            hint = "it does not answer" if "Unable to connect" in loaded or not loaded.strip() \
                else "pbx_python.so is not loaded (module load pbx_python.so; see its log)"
            return Check(False, what, f"{ctl}: {hint}")
        status = rx("python show status")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(False, what, f"{ctl}: asterisk -rx failed: {exc}")
    lines = [line.rstrip() for line in status.splitlines() if line.strip()]
    failed = []
    for line in lines:
        text = " ".join(line.split())
        if (text.startswith("Last load:") and "failed" in text) or "FAILED:" in text:
            failed.append(text)
    if failed:
        return Check(False, what, f"{ctl}: pbx_python.so loaded, with failures: "
                     f"{'; '.join(failed)}", lines)
    return Check(True, what, f"{ctl}: pbx_python.so loaded ('python show status' below)", lines)


# -- all of it --------------------------------------------------------------------------------------

def run_checks(prefix: Optional[Path], how: str, asterisk_conf: Optional[Path],
               config_path: Optional[Path]) -> list[Check]:
    checks: list[Check] = []
    if prefix is None:
        checks.append(Check(False, "Asterisk", how))
    else:
        checks += [check_asterisk(prefix), check_headers(prefix)]
    checks.append(check_libpython())
    dirs: dict[str, Path] = building.asterisk_dirs(prefix) if prefix is not None else {}
    if asterisk_conf is not None:
        if not asterisk_conf.is_file():
            checks.append(Check(False, "asterisk.conf", f"no {asterisk_conf}"))
        else:
            dirs.update({k: Path(v) for k, v in building.read_asterisk_conf(asterisk_conf).items()})
    linked = None
    if "astmoddir" in dirs:
        checks.append(check_installed(dirs["astmoddir"]))
        linked = linked_python(dirs["astmoddir"] / "pbx_python.so")
    if config_path is None and "astetcdir" in dirs:
        config_path = dirs["astetcdir"] / CONFIG_NAME
    config = None
    if config_path is None:
        checks.append(Check(False, CONFIG_NAME, "no Asterisk config dir known: give --config"))
    else:
        check, config = check_config(config_path)
        checks.append(check)
    checks.append(check_venv(config, linked))
    if config is not None:
        checks += check_modules(config)
    if prefix is not None and "astrundir" in dirs:
        conf = asterisk_conf or dirs["astetcdir"] / "asterisk.conf"
        checks.append(check_running(prefix, conf, dirs["astrundir"]))
    return checks


def report(checks: Iterable[Check], out=None) -> int:
    """Print every check's lines; 1 if any failed, else 0."""
    out = out or sys.stdout
    failed = 0
    for check in checks:
        failed += not check.ok
        for line in check.lines():
            print(line, file=out)
    print(f"{failed} check(s) failed" if failed else "all checks passed", file=out)
    return 1 if failed else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pbx_python.doctor --dry-run '{"paths": [...], "modules": [...]}'``: the child
    side of the modules check; prints one line of JSON."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "--dry-run":
        print("usage: python -m pbx_python.doctor --dry-run JSON (use 'pbx-python doctor')",
              file=sys.stderr)
        return 2
    request = json.loads(args[1])
    results = dry_run(request["paths"], request["modules"])
    sys.stdout.flush()
    print("\n" + json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
