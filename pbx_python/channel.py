"""The channel a Python application or function runs for, and references to live channels.

`Channel` is designed for few C calls: identity fields come from one snapshot taken on first
use (taken again after anything that may change them: assignments, function reads and writes,
eval, exec_app), and variable assignments are deferred and applied in one batch (at the next C
call, or by the C trampoline after the Python callback returns). Reads, identity included,
always see earlier assignments.

Lifetime: a `Channel` holds the raw address of Asterisk's channel, which is valid only while
the call it was given for runs (Asterisk may free the channel as soon as the application
returns). So it is usable only while its entry runs and only from the thread running it; any
other use raises (`ChannelGone`, `ChannelThreadError`) before touching Asterisk. Background work
uses `ChannelRef`, which finds the channel by uniqueid or name on every call and holds an
Asterisk reference for the duration of that call, as AMI's Getvar/Setvar do.
"""
from __future__ import annotations

from threading import get_ident
from typing import Any, Mapping, Optional

from . import asterisk as ast
from .asterisk import decode
from .values import MAX_DIALPLAN_TEXT, assignment, name_bytes, text_bytes, value_bytes


class ApplicationNotFound(LookupError):
    """Channel.exec_app() named an application Asterisk does not have."""


class ChannelGone(RuntimeError):
    """The channel cannot be used any more: a `Channel` whose call ended, or a `ChannelRef`
    whose channel hung up or no longer exists."""


class ChannelThreadError(RuntimeError):
    """A `Channel` was used from another thread than the one running its call."""


# Order of the fields pyast_chan_info() writes, NUL-separated, into the per-thread buffer.
_FIELDS = ("name", "uniqueid", "linkedid", "context", "exten", "priority", "tech", "language",
           "accountcode", "caller_num", "caller_name", "outgoing")
_INDEX = {f: i for i, f in enumerate(_FIELDS)}

AST_CHANNEL_NAME = 80   # Asterisk's channel-name buffer size (include/asterisk/channel.h)


def hangupcause_key(channel_name: str) -> str:
    """The name under which Asterisk files a dialled leg's cause for HANGUPCAUSE(<leg>,...).

    Channel names have no length limit and Channel.name gives them whole, but Asterisk records
    a leg's hang-up cause under its name cut to AST_CHANNEL_NAME - 1 bytes (as
    HANGUPCAUSE_KEYS() lists them): read HANGUPCAUSE with this key.
    """
    data = channel_name.encode("utf-8", "surrogateescape")[:AST_CHANNEL_NAME - 1]
    return data.decode("utf-8", "surrogateescape")


GONE_MESSAGE = ("the call this Channel was given for has ended: a Channel is valid only while "
                "its application or function runs (use chan.ref() for work that outlives it)")


class Channel:
    """A live Asterisk channel, valid only during the call it was given to, in its thread."""

    # Created for every call: slots, no per-instance dict (CallChannel.__init__ sets them all).
    # A Channel takes no attributes of its own: keep per-call state in local variables.
    __slots__ = ("_addr", "_call", "_thread", "_info", "_pending", "_out", "_cptr", "_gone")
    _addr: int
    _call: int
    _thread: int
    _info: Optional[list[str]]
    _pending: str               # deferred assignments, "name\0value\0" back to back, checked
    _out: Any
    _cptr: Any
    _gone: bool                 # set by the entry (in a finally) when the call returns

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a Channel is given to your application or function by pbx_python and "
                        "cannot be made: to reach another channel, use "
                        "pbx_python.ChannelRef(uniqueid or name)")

    def _check(self) -> None:
        """Refuse any use once the call ended, or from another thread (a check from another
        thread would race with the call ending)."""
        if self._gone:
            raise ChannelGone(GONE_MESSAGE)
        if get_ident() != self._thread:
            raise ChannelThreadError(
                "a Channel can be used only from the thread running its call (Asterisk's channel "
                "thread); from other threads use chan.ref(), a pbx_python.ChannelRef")

    def _c(self) -> Any:
        """The channel as a cffi pointer, for the C helpers; checks the channel is usable."""
        self._check()
        if self._cptr is None:
            self._cptr = ast.ffi().cast("struct ast_channel *", self._addr)
        return self._cptr

    # ---- identity (one C call, on first use) ----
    def _field(self, name: str) -> str:
        if self._gone or get_ident() != self._thread:
            self._check()
        if self._pending:
            self._flush()    # an assignment may change the identity (CALLERID(num), ...)
        if self._info is None:
            out = self._outp()
            n = ast.lib().pyast_chan_info(self._c(), out)
            if n < 0:
                raise MemoryError("cannot read the channel's identity")
            self._info = decode(ast.ffi().unpack(out[0], n)).split("\0")
        return self._info[_INDEX[name]]

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
        return int(self._field("priority"))

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
    def outgoing(self) -> bool:
        """True for a channel Asterisk dialled (a Dial leg, the channel of an AMI or CLI
        Originate: Asterisk's AST_FLAG_OUTGOING), False for one that called in. Asterisk clears
        it when a dialled channel goes on in the dialplan after a bridge."""
        return self._field("outgoing") == "1"

    @property
    def app_data(self) -> str:
        """The application's (or function's) argument string, before splitting."""
        self._check()   # the string lives in the C trampoline's frame: only while the call runs
        if not self._call:
            return ""
        call = ast.ffi().cast("struct pyast_call *", self._call)
        return "" if call.data == ast.ffi().NULL else decode(ast.ffi().string(call.data))

    def __repr__(self) -> str:
        name = self._info[0] if self._info else ""
        if self._gone:
            return f"<Channel {name} (gone: its call ended)>" if name else \
                "<Channel (gone: its call ended)>"
        if get_ident() != self._thread:
            return f"<Channel {name} (owned by another thread)>" if name else \
                "<Channel (owned by another thread)>"
        return f"<Channel {self.name}>"

    def __reduce_ex__(self, protocol: Any) -> Any:
        # A copy would escape the entry's end-of-call marking (and a pickle would carry a raw
        # address): refused, for copy.copy, copy.deepcopy and pickle alike.
        raise TypeError("a Channel cannot be copied or pickled: it is valid only during its "
                        "call; keep chan.uniqueid or chan.ref() instead")

    def ref(self) -> ChannelRef:
        """A reference to this channel (by uniqueid) usable from any thread while it lives."""
        return ChannelRef(self.uniqueid)

    # ---- variables ----
    def set_var(self, name: str, value: Any) -> None:
        """Set a channel variable (None deletes it). A name ending in ')' writes a function.

        The value is converted as pbx_python.values describes (str, bytes, int, float, bool);
        a bad name or value raises here, and the assignment is applied at the next call into
        Asterisk or when the callback returns.
        """
        if self._gone or get_ident() != self._thread:
            self._check()
        if (type(name) is str and type(value) is str and name and name.isascii()
                and value.isascii() and "\0" not in name and "\0" not in value
                and len(name) <= MAX_DIALPLAN_TEXT
                and (len(value) <= MAX_DIALPLAN_TEXT or name[-1] != ")")):
            self._pending = f"{self._pending}{name}\0{value}\0"    # the common case, checked
        elif value is None:
            self._unset(name_bytes(name))
        else:
            self._pending += assignment(name, value)

    def set_vars(self, values: Mapping[str, Any]) -> None:
        """Several set_var() calls, in order; all are checked before any is recorded."""
        self._check()
        checked = [(name_bytes(name), None if value is None else assignment(name, value))
                   for name, value in values.items()]
        for key, pair in checked:
            if pair is None:
                self._unset(key)
            else:
                self._pending += pair

    def _unset(self, key: bytes) -> None:
        self._flush()
        self._info = None
        ast.checked(ast.lib().pyast_unsetvar(self._c(), key))

    def get_var(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """A channel variable's value, or `default` when it is not set. A name ending in ')'
        reads that function (as set_var writes it), `default` if the read fails."""
        self._check()
        key = name_bytes(name)
        self._flush()
        if key[-1:] == b")":
            self._info = None     # a function read may have side effects
        out = self._outp()
        n = ast.lib().pyast_getvar(self._c(), key, out)
        return default if n < 0 else decode(ast.ffi().unpack(out[0], n))

    # ---- dialplan functions, substitution, applications ----
    def func_read(self, expr: str) -> Optional[str]:
        """Read a dialplan function, e.g. 'PJSIP_HEADER(read,X-Foo)'; None if it failed."""
        self._check()
        data = name_bytes(expr, "a function expression")
        self._flush()
        out = self._outp()
        self._info = None     # a read may have side effects (e.g. a Python function's writes)
        n = ast.checked(ast.lib().pyast_func_read(self._c(), data, out))
        return None if n < 0 else decode(ast.ffi().unpack(out[0], n))

    def func_write(self, expr: str, value: Any) -> bool:
        """Write a dialplan function, e.g. ('PJSIP_HEADER(add,X-Foo)', 'bar'); False if it failed."""
        self._check()
        data = name_bytes(expr, "a function expression")
        raw = value_bytes(value, f"the value for {expr}", limit=True)
        self._flush()
        self._info = None     # the write may change the identity (CALLERID, CHANNEL(language)...)
        return ast.checked(ast.lib().pyast_func_write(self._c(), data, raw)) == 0

    def eval(self, template: str) -> str:
        """Substitute ${...} variables and functions in `template`, as the dialplan does."""
        self._check()
        data = text_bytes(template, "a template")
        self._flush()
        out = self._outp()
        self._info = None     # ${SET(CALLERID(num)=...)} and the like change the identity
        n = ast.checked(ast.lib().pyast_substitute(self._c(), data, out))
        return "" if n < 0 else decode(ast.ffi().unpack(out[0], n))

    def exec_app(self, app: str, data: str = "") -> int:
        """Run a dialplan application (e.g. 'Dial') on this channel and return its result.

        The GIL is released while it runs. `data` is passed as is: no ${} substitution.
        A non-zero result means the channel should hang up (return it from your application).
        """
        self._check()
        name, args = name_bytes(app, "an application name"), text_bytes(data, "application data")
        self._flush()
        self._info = None     # the application may change the identity, context, priority...
        res = ast.checked(ast.lib().pyast_exec(self._c(), name, args))
        if res == -2:
            raise ApplicationNotFound(f"no dialplan application named {app!r}")
        if res == -3:
            raise RuntimeError(f"cannot run {app} here: this function is read without a call "
                               "(on Asterisk's dummy channel: AMI Getvar without a channel, a CDR "
                               "or CEL template, ...)")
        return int(res)

    def is_hungup(self) -> bool:
        """True once the channel has hung up. Pending assignments stay pending: no assignment
        can hang a channel up, so they need not be applied first (one C call, not two)."""
        chan = self._c()    # checks first: a gone Channel raises before any C call
        return bool(ast.lib().pyast_check_hangup(chan))

    # ---- batching ----
    def _outp(self) -> Any:
        if self._out is None:
            self._out = ast.ffi().new("const char **")
        return self._out

    def _flush(self) -> None:
        if self._pending:
            chan = self._c()
            batch = self._take_pending()
            self._info = None   # identity is read again after assignments (CALLERID(...) ...)
            ast.checked(ast.lib().pyast_setvars(chan, batch, len(batch)))

    def _take_pending(self) -> bytes:
        """The deferred assignments as b"name\\0value\\0...", now cleared."""
        pending = self._pending
        self._pending = ""
        return pending.encode("utf-8", "surrogateescape")   # cannot fail: checked when set

    # ---- several reads in one C call ----
    def eval_each(self, *templates: str) -> list[str]:
        """Substitute each template as eval() does, in one C call: one value per template.

        The values come back NUL-separated (a dialplan value cannot hold a NUL), so no content
        can shift them, unlike several reads joined into one template and split again.
        """
        self._flush()
        if any("\0" in t for t in templates):
            raise ValueError("a NUL character cannot be passed to Asterisk")
        data = "".join(f"{t}\0" for t in templates).encode("utf-8", "surrogateescape")
        out = self._outp()
        n = ast.checked(ast.lib().pyast_substitute_each(self._c(), data, len(data), out))
        if n < 0:
            return [""] * len(templates)
        return decode(ast.ffi().unpack(out[0], n)).split("\0")[:-1]

    def func_read_each(self, *exprs: str, maxlen: int = 0) -> list[Optional[str]]:
        """Read each dialplan function expression in one C call; None where a read failed.

        ``maxlen`` > 0 gives each read a buffer of that many bytes: a function with a legacy
        read callback (e.g. PJSIP_HEADER) otherwise fails on a value over 4 kB.
        """
        self._flush()
        if any("\0" in e for e in exprs):
            raise ValueError("a NUL character cannot be passed to Asterisk")
        data = "".join(f"{e}\0" for e in exprs).encode("utf-8", "surrogateescape")
        out = self._outp()
        n = ast.checked(ast.lib().pyast_func_read_each(self._c(), data, len(data), maxlen,
                                                        out))
        if n < 0:
            return [None] * len(exprs)
        items = decode(ast.ffi().unpack(out[0], n)).split("\0")[:-1]
        return [item[1:] if item[:1] == "+" else None for item in items]


class CallChannel(Channel):
    """The Channel the runtime makes for one call (a user cannot: a raw address would let
    Python code read any memory)."""

    __slots__ = ()

    def __init__(self, addr: int, call: int = 0) -> None:
        # Addresses from the C trampoline (the channel, the struct pyast_call on the
        # trampoline's stack): they become cffi pointers only when a C call needs them.
        self._addr = addr
        self._call = call
        self._thread = get_ident()
        self._info = None
        self._pending = ""
        self._out = None
        self._cptr = None
        self._gone = False


class ChannelRef:
    """A channel named by its uniqueid (or name), usable from any thread while it is up.

    Each method is one call into Asterisk that looks the channel up, holds a reference to it
    (and its lock where Asterisk's own code takes it) while it works, and lets it go: nothing
    is kept between calls. A channel that no longer exists or has hung up raises ChannelGone
    (is_hungup() answers True instead). Assignments are applied at once. There is no exec_app:
    applications run only on the channel's own thread, from its Channel.
    """

    __slots__ = ("id", "_key")

    def __init__(self, channel: str) -> None:
        self._key = name_bytes(channel, "a channel uniqueid or name")
        self.id = channel

    def __repr__(self) -> str:
        return f"<ChannelRef {self.id}>"

    def _gone(self) -> ChannelGone:
        return ChannelGone(f"channel {self.id} has hung up or no longer exists")

    def get_var(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """A channel variable's value, or `default` when it is not set; a name ending in ')'
        reads that function."""
        out = ast.ffi().new("const char **")
        n = ast.checked(ast.lib().pyast_ref_getvar(self._key, name_bytes(name), out))
        if n == -2:
            raise self._gone()
        return default if n < 0 else decode(ast.ffi().unpack(out[0], n))

    def set_var(self, name: str, value: Any) -> None:
        """Set (None: delete) a channel variable now; a name ending in ')' writes a function."""
        key = name_bytes(name)
        if value is None:
            res = ast.checked(ast.lib().pyast_ref_unsetvar(self._key, key))
        else:
            batch = assignment(name, value).encode("utf-8", "surrogateescape")
            res = ast.checked(ast.lib().pyast_ref_setvars(self._key, batch, len(batch)))
        if res == -2:
            raise self._gone()

    def set_vars(self, values: Mapping[str, Any]) -> None:
        """Set several variables in one call (None values are not allowed here)."""
        batch = "".join(assignment(k, v) for k, v in values.items()).encode(
            "utf-8", "surrogateescape")
        if batch and ast.lib().pyast_ref_setvars(self._key, batch, len(batch)) == -2:
            raise self._gone()

    def func_read(self, expr: str) -> Optional[str]:
        """Read a dialplan function on the channel; None if the read failed."""
        out = ast.ffi().new("const char **")
        data = name_bytes(expr, "a function expression")
        n = ast.checked(ast.lib().pyast_ref_func_read(self._key, data, out))
        if n == -2:
            raise self._gone()
        return None if n < 0 else decode(ast.ffi().unpack(out[0], n))

    def eval(self, template: str) -> str:
        """Substitute ${...} in `template` with the channel's variables and functions."""
        out = ast.ffi().new("const char **")
        data = text_bytes(template, "a template")
        n = ast.checked(ast.lib().pyast_ref_substitute(self._key, data, out))
        if n == -2:
            raise self._gone()
        return "" if n < 0 else decode(ast.ffi().unpack(out[0], n))

    def is_hungup(self) -> bool:
        """True when the channel has hung up or no longer exists."""
        return ast.lib().pyast_ref_alive(self._key) == 0

    def hangup(self) -> None:
        """Ask the channel to hang up (a soft hangup, as AMI's Hangup action)."""
        if ast.lib().pyast_ref_hangup(self._key) == -2:
            raise self._gone()
