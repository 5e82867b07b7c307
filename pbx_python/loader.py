"""Importing the configured Python modules, fresh, into a new Registry.

A load imports every configured module again (after dropping it and its submodules from
sys.modules) while the decorators collect into a new Registry. On reload the result replaces the
running code only if everything imported and every on_load hook passed; otherwise sys.modules is
put back as it was and the old Registry stays in service.

A generation of a module that is discarded (replaced by a reload, rolled back, failed to load, or
shut down) has its on_unload hooks called with the reason, so that it can stop what it started.
"""
from __future__ import annotations

import importlib
import sys
import threading
import traceback
from dataclasses import dataclass, field
from types import ModuleType

from .config import Config
from .registry import Registry, UnloadHook, collect_into


@dataclass
class ModuleStatus:
    name: str
    ok: bool
    error: str = ""          # one line
    traceback: str = ""      # full text, for the log


@dataclass
class LoadResult:
    registry: Registry
    modules: list[ModuleStatus] = field(default_factory=list)
    unload_errors: list[str] = field(default_factory=list)   # tracebacks of on_unload hooks

    @property
    def ok(self) -> bool:
        return all(m.ok for m in self.modules)

    def failures(self) -> list[ModuleStatus]:
        return [m for m in self.modules if not m.ok]


def _owned(name: str, roots: list[str]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def load_modules(config: Config, *, all_or_nothing: bool) -> LoadResult:
    """Import config.modules fresh and run their on_load hooks.

    With all_or_nothing, any failure restores sys.modules to its previous state and the returned
    registry is empty; otherwise modules that failed are left out and the rest are kept.
    """
    for path in config.paths:
        if path not in sys.path:
            sys.path.insert(0, path)
    roots = list(config.modules)
    saved: dict[str, ModuleType] = {k: m for k, m in sys.modules.items() if _owned(k, roots)}
    for key in saved:
        del sys.modules[key]
    importlib.invalidate_caches()

    result = LoadResult(Registry())
    previous = collect_into(result.registry)
    try:
        for name in config.modules:
            before = set(result.registry.apps) | set(result.registry.functions)
            try:
                importlib.import_module(name)
                for module, hook in list(result.registry.load_hooks):
                    if _owned(module, [name]):
                        hook(config)
                result.modules.append(ModuleStatus(name, True))
            except BaseException as exc:  # noqa: BLE001 - user code may raise anything
                result.modules.append(ModuleStatus(name, False, _describe(exc),
                                                   traceback.format_exc()))
                hooks = [(m, h) for m, h in result.registry.unload_hooks if _owned(m, [name])]
                result.unload_errors += run_unload_hooks(hooks, "failed")
                _forget(result.registry, name, before)
                for key in [k for k in sys.modules if _owned(k, [name])]:
                    del sys.modules[key]
    finally:
        collect_into(previous)

    if all_or_nothing and not result.ok:
        # the modules that did import are discarded too: undo what their on_load hooks started
        result.unload_errors += run_unload_hooks(result.registry.unload_hooks, "rollback")
        for key in [k for k in sys.modules if _owned(k, roots)]:
            del sys.modules[key]
        sys.modules.update(saved)
        result.registry = Registry()
    return result


#: How long a discarded generation's on_unload hooks may run. A hook that blocks must not hold a
#: reload (Asterisk keeps its module list locked meanwhile: 'module show', any other reload and
#: even 'core stop now' would wait for it) nor Asterisk's shutdown.
UNLOAD_HOOK_TIMEOUT = 5.0


def run_unload_hooks(hooks: list[tuple[str, UnloadHook]], reason: str,
                     timeout: float = UNLOAD_HOOK_TIMEOUT) -> list[str]:
    """Call each hook with `reason`, in reverse declaration order, in a worker thread given at
    most `timeout` seconds; return the failures' tracebacks (and a line saying so when hooks
    are still running at the timeout: the caller goes on without them).

    A hook that raises (anything, BaseException included) does not stop the others.
    """
    if not hooks:
        return []
    errors: list[str] = []
    worker = threading.Thread(target=_call_unload_hooks, args=(hooks, reason, errors),
                              name=f"pbx_python-unload-{reason}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return [*errors, f"pbx_python: on_unload hooks ({reason}) still running after "
                f"{timeout:g} s; going on without them (an on_unload hook must not block)"]
    return errors


def _call_unload_hooks(hooks: list[tuple[str, UnloadHook]], reason: str, errors: list[str]) -> None:
    for module, hook in reversed(hooks):
        try:
            hook(reason)
        except BaseException:  # noqa: BLE001 - user code; logged by the caller
            errors.append(f"on_unload hook {module}.{getattr(hook, '__qualname__', hook)} "
                          f"({reason}) raised:\n{traceback.format_exc()}")


def _forget(registry: Registry, module: str, keep: set[str]) -> None:
    """Drop what a module that failed had declared before failing."""
    for table in (registry.apps, registry.functions, registry.clis):
        for key in [k for k, spec in table.items() if _owned(spec.module, [module])]:
            if key not in keep:
                del table[key]
    for name in [n for n, sw in registry.switches.items() if _owned(sw.module, [module])]:
        del registry.switches[name]
    registry.load_hooks[:] = [(m, h) for m, h in registry.load_hooks if not _owned(m, [module])]
    registry.unload_hooks[:] = [(m, h) for m, h in registry.unload_hooks
                                if not _owned(m, [module])]
