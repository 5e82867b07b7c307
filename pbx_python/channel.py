"""The channel a Python application or function runs for.

Designed for few C calls: identity fields come from one snapshot taken on first use, and variable
assignments are deferred and applied in one batch (at the next C call, or by the C trampoline
after the Python callback returns). Reads always see earlier assignments.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from . import asterisk as ast
from .asterisk import decode, encode


class ApplicationNotFound(LookupError):
    """Channel.exec_app() named an application Asterisk does not have."""


class Channel:
    """A live Asterisk channel, valid only during the callback it was given to."""

    # Created for every call: only the two fields every call needs are set here; the others
    # start as these class-level defaults and are set when first used.
    _info: Any = None
    _pending: str = ""        # deferred assignments, "name\0value\0" back to back
    _out: Any = None
    _cptr: Any = None

    def __init__(self, addr: int, call: int = 0) -> None:
        # Addresses from the C trampoline (the channel, the struct pyast_call): they become cffi
        # pointers only when a C call needs them.
        self._addr = addr
        self._call = call

    def _c(self) -> Any:
        """The channel as a cffi pointer, for the C helpers."""
        if self._cptr is None:
            self._cptr = ast.ffi().cast("struct ast_channel *", self._addr)
        return self._cptr

    # ---- identity (one C call, on first use) ----
    def _snapshot(self) -> Any:
        if self._info is None:
            info = ast.ffi().new("struct pyast_chaninfo *")
            ast.lib().pyast_chan_info(self._c(), info)
            self._info = info
        return self._info

    def _field(self, name: str) -> str:
        return decode(ast.ffi().string(getattr(self._snapshot(), name)))

    @property
    def name(self) -> str:
        return self._field("name")

    @property
    def uniqueid(self) -> str:
        return self._field("uniqueid")

    @property
    def linkedid(self) -> str:
        return self._field("linkedid")

    @property
    def context(self) -> str:
        return self._field("context")

    @property
    def exten(self) -> str:
        return self._field("exten")

    @property
    def priority(self) -> int:
        return int(self._snapshot().priority)

    @property
    def tech(self) -> str:
        """Channel technology, e.g. 'PJSIP' or 'Local'; empty on a dummy channel."""
        return self._field("tech")

    @property
    def language(self) -> str:
        return self._field("language")

    @property
    def accountcode(self) -> str:
        return self._field("accountcode")

    @property
    def caller_num(self) -> str:
        return self._field("caller_num")

    @property
    def caller_name(self) -> str:
        return self._field("caller_name")

    @property
    def app_data(self) -> str:
        """The application's (or function's) argument string, before splitting."""
        if not self._call:
            return ""
        call = ast.ffi().cast("struct pyast_call *", self._call)
        return "" if call.data == ast.ffi().NULL else decode(ast.ffi().string(call.data))

    def __repr__(self) -> str:
        return f"<Channel {self.name}>"

    # ---- variables ----
    def set_var(self, name: str, value: Optional[str]) -> None:
        """Set a channel variable (None deletes it). A name ending in ')' writes a function."""
        if value is None:
            self._flush()
            ast.checked(ast.lib().pyast_unsetvar(self._c(), encode(name)))
            return
        if type(value) is not str:
            value = str(value)
        if "\0" in name or "\0" in value:
            raise ValueError("a NUL character cannot be passed to Asterisk")
        self._pending = f"{self._pending}{name}\0{value}\0"

    def set_vars(self, values: Mapping[str, Optional[str]]) -> None:
        for name, value in values.items():
            self.set_var(name, value)

    def get_var(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """A channel variable's value, or `default` when it is not set."""
        self._flush()
        out = self._outp()
        n = ast.lib().pyast_getvar(self._c(), encode(name), out)
        return default if n < 0 else decode(ast.ffi().unpack(out[0], n))

    # ---- dialplan functions, substitution, applications ----
    def func_read(self, expr: str) -> Optional[str]:
        """Read a dialplan function, e.g. 'PJSIP_HEADER(read,X-Foo)'; None if it failed."""
        self._flush()
        out = self._outp()
        n = ast.checked(ast.lib().pyast_func_read(self._c(), encode(expr), out))
        return None if n < 0 else decode(ast.ffi().unpack(out[0], n))

    def func_write(self, expr: str, value: str) -> bool:
        """Write a dialplan function, e.g. ('PJSIP_HEADER(add,X-Foo)', 'bar'); False if it failed."""
        self._flush()
        return ast.checked(ast.lib().pyast_func_write(self._c(), encode(expr), encode(value))) == 0

    def eval(self, template: str) -> str:
        """Substitute ${...} variables and functions in `template`, as the dialplan does."""
        self._flush()
        out = self._outp()
        n = ast.checked(ast.lib().pyast_substitute(self._c(), encode(template), out))
        return "" if n < 0 else decode(ast.ffi().unpack(out[0], n))

    def exec_app(self, app: str, data: str = "") -> int:
        """Run a dialplan application (e.g. 'Dial') on this channel and return its result.

        The GIL is released while it runs. `data` is passed as is: no ${} substitution.
        A non-zero result means the channel should hang up (return it from your application).
        """
        self._flush()
        res = ast.checked(ast.lib().pyast_exec(self._c(), encode(app), encode(data)))
        if res == -2:
            raise ApplicationNotFound(f"no dialplan application named {app!r}")
        return int(res)

    def is_hungup(self) -> bool:
        self._flush()
        return bool(ast.lib().pyast_check_hangup(self._c()))

    # ---- batching ----
    def _outp(self) -> Any:
        if self._out is None:
            self._out = ast.ffi().new("const char **")
        return self._out

    def _flush(self) -> None:
        if self._pending:
            batch = self._take_pending()
            ast.checked(ast.lib().pyast_setvars(self._c(), batch, len(batch)))

    def _take_pending(self) -> bytes:
        """The deferred assignments as b"name\\0value\\0...", now cleared."""
        pending = self._pending
        self._pending = ""
        return pending.encode("utf-8", "surrogateescape")

