"""pbx_python's setup.py: the cffi build of the Asterisk module, and the package's build_py.

The package's metadata (name, version, dependencies, the pbx-python command, the pytest plugin)
is in pyproject.toml. This file adds what pyproject.toml cannot say:

    python setup.py build_module [--asterisk-prefix P] [--build-dir D]    # = pbx-python build
    python setup.py install_module [--asterisk-prefix P] [--build-dir D]  # = pbx-python install

Both run pbx_python/building.py (the one implementation, shared with the pbx-python command).
build_py copies the C sources (csrc/), contrib/pbx_python.conf.sample and the cluster directory's
SQL schema (the test helpers' private PostgreSQL applies it) into the built package
(pbx_python/_src/), so that `pbx-python build` works from a package installed with `pip install .`.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from setuptools import Command, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: Copied into the package as pbx_python/_src/ (source path relative to ROOT).
SHIPPED_SOURCES = ("csrc/build_module.py", "csrc/pbx_python.c", "csrc/gil_handoff.c",
                   "contrib/pbx_python.conf.sample",
                   "contrib/directory/schema.sql")   # for pbx_python.testing.postgres


def building():
    """pbx_python/building.py, loaded without importing the package (nothing is installed yet)."""
    spec = importlib.util.spec_from_file_location("_pbx_python_building",
                                                  ROOT / "pbx_python" / "building.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _ModuleCommand(Command):
    user_options = [("asterisk-prefix=", None, "Asterisk installation prefix"),
                    ("build-dir=", None, "output directory of pbx_python.so (default: build)")]

    def initialize_options(self) -> None:
        self.asterisk_prefix = None
        self.build_dir = None

    def finalize_options(self) -> None:
        self.build_dir = Path(self.build_dir or ROOT / "build")

    def run(self) -> None:
        b = building()
        try:
            self.run_with(b, b.asterisk_prefix(self.asterisk_prefix))
        except b.BuildError as exc:
            raise SystemExit(f"error: {exc}") from None

    def run_with(self, b, prefix: Path) -> None:
        raise NotImplementedError


class BuildModule(_ModuleCommand):
    description = "build pbx_python.so (the Asterisk module) with cffi (= pbx-python build)"

    def run_with(self, b, prefix: Path) -> None:
        print(f"built {b.build(prefix, self.build_dir)} against {prefix}")


class InstallModule(_ModuleCommand):
    description = ("build pbx_python.so, install it into astmoddir (atomically) and "
                   "pbx_python.conf.sample (= pbx-python install)")

    def run_with(self, b, prefix: Path) -> None:
        module, sample = b.install(prefix, self.build_dir)
        print(f"installed {module} and {sample}")


class BuildPy(build_py):
    """The package plus pbx_python/_src/: what `pbx-python build` compiles when installed."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "pbx_python" / "_src"
        target.mkdir(parents=True, exist_ok=True)
        for rel in SHIPPED_SOURCES:
            shutil.copyfile(ROOT / rel, target / Path(rel).name)


setup(cmdclass={"build_module": BuildModule, "install_module": InstallModule, "build_py": BuildPy})
