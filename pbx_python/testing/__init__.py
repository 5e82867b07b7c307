"""pbx_python's own test helpers: private Asterisk instances, an AMI client, SIPp drivers, a pytest plugin.

Only loopback (127.0.0.0/8) addresses are ever bound or contacted.
"""
from __future__ import annotations

from .ami import AmiClient, AmiError, AmiMessage
from .configs import pjsip_endpoint, rtp_port_range
from .health import Problem
from .instance import AddressInUseError, AsteriskError, AsteriskInstance, cli_quote
from .net import free_loopback_host, free_port, loopback_network, port_is_free, require_loopback
from .sipmsg import Headers, parse_headers, request_method, status_code
from .sipp import Sipp, SippResult, SippUas, run_uac

__all__ = [
    "AddressInUseError",
    "AmiClient",
    "AmiError",
    "AmiMessage",
    "AsteriskError",
    "AsteriskInstance",
    "Headers",
    "Problem",
    "Sipp",
    "SippResult",
    "SippUas",
    "cli_quote",
    "free_loopback_host",
    "free_port",
    "loopback_network",
    "parse_headers",
    "pjsip_endpoint",
    "port_is_free",
    "request_method",
    "require_loopback",
    "rtp_port_range",
    "run_uac",
    "status_code",
]
