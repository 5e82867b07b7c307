"""pbx_python: Python dialplan applications and functions embedded in Asterisk.

    pip install .                                  # the Python package (pbx_python, dialplan_funcs)
    python setup.py build_module [--asterisk-prefix P]    # build/pbx_python.so with cffi
    python setup.py install_module [--asterisk-prefix P]  # into astmoddir, atomically, + conf sample

The Asterisk prefix comes from --asterisk-prefix, else $ASTERISK_PREFIX, else the cached build of
contrib/build-asterisk.sh. The Python running setup.py is the one embedded (use a venv's python
to embed that venv).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Command, find_packages, setup

ROOT = Path(__file__).resolve().parent


def asterisk_prefix(explicit: str | None) -> Path:
    prefix = explicit or os.environ.get("ASTERISK_PREFIX")
    if not prefix:
        out = subprocess.run(["bash", str(ROOT / "contrib" / "build-asterisk.sh"), "--print"],
                             check=True, capture_output=True, text=True).stdout.strip()
        prefix = out.splitlines()[-1]
    path = Path(prefix)
    if not (path / "include" / "asterisk.h").is_file():
        raise SystemExit(f"no Asterisk headers under {path}/include: build Asterisk with "
                         "contrib/build-asterisk.sh, or set ASTERISK_PREFIX to an Asterisk "
                         "installed with 'make install-headers'")
    return path


def asterisk_dirs(prefix: Path) -> tuple[Path, Path]:
    """(astmoddir, astetcdir) of the Asterisk at prefix, honouring its asterisk.conf."""
    moddir, etcdir = prefix / "lib" / "asterisk" / "modules", prefix / "etc" / "asterisk"
    conf = etcdir / "asterisk.conf"
    if conf.is_file():
        section = ""
        for raw in conf.read_text(errors="replace").splitlines():
            line = raw.split(";", 1)[0].strip()
            if line.startswith("["):
                section = line.strip("[]").split("(")[0]
            elif section == "directories" and "=>" in line:
                key, value = (s.strip() for s in line.split("=>", 1))
                if key == "astmoddir":
                    moddir = Path(value)
    return moddir, etcdir


class BuildModule(Command):
    description = "build pbx_python.so (the Asterisk module) with cffi"
    user_options = [("asterisk-prefix=", None, "Asterisk installation prefix"),
                    ("build-dir=", None, "output directory (default: build)")]

    def initialize_options(self) -> None:
        self.asterisk_prefix = None
        self.build_dir = None

    def finalize_options(self) -> None:
        self.build_dir = Path(self.build_dir or ROOT / "build")

    def run(self) -> None:
        sys.path.insert(0, str(ROOT / "csrc"))
        from build_module import build  # noqa: E402 - csrc/ is not a package
        prefix = asterisk_prefix(self.asterisk_prefix)
        target = build(prefix / "include", Path(self.build_dir))
        print(f"built {target} against {prefix}")


class InstallModule(Command):
    description = "install pbx_python.so into astmoddir (atomically) and pbx_python.conf.sample"
    user_options = [("asterisk-prefix=", None, "Asterisk installation prefix"),
                    ("build-dir=", None, "where build_module put pbx_python.so")]

    def initialize_options(self) -> None:
        self.asterisk_prefix = None
        self.build_dir = None

    def finalize_options(self) -> None:
        self.build_dir = Path(self.build_dir or ROOT / "build")

    def run(self) -> None:
        build = self.distribution.get_command_obj("build_module")   # build what is installed
        build.asterisk_prefix = self.asterisk_prefix or build.asterisk_prefix
        build.build_dir = self.build_dir
        self.run_command("build_module")
        prefix = asterisk_prefix(self.asterisk_prefix)
        moddir, etcdir = asterisk_dirs(prefix)
        built = Path(self.build_dir) / "pbx_python.so"
        install_atomically(built, moddir / "pbx_python.so", 0o755)
        install_atomically(ROOT / "contrib" / "pbx_python.conf.sample",
                           etcdir / "pbx_python.conf.sample", 0o644)
        print(f"installed {moddir / 'pbx_python.so'} and {etcdir / 'pbx_python.conf.sample'}")


def install_atomically(src: Path, dst: Path, mode: int) -> None:
    """Copy to a temporary file beside dst, then rename: a loaded .so is never written in place."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.chmod(tmp, mode)
    os.replace(tmp, dst)


setup(
    name="pbx_python",
    version="0.1.0",
    description="Python dialplan applications and functions embedded in Asterisk",
    packages=find_packages(include=["pbx_python", "pbx_python.*", "dialplan_funcs",
                                    "dialplan_funcs.*"]),
    package_data={"pbx_python.testing": ["scenarios/*.xml", "asan.supp"]},
    python_requires=">=3.11",
    install_requires=["cffi>=1.17"],
    extras_require={"test": ["pytest>=7", "hypothesis>=6"]},
    entry_points={"pytest11": ["pbx_python = pbx_python.testing.plugin"]},
    cmdclass={"build_module": BuildModule, "install_module": InstallModule},
)
