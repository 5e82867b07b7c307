"""Building pbx_python.so and installing it into an Asterisk: the one implementation behind
``pbx-python build`` / ``pbx-python install`` and ``setup.py build_module`` / ``install_module``.

Standard library only (setup.py loads this file before anything is installed). The C sources
(csrc/) and the sample configuration come from the checkout, or, in a package installed with
``pip install .``, from ``pbx_python/_src/``, where setup.py's build_py copies them.

The Asterisk prefix comes from the caller (``--asterisk-prefix``), else ``$ASTERISK_PREFIX``, else
the cached build of ``contrib/build-asterisk.sh`` (in a checkout), else the ``asterisk`` on PATH.
The Python that builds is the one the module embeds (a venv's python embeds that venv).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Mapping, Optional

PACKAGE = Path(__file__).resolve().parent
#: The checkout holding this package, when it is one (an editable install, or run from the tree).
CHECKOUT = PACKAGE.parent
#: Where setup.py's build_py puts the C sources and the sample config in an installed package.
SHIPPED = PACKAGE / "_src"
SAMPLE = "pbx_python.conf.sample"


class BuildError(Exception):
    """The module cannot be built or installed; the message says why and what to do."""


def source_dir() -> Path:
    """The directory holding build_module.py, pbx_python.c and gil_handoff.c."""
    for candidate in (SHIPPED, CHECKOUT / "csrc"):
        if (candidate / "build_module.py").is_file() and (candidate / "pbx_python.c").is_file():
            return candidate
    raise BuildError(f"the C sources of pbx_python.so are neither in {SHIPPED} nor in "
                     f"{CHECKOUT / 'csrc'}: reinstall the package (pip install .) from the checkout")


def sample_config() -> Path:
    for candidate in (SHIPPED / SAMPLE, CHECKOUT / "contrib" / SAMPLE):
        if candidate.is_file():
            return candidate
    raise BuildError(f"{SAMPLE} is neither in {SHIPPED} nor in {CHECKOUT / 'contrib'}")


def _cached_build_prefix() -> Optional[Path]:
    script = CHECKOUT / "contrib" / "build-asterisk.sh"
    if not script.is_file():
        return None
    out = subprocess.run(["bash", str(script), "--print"], capture_output=True, text=True,
                         check=False)
    lines = out.stdout.strip().splitlines()
    return Path(lines[-1]) if out.returncode == 0 and lines else None


def find_prefix(explicit: Optional[str] = None,
                environ: Mapping[str, str] = os.environ) -> tuple[Optional[Path], str]:
    """(prefix, how it was chosen), or (None, why none was found). An explicit choice (argument
    or ASTERISK_PREFIX) is returned as given, even when it holds no Asterisk."""
    if explicit:
        return Path(explicit), "--asterisk-prefix"
    if environ.get("ASTERISK_PREFIX"):
        return Path(environ["ASTERISK_PREFIX"]), "ASTERISK_PREFIX"
    cached = _cached_build_prefix()
    if cached is not None:
        return cached, "contrib/build-asterisk.sh --print"
    exe = shutil.which("asterisk", path=environ.get("PATH"))
    if exe:
        return Path(exe).resolve().parent.parent, f"asterisk on PATH ({exe})"
    return None, "no Asterisk found: give --asterisk-prefix or set ASTERISK_PREFIX"


def asterisk_prefix(explicit: Optional[str] = None) -> Path:
    """The prefix of an Asterisk with its headers, or BuildError saying what is missing."""
    prefix, how = find_prefix(explicit)
    if prefix is None:
        raise BuildError(how)
    if not (prefix / "include" / "asterisk.h").is_file():
        raise BuildError(f"no Asterisk headers under {prefix}/include ({how}): build Asterisk with "
                         "contrib/build-asterisk.sh, or point --asterisk-prefix (ASTERISK_PREFIX) "
                         "at an Asterisk installed with 'make install-headers' (Debian: "
                         "asterisk-dev)")
    return prefix


def read_asterisk_conf(path: Path) -> dict[str, str]:
    """The [directories] settings of an asterisk.conf (astetcdir, astmoddir, astrundir, ...)."""
    found: dict[str, str] = {}
    section = ""
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("["):
            name, _, options = line[1:].partition("]")
            # a template ([directories](!), as in Asterisk's sample) is not applied by Asterisk
            section = "" if "!" in options else name.strip()
        elif section == "directories" and "=" in line:
            key, value = (s.strip() for s in line.split("=", 1))
            found[key] = value.lstrip(">").strip()
    return found


def asterisk_dirs(prefix: Path) -> dict[str, Path]:
    """astetcdir, astmoddir, astrundir of the Asterisk at prefix: its compiled-in defaults (Asterisk's
    configure puts /etc and /var under a /usr prefix), overridden by its asterisk.conf."""
    system = prefix.resolve() == Path("/usr")
    etc = Path("/etc/asterisk") if system else prefix / "etc" / "asterisk"
    var = Path("/var") if system else prefix / "var"
    dirs = {"astetcdir": etc, "astmoddir": prefix / "lib" / "asterisk" / "modules",
            "astrundir": var / "run" / "asterisk"}
    conf = etc / "asterisk.conf"
    if conf.is_file():
        for key, value in read_asterisk_conf(conf).items():
            if key in dirs and value:
                dirs[key] = Path(value)
    return dirs


def load_builder() -> ModuleType:
    """csrc/build_module.py (which needs cffi), imported from the source directory."""
    path = source_dir() / "build_module.py"
    spec = importlib.util.spec_from_file_location("_pbx_python_build_module", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(prefix: Path, build_dir: Path) -> Path:
    """Compile build_dir/pbx_python.so against the Asterisk headers under prefix."""
    try:
        builder = load_builder()
    except ImportError as exc:
        raise BuildError(f"cannot load the module builder ({exc}): pip install cffi") from exc
    try:
        return builder.build(prefix / "include", Path(build_dir))
    except SystemExit as exc:   # build_module's own clear refusals (no shared libpython, ...)
        raise BuildError(str(exc.code)) from None


def install_atomically(src: Path, dst: Path, mode: int) -> None:
    """Copy to a temporary file beside dst, then rename: a loaded .so is never written in place."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def install(prefix: Path, build_dir: Path) -> tuple[Path, Path]:
    """Build, then install pbx_python.so into astmoddir and the sample into astetcdir.

    Returns (installed module, installed sample)."""
    built = build(prefix, build_dir)
    dirs = asterisk_dirs(prefix)
    module = dirs["astmoddir"] / "pbx_python.so"
    sample = dirs["astetcdir"] / SAMPLE
    install_atomically(built, module, 0o755)
    install_atomically(sample_config(), sample, 0o644)
    return module, sample
