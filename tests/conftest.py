"""Shared fixtures: real Asterisk instances with pbx_python.so loaded."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Callable, Iterable, Optional

import pytest

from pbx_python.testing import AsteriskInstance
from pbx_python.testing.module import module_so

ROOT = Path(__file__).resolve().parents[1]
#: The module under test: $PBX_PYTHON_MODULE (`make test-asan`: build-asan/pbx_python.so), else the
#: build made for this Python (build/, or build-py<version>/ for a `make test PYTHON=...` venv).
MODULE_SO = module_so(ROOT)
PYMODS = ROOT / "tests" / "pymods"


def pbx_python_conf(modules: Iterable[str], paths: Iterable[str] = (str(PYMODS),),
                    extra_general: str = "", extra_sections: str = "") -> str:
    """A pbx_python.conf embedding the Python that runs the tests (the project's venv)."""
    return textwrap.dedent(f"""\
        [general]
        python = {sys.executable}
        path = {", ".join(paths)}
        modules = {", ".join(modules)}
        """) + extra_general + "\n" + extra_sections


@pytest.fixture
def python_asterisk(asterisk_factory: Callable[..., AsteriskInstance]) -> Callable[..., AsteriskInstance]:
    """Start an Asterisk with pbx_python.so and the given Python modules and dialplan."""
    if not MODULE_SO.is_file():
        pytest.fail(f"{MODULE_SO} is missing: run 'make module' first")

    def start(extensions: str = "[default]\n", modules: Iterable[str] = ("px_demo",),
              host: Optional[str] = None, paths: Iterable[str] = (str(PYMODS),),
              extra_general: str = "", extra_sections: str = "",
              pbx_conf: Optional[str] = None, configs: Optional[dict[str, str]] = None,
              **kwargs) -> AsteriskInstance:
        files = {"extensions.conf": textwrap.dedent(extensions),
                 "pbx_python.conf": pbx_conf if pbx_conf is not None else
                 pbx_python_conf(modules, paths, extra_general, extra_sections)}
        files.update(configs or {})
        return asterisk_factory(host=host, modules=[MODULE_SO], configs=files, start=True, **kwargs)
    return start
