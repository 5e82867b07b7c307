"""The cluster directory inside Asterisk: the live table, GETEXTENSIONINFO() and the CLI.

The table in service is one immutable Table, swapped in whole by the source's publish() (one
reference assignment under a lock): a lookup reads it without I/O and without waiting.

A 'module reload' re-imports this package and starts a new source, but the table in service
must outlive that generation (a bad file at reload keeps the old directory), so it lives in a
small holder registered in sys.modules under a name the loader never re-imports. The holder
also says which source owns it: a source that was replaced (or a reload rolled back) can no
longer publish.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
import threading
import time
import types
from typing import Optional

import pbx_python as px
from pbx_python import asterisk as ast

from .settings import DirectorySettings, parse_settings
from .sources import Source, SourceStatus, make_source
from .table import RESERVED_FIELDS, Entry, Table

log = logging.getLogger("directory")

_HOLDER_NAME = "_pbx_python_directory_live"
_FIELD_RE = re.compile(r"[A-Za-z0-9_]+")
_EMPTY = Table(())


def _holder() -> types.ModuleType:
    """The process-wide holder of the table in service (created once, kept across reloads)."""
    holder = sys.modules.get(_HOLDER_NAME)
    if holder is None:
        holder = types.ModuleType(_HOLDER_NAME, "pbx_python's cluster directory in service")
        holder.lock = threading.Lock()
        holder.current = (_EMPTY, None, None)    # (table, loaded_at, owning source)
        holder.rollback = None                    # what a reload in progress may give back
        holder = sys.modules.setdefault(_HOLDER_NAME, holder)
    return holder


# This generation's source. What was in service before it took over is kept in the holder
# (``holder.rollback``) only until the reload is decided: a rollback gives it back; the
# generation it replaced clears it when it stops (a 100 000-entry table is ~70 MB).
_source: Optional[Source] = None
_settings: Optional[DirectorySettings] = None


@px.on_load
def start(config: px.Config) -> None:
    """Read [directory], build the source, take over the holder and load the first table."""
    global _source, _settings
    config_dir, data_dir = ast.directories() if ast.bound() else (os.getcwd(), os.getcwd())
    _settings = parse_settings(config.section("directory"), config_dir, data_dir)
    source = make_source(_settings)
    holder = _holder()
    with holder.lock:
        holder.rollback = holder.current
        table, loaded_at, _ = holder.current
        holder.current = (table, loaded_at, source)   # the old table stays until a publish
    _source = source

    def publish(table: Table) -> None:
        with holder.lock:
            if holder.current[2] is not source:
                return          # this source was replaced (reload) or discarded (rollback)
            holder.current = (table, time.time(), source)

    source.start(publish)
    table = holder.current[0]
    px.verbose(f"Cluster directory ({_settings.source}, {_settings.location}): "
               f"{len(table)} entries in service", 2)


@px.on_unload
def stop(reason: str) -> None:
    """Stop this generation's source; a discarded generation gives the holder back."""
    source = _source
    if source is None:
        return
    holder = _holder()
    with holder.lock:
        previous = getattr(holder, "rollback", None)
        if holder.current[2] is source:
            if reason in ("rollback", "failed") and previous is not None:
                holder.current = previous           # the generation still in service keeps it
            elif reason != "shutdown":
                # a reload without this package: nobody owns the directory any more
                holder.current = (_EMPTY, None, None)
        if reason == "reload":
            holder.rollback = None      # this generation was replaced: its table can go
    source.stop()


def lookup(exten: str) -> Optional[Entry]:
    """The directory entry for ``exten`` (None when none matches or no directory is loaded)."""
    table, _, owner = _holder().current
    return table.lookup(exten) if owner is not None else None


def loaded() -> bool:
    """Whether a directory is loaded (this package is in service, whatever its table holds)."""
    return _holder().current[2] is not None


def status() -> Optional[SourceStatus]:
    """The source's status, with the table in service; None when no directory is loaded."""
    table, loaded_at, owner = _holder().current
    if owner is None:
        return None
    st = owner.status()
    return dataclasses.replace(st, entries=len(table),
                               loaded_at=st.loaded_at if st.loaded_at is not None else loaded_at)


# ---------------------------------------------------------------------------- GETEXTENSIONINFO

SYNTAX = "GETEXTENSIONINFO(extension[,field])"
ARGUMENTS = """\
extension: the extension to look up (an exact entry of the directory, else the first of its
    patterns that matches, in the order the dialplan sorts patterns: the most specific first)
field: what to return (default: primary,secondary)
    primary   - the primary SOP
    secondary - the secondary SOP (empty when the entry has none)
    found     - 1 when the extension is in the directory, else 0
    pattern   - the directory entry that matched (e.g. 4711 or _5XXX)
    <name>    - the attribute <name> of the entry (e.g. vm_context, name); empty when the
                entry has no such attribute"""
DESCRIPTION = """\
Reads the cluster directory (the [directory] section of pbx_python.conf: a file in Asterisk's
config dir, or PostgreSQL), kept in memory: a lookup never waits for a file or the network.
An extension the directory does not hold reads empty (found reads 0): not an error.
Without a field the value is 'primary,secondary', e.g. 'sopA,sopB', or 'sopC,' without a
secondary. An exact extension beats any pattern; '-' is ignored, as in the dialplan.
CallService with both SOP arguments empty takes its SOPs from this directory.
'callservice show directory [extension]' shows the directory and what an extension gives.

Example:
  same => n,Set(SOPS=${GETEXTENSIONINFO(${MAILBOX})})
  same => n,GotoIf($[${GETEXTENSIONINFO(${MAILBOX},found)}]?known:unknown)
  same => n(known),CallService(${MAILBOX},,,${LANG},${MAILBOX})"""


@px.function("GETEXTENSIONINFO", synopsis="The SOPs (and attributes) of an extension in the "
             "cluster directory", syntax=SYNTAX, arguments=ARGUMENTS, description=DESCRIPTION,
             seealso="Application:CallService")
def get_extension_info(chan: Optional[px.Channel], exten: str = "", field: str = "",
                       *extra: str) -> str:
    if extra:
        raise px.DialplanError(f"GETEXTENSIONINFO: {len(extra)} argument(s) too many: {SYNTAX}")
    exten, field = exten.strip(), field.strip()
    if field and not _FIELD_RE.fullmatch(field):
        raise px.DialplanError(f"GETEXTENSIONINFO({_shown(exten)},{_shown(field)}): the field is "
                               "not primary, secondary, found, pattern or an attribute name "
                               "(A-Z a-z 0-9 _)")
    entry = lookup(exten) if exten else None
    return field_value(entry, field)


def field_value(entry: Optional[Entry], field: str) -> str:
    """What GETEXTENSIONINFO returns for ``field`` of ``entry`` (None: not in the directory)."""
    name = field.lower()
    if name == "found":
        return "1" if entry is not None else "0"
    if entry is None:
        return ""
    if not field:
        return f"{entry.primary},{entry.secondary}"
    if name in RESERVED_FIELDS:
        return getattr(entry, name)
    return entry.attrs.get(field, "")


# ---------------------------------------------------------------------------- CLI

USAGE = """\
Usage: callservice show directory [extension]
       The cluster directory: its source and location, how many entries, the age of the
       table in service and the last error. With an extension: the entry it gives (exact
       or pattern), its SOPs and attributes, or that it is not in the directory.
"""


@px.cli_command("callservice show directory", summary="Show the cluster directory (or what "
                "an extension gives)", usage=USAGE)
def show_directory(argv: list[str]) -> str:
    args = argv[3:]
    if len(args) > 1:
        raise px.ShowUsage()
    st = status()
    if st is None:
        return "The cluster directory is not loaded\n"
    if args:
        return _show_extension(args[0])
    now = time.time()
    lines = [f"Source:      {st.source}",
             f"Location:    {_shown(st.location)}",
             f"Entries:     {st.entries}",
             f"Loaded:      " + (f"{_when(st.loaded_at)} ({_age(now - st.loaded_at)} ago)"
                                 if st.loaded_at else "never (the directory is empty)"),
             f"Last error:  " + (f"{_when(st.last_error_at)}: {_shown(st.last_error)}"
                                 if st.last_error else "none")]
    if st.detail:
        lines.append(f"Detail:      {_shown(st.detail)}")
    return "\n".join(lines) + "\n"


def _show_extension(exten: str) -> str:
    entry = lookup(exten)
    if entry is None:
        return f"{_shown(exten)}: not in the directory\n"
    lines = [f"Extension:   {_shown(exten)}",
             f"Entry:       {entry.pattern} ({'pattern' if entry.is_pattern else 'exact'})",
             f"Primary:     {entry.primary}",
             f"Secondary:   {entry.secondary or '(none)'}"]
    if entry.attrs:
        lines.append("Attributes:")
        lines += [f"  {name} = {_shown(value)}" for name, value in entry.attrs.items()]
    return "\n".join(lines) + "\n"


# C0 and C1 controls and DEL: an attribute value (from the file or the database) holding ESC
# sequences would otherwise drive the operator's terminal (clear it, fake lines, retitle it).
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")


def _shown(text: str) -> str:
    """``text`` for the console: control characters as escapes (\\x1b), nothing else changed."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
