"""Which pbx_python.so the helpers load: the build made for the Python that runs them.

The module links one libpython, so each interpreter needs its own build. The Makefile pairs each
virtual environment with a build directory: ``.venv`` (the default ``python3``) with ``build/``,
and, for ``make ... PYTHON=<interpreter>``, ``.venv-<key>`` with ``build-py<key>/``, where the
key is the interpreter's version and ABI flags (``3.12.1``, ``3.14.0t``). ``PBX_PYTHON_MODULE``
names the module explicitly (``make test-asan``, and the Makefile for a non-default Python).
"""
from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

#: The checkout (pbx_python/testing/module.py is two levels below it).
ROOT = Path(__file__).resolve().parents[2]
VENV_PREFIX = ".venv-"


def python_key() -> str:
    """The running interpreter's key, as the Makefile spells it: version and ABI flags."""
    return platform.python_version() + getattr(sys, "abiflags", "")


def build_dir(root: Path = ROOT, prefix: str | os.PathLike[str] = sys.prefix) -> Path:
    """The build directory paired with the virtual environment at ``prefix``."""
    venv = Path(prefix)
    if venv.parent.resolve() == root.resolve() and venv.name.startswith(VENV_PREFIX):
        return root / f"build-py{venv.name[len(VENV_PREFIX):]}"
    return root / "build"


def module_so(root: Path = ROOT, environ: Mapping[str, str] = os.environ,
              prefix: str | os.PathLike[str] = sys.prefix) -> Path:
    """The pbx_python.so to load: ``$PBX_PYTHON_MODULE``, else the venv's paired build."""
    explicit = environ.get("PBX_PYTHON_MODULE")
    if explicit:
        return Path(explicit).resolve()
    return (build_dir(root, prefix) / "pbx_python.so").resolve()


def find_module_so(asterisk_prefix: Path, root: Path = ROOT,
                   environ: Mapping[str, str] = os.environ,
                   prefix: str | os.PathLike[str] = sys.prefix) -> tuple[Path | None, str]:
    """(the pbx_python.so a test loads into the Asterisk at ``asterisk_prefix``, how it was found),
    or (None, why none): ``$PBX_PYTHON_MODULE``, else the checkout's build paired with the venv
    (pbx_python installed from a checkout with ``pip install -e``), else the module installed in
    that Asterisk (``pbx-python install``)."""
    if environ.get("PBX_PYTHON_MODULE"):
        so = module_so(root, environ, prefix)
        return (so, "PBX_PYTHON_MODULE") if so.is_file() else \
            (None, f"PBX_PYTHON_MODULE={so} does not exist")
    candidates = []
    if (root / "csrc" / "pbx_python.c").is_file():
        candidates.append((module_so(root, environ, prefix), "the checkout's build"))
    installed = asterisk_prefix / "lib" / "asterisk" / "modules" / "pbx_python.so"
    candidates.append((installed, "installed in the Asterisk"))
    for so, how in candidates:
        if so.is_file():
            return so, how
    return None, (f"no pbx_python.so in {' nor '.join(str(so) for so, _ in candidates)}: run "
                  "'pbx-python install' (or 'make module' in the checkout), or set PBX_PYTHON_MODULE")
