"""Shared helpers for the benchmarks: Asterisk instances, loopback hosts, timing loops, statistics.

Every benchmark module exposes ``run(mode) -> dict`` (JSON-serialisable); bench/run.py calls
them in order and bench/report.py turns the results into docs/BENCHMARKS.md.
"""
from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pbx_python.testing import AsteriskInstance, port_is_free  # noqa: E402
from pbx_python.testing.module import module_so  # noqa: E402
from pbx_python.testing.net import require_loopback  # noqa: E402

#: build/pbx_python.so, or the build for this venv's Python (make bench PYTHON=...), or $PBX_PYTHON_MODULE.
MODULE_SO = module_so(ROOT)

#: Loopback addresses the benchmarks use (the integration tests use 127.0.0.2-.60 and .200-.207).
HOST_RANGE = range(150, 199)
_used_hosts: set[str] = set()

#: Timestamp with microseconds, evaluated by the dialplan itself.
NOW = "${STRFTIME(,,%s.%6q)}"


@dataclass(frozen=True)
class Mode:
    name: str            # "quick" | "full"
    reps: int            # repetitions per measurement (>= 5)

    @property
    def quick(self) -> bool:
        return self.name == "quick"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def asterisk_prefix() -> Path:
    env = os.environ.get("ASTERISK_PREFIX")
    if env:
        return Path(env)
    out = subprocess.run(["bash", str(ROOT / "contrib" / "build-asterisk.sh"), "--print"],
                         capture_output=True, text=True, cwd=ROOT, check=True, timeout=120)
    return Path(out.stdout.strip().splitlines()[-1])


def pick_host(udp_ports: Sequence[int] = (5060,), tcp_ports: Sequence[int] = (5038,)) -> str:
    """A 127.0.0.N from HOST_RANGE not used by this run and whose ports are free now."""
    import socket
    for n in HOST_RANGE:
        host = f"127.0.0.{n}"
        if host in _used_hosts:
            continue
        if all(port_is_free(host, p, socket.SOCK_DGRAM) for p in udp_ports) and all(
                port_is_free(host, p, socket.SOCK_STREAM) for p in tcp_ports):
            _used_hosts.add(host)
            return host
    raise RuntimeError("no free loopback host in 127.0.0.150-198")


def release_host(host: str) -> None:
    _used_hosts.discard(host)


def pbx_python_conf(modules: Iterable[str] = ("px_bench",), paths: Iterable[str] = (str(BENCH_DIR),),
                    extra: str = "") -> str:
    return textwrap.dedent(f"""\
        [general]
        python = {sys.executable}
        path = {", ".join(paths)}
        modules = {", ".join(modules)}
        """) + extra


def modules_conf(noload: Iterable[str] = ()) -> str:
    from pbx_python.testing import configs as cfg
    text = cfg.modules_conf()
    return text + "".join(f"noload => {m}\n" for m in noload)


class Instance:
    """An AsteriskInstance started for a benchmark; always stopped and removed by close()."""

    def __init__(self, name: str, extensions: str, *, python: bool = True, host: Optional[str] = None,
                 configs: Optional[Mapping[str, str]] = None, verbose: int = 0,
                 pymodules: Iterable[str] = ("px_bench",), noload: Iterable[str] = ("pbx_lua.so",),
                 pyextra: str = "", start: bool = True) -> None:
        self.host = host or pick_host()
        files = {"extensions.conf": extensions, "modules.conf": modules_conf(noload)}
        if python:
            files["pbx_python.conf"] = pbx_python_conf(pymodules, extra=pyextra)
        files.update(configs or {})
        self.ast = AsteriskInstance(asterisk_prefix(), self.host, name=name,
                                    modules=[MODULE_SO] if python else [], configs=files,
                                    verbose=verbose)
        if start:
            try:
                self.ast.start(timeout=90)
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        try:
            self.ast.stop(timeout=15)
        finally:
            shutil.rmtree(self.ast.base, ignore_errors=True)
            release_host(self.host)

    def __enter__(self) -> AsteriskInstance:
        return self.ast

    def __exit__(self, *exc: Any) -> None:
        self.close()


def stats(values: Sequence[float]) -> dict[str, Any]:
    vals = [float(v) for v in values]
    if not vals:
        return {"n": 0, "min": None, "median": None, "max": None, "values": []}
    return {"n": len(vals), "min": min(vals), "median": statistics.median(vals), "max": max(vals),
            "values": vals}


def percentile(values: Sequence[float], p: float) -> Optional[float]:
    """Nearest-rank percentile (p in 0..100)."""
    vals = sorted(values)
    if not vals:
        return None
    k = max(0, min(len(vals) - 1, int(-(-p * len(vals) // 100)) - 1))
    return vals[k]


BENCH_RE = r"app_verbose\.c: BENCH (\S+) (.*)$"


def wait_bench_lines(ast: AsteriskInstance, tag: str, count: int, since: int,
                     timeout: float) -> list[str]:
    """Wait for ``count`` 'BENCH <tag> ...' lines after ``since``; return their rest."""
    rx = re.compile(rf"app_verbose\.c: BENCH {re.escape(tag)} (.*)$", re.MULTILINE)
    deadline = time.monotonic() + timeout
    while True:
        found = rx.findall(ast.log_text(since))
        if len(found) >= count:
            return found
        if not ast.running:
            raise RuntimeError(f"{ast.name} exited while waiting for BENCH {tag}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{ast.name}: {len(found)}/{count} 'BENCH {tag}' lines after {timeout}s; "
                               f"log tail:\n{ast.log_text(since)[-2000:]}")
        time.sleep(0.02)


def loop_extension(name: str, iterations: int, body: Sequence[str], *, barrier: bool = False,
                   pre: Sequence[str] = (), report: str = "") -> str:
    """An extension that runs ``body`` ``iterations`` times in a While loop and logs
    'BENCH <name> <t0> <t1>' with dialplan-side timestamps (microseconds)."""
    lines = [f"exten => {name},1,Answer(,i)"]   # i: no 500 ms wait for media
    lines += [f" same => n,{p}" for p in pre]
    if barrier:   # wait for the global GO=1 (all channels of a concurrency step start together)
        lines += [" same => n,While($[\"${GLOBAL(GO)}\" != \"1\"])",
                  " same => n,Wait(0.005)",
                  " same => n,EndWhile()"]
    lines += [" same => n,Set(I=0)",
              f" same => n,Set(T0={NOW})",
              f" same => n,While($[${{I}} < {iterations}])"]
    lines += [f" same => n,{b}" for b in body]
    lines += [" same => n,Set(I=$[${I} + 1])",
              " same => n,EndWhile()",
              f" same => n,Set(T1={NOW})",
              f" same => n,Verbose(0,BENCH {name} ${{T0}} ${{T1}} {report})",
              " same => n,Hangup()"]
    return "\n".join(lines) + "\n"


def originate_local(ast: AsteriskInstance, exten: str, context: str = "bench") -> None:
    ast.cli(f"channel originate Local/{exten}@{context} application Wait 3600")


def run_loop(ast: AsteriskInstance, name: str, timeout: float = 300, context: str = "bench") -> float:
    """Run one loop extension on one Local channel; returns the elapsed seconds it measured."""
    return run_loop_report(ast, name, timeout, context)[0]


def run_loop_report(ast: AsteriskInstance, name: str, timeout: float = 300,
                    context: str = "bench") -> tuple[float, str]:
    """Like run_loop, also returning the extension's ``report`` text (substituted)."""
    since = ast.log_offset()
    originate_local(ast, name, context)
    rest = wait_bench_lines(ast, name, 1, since, timeout)[0]
    fields = rest.split(None, 2)
    wait_no_channels(ast)
    return float(fields[1]) - float(fields[0]), (fields[2] if len(fields) > 2 else "")


def marginal_cost(ast: AsteriskInstance, key: str, n: int, k_hi: int, tries: int,
                  check: Optional[Callable[[str, str], None]] = None) -> dict[str, Any]:
    """One marginal-cost measurement (dispatch, switch): the loops `<key>_1` and `<key>_<k_hi>`
    (n iterations, 1 and k_hi calls each), `tries` times each, the best of each; per call =
    (hi - lo) / n / (k_hi - 1). check(seen_lo, seen_hi) raises when a loop did not do its work."""
    los, his = [], []
    for _ in range(tries):
        t_lo, seen_lo = run_loop_report(ast, f"{key}_1")
        t_hi, seen_hi = run_loop_report(ast, f"{key}_{k_hi}")
        if check:
            check(seen_lo.strip(), seen_hi.strip())
        los.append(t_lo)
        his.append(t_hi)
    t_lo, t_hi = min(los), min(his)
    return {"t_lo": t_lo, "t_hi": t_hi, "n": n, "tries": tries, "t_lo_all": los, "t_hi_all": his,
            "iter_lo_us": t_lo / n * 1e6, "iter_hi_us": t_hi / n * 1e6,
            "marginal_us": (t_hi - t_lo) / n / (k_hi - 1) * 1e6}


def wait_no_channels(ast: AsteriskInstance, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = ast.cli("core show channels count")
        m = re.search(r"(\d+) active channels?", out)
        if m and int(m.group(1)) == 0:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{ast.name}: channels still up after {timeout}s")


def machine_info() -> dict[str, Any]:
    import platform
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024} MB"
    except OSError:
        pass
    ast_version = ""
    try:
        out = subprocess.run([str(asterisk_prefix() / "sbin" / "asterisk"), "-V"], capture_output=True,
                             text=True, timeout=10, check=False)
        ast_version = out.stdout.strip()
    except Exception:  # noqa: BLE001
        pass
    sipp = ""
    try:
        out = subprocess.run(["sipp", "-v"], capture_output=True, text=True, timeout=10, check=False)
        m = re.search(r"SIPp v?(\S+)", out.stdout + out.stderr)
        sipp = m.group(1).rstrip(",") if m else ""
    except Exception:  # noqa: BLE001
        pass
    try:
        import panoramisk
        pano = getattr(panoramisk, "__version__", "") or _dist_version("panoramisk")
    except Exception:  # noqa: BLE001
        pano = ""
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory": mem, "kernel": platform.release(),
        "os": _os_release(), "asterisk": ast_version, "python": platform.python_version(),
        "cffi": _dist_version("cffi"), "panoramisk": pano, "aiohttp": _dist_version("aiohttp"), "sipp": sipp,
        "module": str(MODULE_SO), "module_mtime": time.strftime(
            "%Y-%m-%d %H:%M:%S", time.localtime(MODULE_SO.stat().st_mtime)) if MODULE_SO.exists() else "",
        "git_head": _git_head(), "loadavg_start": list(load), "cpu_index_us": cpu_index_us(),
    }


def cpu_index_us() -> float:
    """A machine speed index: best of 7 x 2000 runs of sum(range(1000)) in this Python, µs per run
    (about 8-10 µs on a current desktop core; larger = slower or busier machine)."""
    import timeit
    return round(min(timeit.repeat("sum(range(1000))", number=2000, repeat=7)) / 2000 * 1e6, 2)


def _dist_version(name: str) -> str:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001
        return ""


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return ""


def _git_head() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=False)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except Exception:  # noqa: BLE001
        return ""


def section_env() -> dict[str, Any]:
    """The machine's state when a comparison starts or ends: 1/5/15-minute load average and the
    CPU index, so a section measured on a busy machine can be spotted in the report."""
    return {"loadavg": loadavg(), "others_runnable": others_runnable(),
            "cpu_index_us": cpu_index_us(), "time": time.strftime("%H:%M:%S")}


def others_runnable(samples: int = 20, interval: float = 0.025) -> float:
    """How many threads of other processes want a CPU now: the mean over half a second of the
    kernel's count of runnable threads (/proc/loadavg, 4th field), less this process's one.
    Unlike the load average, it does not remember the load the previous section made."""
    counts = []
    for _ in range(samples):
        with open("/proc/loadavg") as fh:
            counts.append(int(fh.read().split()[3].split("/")[0]))
        time.sleep(interval)
    return round(max(0.0, sum(counts) / len(counts) - 1), 2)


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/<pid>/stat; 0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> list[float]:
    try:
        return list(os.getloadavg())
    except OSError:
        return []


class BenchProcess:
    """A helper script of bench/ in its own process, logging to a temp file; started once it
    prints READY (``what`` names it in the error), stopped (terminated, then killed) by close()."""

    def __init__(self, what: str, prefix: str, argv: Sequence[str], timeout: float) -> None:
        import tempfile
        self.logfile = Path(tempfile.mkstemp(prefix=prefix, suffix=".log", dir="/tmp")[1])
        with open(self.logfile, "w") as out:
            self.proc = subprocess.Popen([sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + timeout
        while "READY" not in self.logfile.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = self.logfile.read_text()
                self.close()
                raise RuntimeError(f"{what} did not start: {text[-2000:]}")
            time.sleep(0.05)

    def log_text(self) -> str:
        try:
            return self.logfile.read_text()
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logfile.unlink(missing_ok=True)

    def __enter__(self) -> "BenchProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class FastAgiServer(BenchProcess):
    """bench/fastagi_server.py (panoramisk) in its own process on ``host:port``."""

    def __init__(self, host: str, port: Optional[int] = None) -> None:
        from pbx_python.testing import free_port
        import socket
        self.host = require_loopback(host)
        self.port = port or free_port(host, socket.SOCK_STREAM)
        super().__init__("FastAGI server", "pxbagi",
                         [str(BENCH_DIR / "fastagi_server.py"), self.host, str(self.port)], 15)

    def url(self, route: str) -> str:
        return f"agi://{self.host}:{self.port}/{route}"


#: ARI credentials of the benchmark instances (bound to their own loopback address only).
ARI_USER, ARI_PASSWORD = "bench", "bench-ari"
ARI_PORT = 8088


def ari_configs(host: str, port: int = ARI_PORT) -> dict[str, str]:
    """http.conf + ari.conf: Asterisk's HTTP server on ``host:port`` only, one ARI user."""
    require_loopback(host)
    return {"http.conf": (f"[general]\nenabled = yes\nbindaddr = {host}\nbindport = {port}\n"
                          "sessionlimit = 256\n"),
            "ari.conf": (f"[general]\nenabled = yes\npretty = no\n\n[{ARI_USER}]\ntype = user\n"
                         f"read_only = no\npassword = {ARI_PASSWORD}\npassword_format = plain\n")}


class AriApp(BenchProcess):
    """bench/ari_app.py (aiohttp) in its own process, connected to the ARI of ``nodes``
    ({name: loopback host}, HTTP on ARI_PORT)."""

    def __init__(self, nodes: Mapping[str, str], port: int = ARI_PORT) -> None:
        args = [f"{n}=http://{require_loopback(h)}:{port}" for n, h in nodes.items()]
        super().__init__("ARI application", "pxbari",
                         [str(BENCH_DIR / "ari_app.py"), f"{ARI_USER}:{ARI_PASSWORD}", *args], 25)


NO_AMI = {"manager.conf": "[general]\nenabled = no\n"}


# ---------------------------------------------------------------------------- clusters

#: SIPp callers bind here; the cluster's 'phones' endpoint identifies this address only.
CALLER_HOST = "127.0.0.199"


def rtp_conf(host: str) -> str:
    """A 400-port RTP range per benchmark host (40000 + (octet-150)*400)."""
    octet = int(host.rsplit(".", 1)[1])
    start = 40000 + (octet - HOST_RANGE.start) * 400
    return f"[general]\nrtpstart = {start}\nrtpend = {start + 399}\nicesupport = no\n"


def cluster_configs(spec: Any, node: str, extensions: str,
                    pymodules: Sequence[str] = ("px_bench",)) -> dict[str, str]:
    """spec.configs() adapted for the benchmarks: ``pymodules`` from bench/ loaded too, AMI off,
    callers from CALLER_HOST, a larger RTP range."""
    from pbx_python.testing.cluster import PHONE_NET
    files = dict(spec.configs(node, extensions))
    files["pjsip.conf"] = files["pjsip.conf"].replace(f"match = {PHONE_NET}", f"match = {CALLER_HOST}")
    files["pbx_python.conf"] = files["pbx_python.conf"].replace(
        "modules = dialplan_funcs.callservice",
        f"path = {BENCH_DIR}\nmodules = dialplan_funcs.callservice, {', '.join(pymodules)}")
    files.update(NO_AMI)
    files["rtp.conf"] = rtp_conf(spec.sops[node])
    return files


class Cluster:
    """One benchmark Instance per SOP (hosts picked from HOST_RANGE); close() stops them all.

    ``extensions(node)`` gives each node's extensions.conf; ``spec_kwargs`` go to ClusterSpec.
    ``skip`` names SOPs that are in the configuration but not started (e.g. a SIPp node).
    """

    def __init__(self, names: Sequence[str], extensions: Callable[[str], str], *,
                 hosts: Optional[Mapping[str, str]] = None, skip: Iterable[str] = (),
                 qualify: bool = True, **spec_kwargs: Any) -> None:
        from pbx_python.testing.cluster import ClusterSpec, wait_qualified
        self.hosts = dict(hosts or {})
        for n in names:
            if n not in self.hosts:
                self.hosts[n] = pick_host()
        self.spec = ClusterSpec(sops=self.hosts, python=sys.executable, **spec_kwargs)
        self.nodes: dict[str, Instance] = {}
        try:
            for n in names:
                if n in skip:
                    continue
                self.nodes[n] = Instance(n, "", host=self.hosts[n],
                                         configs=cluster_configs(self.spec, n, extensions(n)))
            if qualify:
                wait_qualified({n: i.ast for n, i in self.nodes.items()}, timeout=20)
        except BaseException:
            self.close()
            raise

    def __getitem__(self, name: str) -> AsteriskInstance:
        return self.nodes[name].ast

    def close(self) -> None:
        for inst in self.nodes.values():
            try:
                inst.close()
            except Exception as exc:  # noqa: BLE001
                log(f"closing {inst.ast.name}: {exc}")
        for n, h in self.hosts.items():
            release_host(h)

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
