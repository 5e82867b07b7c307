"""Declarations of dialplan applications, functions and CLI commands, and their counters.

The decorators here are what Python modules loaded by pbx_python use. They only record what a
module declares; pbx_python._runtime registers the names with Asterisk and dispatches calls.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

AppHandler = Callable[..., Optional[int]]
ReadHandler = Callable[..., Any]
WriteHandler = Callable[..., None]
CliHandler = Callable[[list[str]], Optional[str]]
LoadHook = Callable[[Any], None]
UnloadHook = Callable[[str], None]

#: Why a generation of a module is discarded: the reason its on_unload hooks are called with.
UNLOAD_REASONS = ("reload", "rollback", "failed", "shutdown")


@dataclass
class Stats:
    """Per-name counters, kept across reloads."""
    calls: int = 0
    errors: int = 0


@dataclass
class AppSpec:
    name: str
    handler: AppHandler
    module: str
    synopsis: str = ""
    syntax: str = ""
    arguments: str = ""
    description: str = ""
    stats: Stats = field(default_factory=Stats)   # shared per name across reloads


@dataclass
class FuncSpec:
    name: str
    reader: ReadHandler
    module: str
    synopsis: str = ""
    syntax: str = ""
    arguments: str = ""
    description: str = ""
    seealso: str = ""
    writer: Optional[WriteHandler] = None
    stats: Stats = field(default_factory=Stats)

    def setter(self, fn: WriteHandler) -> WriteHandler:
        """Decorator: declare the write side, called as fn(chan, value, *args)."""
        self.writer = fn
        return fn

    # A FuncSpec replaces the decorated function in its module; keep it callable so that Python
    # code (and unit tests) can still call the reader directly.
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.reader(*args, **kwargs)


@dataclass
class CliSpec:
    command: str
    handler: CliHandler
    module: str
    summary: str = ""
    usage: str = ""


@dataclass
class Registry:
    """What one load of the configured Python modules declared."""
    apps: dict[str, AppSpec] = field(default_factory=dict)        # key: lower-case name
    functions: dict[str, FuncSpec] = field(default_factory=dict)  # key: exact name
    clis: dict[str, CliSpec] = field(default_factory=dict)        # key: command
    switches: dict[str, Any] = field(default_factory=dict)        # key: name; switches.Switch
    load_hooks: list[tuple[str, LoadHook]] = field(default_factory=list)
    unload_hooks: list[tuple[str, UnloadHook]] = field(default_factory=list)

    def add_app(self, spec: AppSpec) -> None:
        key = spec.name.lower()
        if key in self.apps:
            raise ValueError(f"application {spec.name} is declared twice "
                             f"({self.apps[key].module} and {spec.module})")
        self.apps[key] = spec

    def add_function(self, spec: FuncSpec) -> None:
        if spec.name in self.functions:
            raise ValueError(f"function {spec.name} is declared twice "
                             f"({self.functions[spec.name].module} and {spec.module})")
        self.functions[spec.name] = spec

    def add_switch(self, sw: Any) -> None:
        if sw.name in self.switches:
            raise ValueError(f"switch {sw.name} is declared twice "
                             f"({self.switches[sw.name].module} and {sw.module})")
        self.switches[sw.name] = sw

    def add_cli(self, spec: CliSpec) -> None:
        if spec.command in self.clis:
            raise ValueError(f"CLI command '{spec.command}' is declared twice")
        self.clis[spec.command] = spec


_lock = threading.Lock()
_collecting: Registry = Registry()  # where declarations go; the loader swaps it per load


def collect_into(registry: Registry) -> Registry:
    """Make declarations go to `registry`; return the previous target."""
    global _collecting
    with _lock:
        previous, _collecting = _collecting, registry
    return previous


def _target() -> Registry:
    with _lock:
        return _collecting


_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _check_name(name: str) -> None:
    """Application and function names: ASCII letters, digits, '_' and '-' (Asterisk compares
    application names case-insensitively in ASCII only; other letters would never match)."""
    if not isinstance(name, str):
        raise TypeError(f"a dialplan name must be a str, not {type(name).__name__}")
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid dialplan name {name!r}: use ASCII letters, digits, '_' and '-'")


def application(name: str, *, synopsis: str = "", syntax: str = "", arguments: str = "",
                description: str = "") -> Callable[[AppHandler], AppHandler]:
    """Declare a dialplan application served by the decorated function.

    The function is called as fn(chan, *args) in the channel's own thread, with the arguments
    split by Asterisk's own parser. It returns None or 0 to continue the dialplan, -1 to hang up.
    """
    _check_name(name)

    def decorate(fn: AppHandler) -> AppHandler:
        _target().add_app(AppSpec(name, fn, fn.__module__, synopsis, syntax or f"{name}()",
                                  arguments, description or (fn.__doc__ or "").strip()))
        return fn
    return decorate


def function(name: str, *, synopsis: str = "", syntax: str = "", arguments: str = "",
             description: str = "", seealso: str = "") -> Callable[[ReadHandler], FuncSpec]:
    """Declare a dialplan function; the decorated fn(chan, *args) returns its value.

    `chan` is None when the function is read without a channel (e.g. from the CLI). Use
    `@<fn>.setter` on a second function fn(chan, value, *args) to make it writable.
    """
    _check_name(name)

    def decorate(fn: ReadHandler) -> FuncSpec:
        spec = FuncSpec(name, fn, fn.__module__, synopsis, syntax or f"{name}()", arguments,
                        description or (fn.__doc__ or "").strip(), seealso)
        _target().add_function(spec)
        return spec
    return decorate


def cli_command(command: str, *, summary: str, usage: str = "") -> Callable[[CliHandler], CliHandler]:
    """Declare an Asterisk CLI command; fn(argv) returns the text to print (or None).

    Raise pbx_python.ShowUsage to make Asterisk print the usage text.
    """
    def decorate(fn: CliHandler) -> CliHandler:
        _target().add_cli(CliSpec(command, fn, fn.__module__, summary,
                                  usage or f"Usage: {command}\n       {summary}\n"))
        return fn
    return decorate


def on_load(fn: LoadHook) -> LoadHook:
    """Declare a hook called with the parsed pbx_python.conf after each (re)load of its module.

    A hook that raises makes the load fail: on reload, the previous code stays in service.
    """
    _target().load_hooks.append((fn.__module__, fn))
    return fn


def on_unload(fn: UnloadHook) -> UnloadHook:
    """Declare a hook called with a reason when this generation of its module is discarded.

    Reasons: "reload" (a successful reload replaced it; called after the new code is in
    service), "rollback" (a reload imported it but was rolled back because another module
    failed), "failed" (this module failed to load), "shutdown" (Asterisk is stopping). Use it to
    stop threads and close what `on_load` or the import opened. Hooks must be idempotent and
    tolerate a partial load: an exception is logged and ignored.
    """
    _target().unload_hooks.append((fn.__module__, fn))
    return fn
