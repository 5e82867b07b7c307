"""pbx_python.testing.module: each Python's venv finds the module built for it."""
from __future__ import annotations

import sys
from pathlib import Path

from pbx_python.testing.module import build_dir, module_so, python_key


def test_the_default_venv_uses_build(tmp_path: Path):
    assert module_so(tmp_path, {}, tmp_path / ".venv") == tmp_path / "build" / "pbx_python.so"


def test_a_versioned_venv_uses_its_own_build_dir(tmp_path: Path):
    assert build_dir(tmp_path, tmp_path / ".venv-3.12.1") == tmp_path / "build-py3.12.1"
    assert module_so(tmp_path, {}, tmp_path / ".venv-3.14.0t") == \
        tmp_path / "build-py3.14.0t" / "pbx_python.so"


def test_a_versioned_venv_outside_the_checkout_is_not_mapped(tmp_path: Path):
    assert build_dir(tmp_path, tmp_path / "elsewhere" / ".venv-3.12.1") == tmp_path / "build"


def test_pbx_python_module_wins(tmp_path: Path):
    so = tmp_path / "build-asan" / "pbx_python.so"
    env = {"PBX_PYTHON_MODULE": str(so)}
    assert module_so(tmp_path, env, tmp_path / ".venv-3.12.1") == so


def test_the_key_is_the_version_and_abi_flags():
    assert python_key() == "%d.%d.%d" % sys.version_info[:3] + sys.abiflags
