"""Installing: the package with pip (the pbx-python command), the module with `pbx-python
install` or `setup.py install_module` (one implementation, pbx_python/building.py): an atomic
install into astmoddir, the sample config into the config dir."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def headers_only_prefix(asterisk_prefix: Path, tmp_path: Path) -> Path:
    """A prefix with the real Asterisk's headers and an empty modules dir to install into."""
    prefix = tmp_path / "prefix"
    (prefix / "include").mkdir(parents=True)
    for item in (asterisk_prefix / "include").iterdir():
        (prefix / "include" / item.name).symlink_to(item)
    (prefix / "lib" / "asterisk" / "modules").mkdir(parents=True)
    return prefix


def test_install_module_replaces_the_so_by_rename_and_installs_the_sample(asterisk_prefix, tmp_path):
    prefix = headers_only_prefix(asterisk_prefix, tmp_path)
    moddir = prefix / "lib" / "asterisk" / "modules"
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


def checkout_only(directory: str, names: list[str]) -> list[str]:
    """copytree's ignore: what is not the project's source (venvs, builds, caches)."""
    top = Path(directory) == ROOT
    return [n for n in names if n in ("__pycache__", ".pytest_cache", ".hypothesis")
            or n.endswith(".egg-info")
            or (top and (n in (".git", "build") or n.startswith((".venv", "build-"))))]


def fresh_venv_with_the_package(tmp_path: Path) -> Path:
    """`pip install .` of a copy of the checkout into a new venv, offline: the build backend
    (setuptools, cffi) comes from the venv running the tests, through a .pth file, and
    --no-build-isolation --no-index keep pip off the network. Returns the venv's bin dir."""
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=checkout_only)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "outer-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    out = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index",
                          "--no-build-isolation", "--disable-pip-version-check", str(source)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return venv / "bin"


def test_pip_install_gives_the_package_and_the_pbx_python_command(tmp_path):
    bin_dir = fresh_venv_with_the_package(tmp_path)
    out = subprocess.run([str(bin_dir / "pbx-python"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for command in ("build", "install", "doctor", "new"):
        assert f"    {command} " in out.stdout
    where = subprocess.run([str(bin_dir / "python"), "-c",
                            "import pbx_python, dialplan_funcs, pbx_python.testing.plugin; "
                            "print(pbx_python.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    package = Path(where.stdout.strip()).parent
    assert package.is_relative_to(tmp_path / "venv")                # installed, not the checkout
    assert (package / "py.typed").is_file()
    assert (package / "testing" / "scenarios" / "uac.xml").is_file()
    schema = subprocess.run([str(bin_dir / "python"), "-c",
                             "from pbx_python.testing.postgres import SCHEMA; print(SCHEMA)"],
                            capture_output=True, text=True, cwd=tmp_path).stdout.strip()
    assert schema == str(package / "_src" / "schema.sql") and Path(schema).is_file()
    plugin = subprocess.run([str(bin_dir / "python"), "-c",
                             "from importlib.metadata import entry_points; "
                             "print([e.value for e in entry_points(group='pytest11')])"],
                            capture_output=True, text=True)
    assert "pbx_python.testing.plugin" in plugin.stdout


def test_pbx_python_install_from_the_pip_installed_package(asterisk_prefix, tmp_path):
    """The installed package carries the C sources: it builds and installs without the checkout."""
    bin_dir = fresh_venv_with_the_package(tmp_path)
    prefix = headers_only_prefix(asterisk_prefix, tmp_path)
    out = subprocess.run([str(bin_dir / "pbx-python"), "install", "--asterisk-prefix", str(prefix),
                          "--build-dir", str(tmp_path / "build")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    module = prefix / "lib" / "asterisk" / "modules" / "pbx_python.so"
    sample = prefix / "etc" / "asterisk" / "pbx_python.conf.sample"
    assert out.stdout.splitlines()[-1] == f"installed {module} and {sample}"
    assert module.read_bytes()[:4] == b"\x7fELF" and os.access(module, os.X_OK)
    # the module embeds the venv that built it: its python is the default 'python ='
    assert str(bin_dir / "python").encode() in module.read_bytes()


def test_pbx_python_build_without_headers_says_what_to_do(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pbx_python.cli", "build", "--asterisk-prefix",
                          str(tmp_path), "--build-dir", str(tmp_path / "build")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.startswith(f"pbx-python build: error: no Asterisk headers under {tmp_path}/include")
    assert not (tmp_path / "build").exists()
