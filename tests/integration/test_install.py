"""setup.py install_module: atomic install into astmoddir, sample config into the config dir."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_install_module_replaces_the_so_by_rename_and_installs_the_sample(asterisk_prefix, tmp_path):
    prefix = tmp_path / "prefix"
    (prefix / "include").mkdir(parents=True)
    for item in (asterisk_prefix / "include").iterdir():
        (prefix / "include" / item.name).symlink_to(item)
    moddir = prefix / "lib" / "asterisk" / "modules"
    moddir.mkdir(parents=True)
    old = moddir / "pbx_python.so"
    old.write_bytes(b"the module a running Asterisk has mapped")
    old_inode = old.stat().st_ino
    held = open(old, "rb")  # a reader of the old file, like a process that mapped it

    # Its own build dir: the checkout's build/ belongs to the default Python, which need not be
    # the one running the tests (make test PYTHON=...), and the ASan run's headers differ.
    out = subprocess.run([sys.executable, "setup.py", "-q", "install_module",
                          f"--asterisk-prefix={prefix}", f"--build-dir={tmp_path / 'build'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    new = moddir / "pbx_python.so"
    assert new.stat().st_ino != old_inode                      # a new file, renamed into place
    assert held.read() == b"the module a running Asterisk has mapped"  # old one untouched
    held.close()
    assert new.read_bytes()[:4] == b"\x7fELF"
    assert os.access(new, os.X_OK)
    sample = prefix / "etc" / "asterisk" / "pbx_python.conf.sample"
    assert "[general]" in sample.read_text() and "on_exception" in sample.read_text()
    assert not [p for p in moddir.iterdir() if p.name.startswith(".")]  # no temp file left


def test_build_refuses_a_python_without_shared_libpython(monkeypatch):
    sys.path.insert(0, str(ROOT / "csrc"))
    import build_module  # noqa: PLC0415

    monkeypatch.setattr(build_module.sysconfig, "get_config_var",
                        lambda name: 0 if name == "Py_ENABLE_SHARED" else None)
    with pytest.raises(SystemExit, match="without --enable-shared"):
        build_module.check_python()
