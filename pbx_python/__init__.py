"""pbx_python: dialplan applications and functions written in Python, run inside Asterisk.

    import pbx_python as px

    @px.application("Hello", synopsis="Say hello", syntax="Hello(name)")
    def hello(chan, name=""):
        chan.set_var("GREETING", f"Hello {name}")

    @px.function("UPPER", synopsis="Upper-case the argument", syntax="UPPER(text)")
    def upper(chan, text=""):
        return text.upper()

    office = px.switch("office")          # extensions.conf: switch => Python/office
    @office.extension("_2XXX")
    def internal(chan, exten):
        return chan.exec_app("Dial", f"PJSIP/{exten},20")
"""
from __future__ import annotations

from .asterisk import (LOG_DEBUG, LOG_ERROR, LOG_NOTICE, LOG_WARNING, NotInAsterisk, log,
                       manager_event, verbose, verbosity)
from .channel import (ApplicationNotFound, Channel, ChannelGone, ChannelRef, ChannelThreadError,
                      hangupcause_key)
from .config import Config, ConfigError
from .registry import application, cli_command, function, on_load, on_unload
from .switches import Switch, switch
from ._runtime import DialplanError, ShowUsage

__version__ = "0.1.0"


def config() -> Config:
    """The configuration of the last successful (re)load of pbx_python.conf."""
    from . import _runtime
    return _runtime.current_config()


__all__ = [
    "ApplicationNotFound", "Channel", "ChannelGone", "ChannelRef", "ChannelThreadError",
    "DialplanError", "Config", "ConfigError", "NotInAsterisk", "ShowUsage", "Switch",
    "LOG_DEBUG", "LOG_ERROR", "LOG_NOTICE", "LOG_WARNING",
    "application", "cli_command", "config", "function", "hangupcause_key", "log", "manager_event",
    "on_load", "on_unload", "switch", "verbose", "verbosity",
]
