"""Text of the default configuration files a test Asterisk instance starts with.

Every function returns the complete file text; :class:`AsteriskInstance` writes them and lets
callers override any file by name.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from .net import last_octet, require_loopback

#: Name of the ``[logfiles]`` entry the helpers read (``<logdir>/full``).
FULL_LOG = "full"

#: Modules never loaded in tests: absent hardware, or sockets on non-loopback addresses by
#: default, or traffic to outside servers. Only the ones present in the moddir are listed.
NOLOAD_MODULES: tuple[str, ...] = (
    "chan_alsa.so", "chan_oss.so", "chan_console.so", "chan_mobile.so",
    "chan_dahdi.so", "codec_dahdi.so", "res_timing_dahdi.so",
    "chan_iax2.so", "chan_unistim.so", "chan_mgcp.so", "chan_skinny.so", "chan_ooh323.so",
    "chan_motif.so", "res_xmpp.so", "pbx_dundi.so", "res_hep.so", "res_hep_pjsip.so",
    "res_hep_rtcp.so", "res_snmp.so", "res_pktccops.so", "res_statsd.so", "res_corosync.so",
    "res_stun_monitor.so", "res_phoneprov.so", "res_pjsip_phoneprov_provider.so",
    "cdr_radius.so", "cel_radius.so", "res_config_ldap.so", "res_smdi.so",
    "res_calendar.so", "res_calendar_caldav.so", "res_calendar_ews.so",
    "res_calendar_exchange.so", "res_calendar_icalendar.so", "res_prometheus.so",
)


#: RTP ports of a test instance. Asterisk takes an even port for each RTP stream and the next one
#: for its RTCP, so 4000 ports carry 2000 streams: 1000 calls bridged through the node (two
#: legs with media each), or 2000 calls answered by it.
RTP_PORTS = 4000

#: First port of the lowest slot; the slots stay below Linux's ephemeral range (32768-60999).
RTP_BASE = 10000
RTP_SLOTS = 5


def rtp_port_range(host: str, ports: int = RTP_PORTS) -> tuple[int, int]:
    """``ports`` RTP ports (first, last) for the instance on ``host``.

    Every endpoint the helpers generate names a transport bound to the instance's own address,
    and Asterisk binds RTP to that address, so instances on different addresses may share ports.
    The range still starts in one of five slots picked by the last octet, so an endpoint a test
    binds to 0.0.0.0 rarely meets another instance's ports (Asterisk would skip a busy port anyway).
    """
    if not 2 <= ports <= 65536 - RTP_BASE:
        raise ValueError(f"ports={ports}: an RTP range needs 2 to {65536 - RTP_BASE} ports")
    step = min(ports, (32768 - RTP_BASE) // RTP_SLOTS)
    start = RTP_BASE + (last_octet(host) % RTP_SLOTS) * step
    start = min(start, 65536 - ports)
    return start, start + ports - 1


def asterisk_conf(dirs: Mapping[str, Path | str], verbose: int = 3, debug: int = 0) -> str:
    """asterisk.conf with a plain ``[directories]`` section (not the ignored ``(!)`` template)."""
    lines = ["[directories]"]
    lines += [f"{key} => {value}" for key, value in dirs.items()]
    lines += [
        "",
        "[options]",
        f"verbose = {verbose}",
        f"debug = {debug}",
        "nocolor = yes",
        "hideconnect = yes",
        "cache_media_frames = yes",
        "",
    ]
    return "\n".join(lines)


def logger_conf() -> str:
    """A ``full`` file log (everything incl. verbose/debug) plus ``messages``; no queue log."""
    return (
        "[general]\n"
        "dateformat = %F %T.%3q\n"
        "queue_log = no\n"
        "\n"
        "[logfiles]\n"
        f"{FULL_LOG} => notice,warning,error,verbose,debug,dtmf\n"
        "messages => notice,warning,error\n"
    )


def modules_conf(present: Iterable[str] = (), noload: Iterable[str] = NOLOAD_MODULES) -> str:
    """``autoload=yes`` with ``noload`` for unwanted modules that are actually in ``present``.

    If ``present`` is empty every ``noload`` module is listed.
    """
    have = set(present)
    lines = ["[modules]", "autoload = yes"]
    lines += [f"noload => {m}" for m in noload if not have or m in have]
    return "\n".join(lines) + "\n"


def cdr_conf(enabled: bool) -> str:
    """cdr.conf enabling or disabling the CDR engine."""
    return f"[general]\nenable = {'yes' if enabled else 'no'}\n"


def cel_conf(enabled: bool) -> str:
    """cel.conf enabling (all events, all apps) or disabling CEL."""
    if not enabled:
        return "[general]\nenable = no\n"
    return "[general]\nenable = yes\napps = all\nevents = ALL\n"


def manager_conf(host: str, port: int = 5038, user: str = "test", secret: str = "test") -> str:
    """AMI bound to ``host:port`` with one read/write-all user allowed from loopback only."""
    require_loopback(host)
    return (
        "[general]\n"
        "enabled = yes\n"
        "webenabled = no\n"
        f"port = {port}\n"
        f"bindaddr = {host}\n"
        "displayconnects = no\n"
        "\n"
        f"[{user}]\n"
        f"secret = {secret}\n"
        "deny = 0.0.0.0/0.0.0.0\n"
        "permit = 127.0.0.0/255.0.0.0\n"
        "read = all\n"
        "write = all\n"
    )


#: Port of the built-in HTTP server when a test enables it (on the instance's own address).
HTTP_PORT = 8088
PROMETHEUS = "res_prometheus.so"


def http_conf(host: str | None = None, port: int = HTTP_PORT) -> str:
    """The built-in HTTP server: disabled, or enabled on ``host:port`` (loopback only)."""
    if host is None:
        return "[general]\nenabled = no\n"
    require_loopback(host)
    return f"[general]\nenabled = yes\nbindaddr = {host}\nbindport = {port}\n"


def prometheus_conf(uri: str = "metrics") -> str:
    """res_prometheus enabled at ``/<uri>`` (no authentication: the server is on loopback)."""
    return f"[general]\nenabled = yes\ncore_metrics_enabled = yes\nuri = {uri}\n"


def modules_conf_loading(*modules: str) -> str:
    """modules.conf as the default one (autoload, :data:`NOLOAD_MODULES` left out), except that
    ``modules`` (names from :data:`NOLOAD_MODULES`, e.g. :data:`PROMETHEUS`, :data:`IAX2`) load."""
    unknown = [m for m in modules if m not in NOLOAD_MODULES]
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not in NOLOAD_MODULES (autoload loads it anyway)")
    return modules_conf(noload=[m for m in NOLOAD_MODULES if m not in modules])


def metrics_configs(host: str, port: int = HTTP_PORT, uri: str = "metrics") -> dict[str, str]:
    """The files that expose Asterisk's Prometheus metrics at ``http://host:port/uri``: the
    HTTP server on ``host``, prometheus.conf, and modules.conf loading res_prometheus (which
    the defaults leave out). For ``configs=``/``extra_configs``."""
    return {"http.conf": http_conf(host, port), "prometheus.conf": prometheus_conf(uri),
            "modules.conf": modules_conf_loading(PROMETHEUS)}


#: chan_iax2, left out by default: without a ``bindaddr`` it listens on 0.0.0.0:4569.
IAX2 = "chan_iax2.so"
#: IAX2's port; every instance binds it on its own loopback address, so all share the number.
IAX2_PORT = 4569


def iax_conf(host: str, port: int = IAX2_PORT, *, codecs: str = "ulaw",
             entries: Iterable[str] = ()) -> str:
    """iax.conf: chan_iax2 bound to ``host:port`` only, then ``entries`` (:func:`iax_peer`,
    :func:`iax_user`). No DNS SRV lookups, no native transfer (media stays between the two
    Asterisk processes that set up the call), no jitter buffer."""
    require_loopback(host)
    general = ("[general]\n"
               f"bindaddr = {host}:{port}\n"
               "srvlookup = no\n"
               "transfer = no\n"
               "jitterbuffer = no\n"
               "autokill = yes\n"
               "disallow = all\n"
               f"allow = {codecs}\n")
    return "\n".join([general, *entries])


def iax_peer(name: str, peer_host: str, peer_port: int = IAX2_PORT, *, username: str | None = None,
             codecs: str = "ulaw") -> str:
    """An IAX2 peer to call: ``Dial(IAX2/<name>/<exten>)`` sends the call to
    ``peer_host:peer_port`` (loopback only), as the IAX2 user ``username`` there (default
    ``name``)."""
    require_loopback(peer_host)
    return (f"[{name}]\n"
            "type = peer\n"
            f"host = {peer_host}\n"
            f"port = {peer_port}\n"
            f"username = {username or name}\n"
            "qualify = no\n"
            "disallow = all\n"
            f"allow = {codecs}\n")


def iax_user(name: str, peer_host: str, *, context: str, codecs: str = "ulaw") -> str:
    """An IAX2 user: calls that name ``name`` and come from ``peer_host`` (and no other address)
    run the dialplan in ``context``. No secret: the address is the authentication, as the
    helpers' PJSIP identify-by-IP endpoints do."""
    require_loopback(peer_host)
    return (f"[{name}]\n"
            "type = user\n"
            f"context = {context}\n"
            "deny = 0.0.0.0/0.0.0.0\n"
            f"permit = {peer_host}/255.255.255.255\n"
            "disallow = all\n"
            f"allow = {codecs}\n")


def iax2_configs(host: str, entries: Iterable[str] = (), port: int = IAX2_PORT,
                 codecs: str = "ulaw") -> dict[str, str]:
    """The files that make an instance on ``host`` speak IAX2 there: iax.conf (:func:`iax_conf`
    with ``entries``) and modules.conf loading chan_iax2 (which the defaults leave out). For
    ``configs=``/``extra_configs``; pick ``host`` with UDP :data:`IAX2_PORT` free
    (``free_loopback_host(udp_ports=(5060, IAX2_PORT))``)."""
    return {"iax.conf": iax_conf(host, port, codecs=codecs, entries=entries),
            "modules.conf": modules_conf_loading(IAX2)}


def scrape(host: str, port: int = HTTP_PORT, uri: str = "metrics", timeout: float = 5) -> str:
    """GET ``http://host:port/uri`` (loopback only) and return the body."""
    import urllib.request
    require_loopback(host)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    with opener.open(f"http://{host}:{port}/{uri}", timeout=timeout) as resp:
        return resp.read().decode("utf-8", "replace")


def pjsip_conf(host: str, port: int = 5060, transport: str = "transport-udp") -> str:
    """A single UDP transport bound to ``host:port``."""
    require_loopback(host)
    return f"[{transport}]\ntype = transport\nprotocol = udp\nbind = {host}:{port}\n"


def pjsip_endpoint(
    name: str,
    peer_host: str,
    peer_port: int = 5060,
    *,
    context: str = "default",
    transport: str = "transport-udp",
    codecs: str = "ulaw,alaw",
    extra: Mapping[str, str] | None = None,
) -> str:
    """Endpoint + AOR + IP identify for a peer at ``peer_host:peer_port`` (append to pjsip.conf).

    The endpoint names ``transport`` so RTP binds to that transport's address, not 0.0.0.0.
    ``extra`` adds endpoint options.
    """
    require_loopback(peer_host)
    lines = [
        f"[{name}]",
        "type = endpoint",
        f"transport = {transport}",
        f"context = {context}",
        "disallow = all",
        f"allow = {codecs}",
        f"aors = {name}",
        "direct_media = no",
        "rtp_symmetric = yes",
    ]
    lines += [f"{k} = {v}" for k, v in (extra or {}).items()]
    lines += [
        "",
        f"[{name}]",
        "type = aor",
        f"contact = sip:{peer_host}:{peer_port}",
        "",
        f"[{name}]",
        "type = identify",
        f"endpoint = {name}",
        f"match = {peer_host}",
        "",
    ]
    return "\n".join(lines)


def extensions_conf() -> str:
    """A minimal dialplan with an empty ``[default]`` context."""
    return "[general]\nstatic = yes\nwriteprotect = yes\n\n[default]\n"


def rtp_conf(host: str, ports: int = RTP_PORTS) -> str:
    """rtp.conf with :func:`rtp_port_range` and ICE/STUN off (no traffic beyond loopback)."""
    start, end = rtp_port_range(host, ports)
    return f"[general]\nrtpstart = {start}\nrtpend = {end}\nicesupport = no\n"
