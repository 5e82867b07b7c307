"""pbx_python.testing.module: each Python's venv finds the module built for it."""
from __future__ import annotations

import sys
from pathlib import Path

from pbx_python.testing.module import build_dir, find_module_so, module_so, python_key


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


def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "csrc").mkdir(parents=True)
    (root / "csrc" / "pbx_python.c").write_text("")
    return root


def so_at(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF")
    return path


def test_the_fixture_s_module_is_the_checkout_s_build_first(tmp_path: Path):
    root = checkout(tmp_path)
    built = so_at(root / "build" / "pbx_python.so")
    so_at(tmp_path / "ast" / "lib" / "asterisk" / "modules" / "pbx_python.so")
    assert find_module_so(tmp_path / "ast", root, {}, root / ".venv") == (built, "the checkout's build")


def test_without_a_checkout_build_the_module_installed_in_asterisk_is_used(tmp_path: Path):
    installed = so_at(tmp_path / "ast" / "lib" / "asterisk" / "modules" / "pbx_python.so")
    assert find_module_so(tmp_path / "ast", checkout(tmp_path), {}, tmp_path / "venv") == \
        (installed, "installed in the Asterisk")


def test_no_module_anywhere_says_where_it_looked_and_what_to_run(tmp_path: Path):
    so, why = find_module_so(tmp_path / "ast", tmp_path / "not-a-checkout", {}, tmp_path / "venv")
    assert so is None
    assert why == (f"no pbx_python.so in {tmp_path}/ast/lib/asterisk/modules/pbx_python.so: run "
                   "'pbx-python install' (or 'make module' in the checkout), or set PBX_PYTHON_MODULE")


def test_a_missing_pbx_python_module_is_not_replaced_by_another(tmp_path: Path):
    so_at(tmp_path / "ast" / "lib" / "asterisk" / "modules" / "pbx_python.so")
    env = {"PBX_PYTHON_MODULE": str(tmp_path / "gone.so")}
    assert find_module_so(tmp_path / "ast", tmp_path, env, tmp_path / "venv") == \
        (None, f"PBX_PYTHON_MODULE={tmp_path}/gone.so does not exist")
