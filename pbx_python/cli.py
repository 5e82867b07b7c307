"""The ``pbx-python`` command.

    pbx-python build   [--asterisk-prefix P] [--build-dir D]   # D/pbx_python.so, built with cffi
    pbx-python install [--asterisk-prefix P] [--build-dir D]   # build, then into astmoddir
    pbx-python doctor  [--asterisk-prefix P] [--asterisk-conf F] [--config F]
    pbx-python new <module> [--dir D]                          # a module skeleton and its test

The Python running the command is the one the module embeds: run the venv's ``pbx-python`` to
embed that venv. The work is done by :mod:`pbx_python.building` (shared with setup.py),
:mod:`pbx_python.doctor` and :mod:`pbx_python.newmodule`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from . import __version__, building, doctor, newmodule


def _prefix_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--asterisk-prefix", metavar="P",
                        help="the Asterisk's installation prefix (holding sbin/asterisk and "
                        "include/asterisk.h); default: $ASTERISK_PREFIX, the checkout's cached "
                        "build, or the asterisk on PATH")


def _build_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--build-dir", metavar="D", type=Path, default=Path("build"),
                        help="where pbx_python.so is built (default: ./build)")


def cmd_build(args: argparse.Namespace) -> int:
    prefix = building.asterisk_prefix(args.asterisk_prefix)
    print(f"built {building.build(prefix, args.build_dir)} against {prefix}")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    prefix = building.asterisk_prefix(args.asterisk_prefix)
    module, sample = building.install(prefix, args.build_dir)
    print(f"installed {module} and {sample}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    prefix, how = building.find_prefix(args.asterisk_prefix)
    checks = doctor.run_checks(prefix, how, args.asterisk_conf, args.config)
    return doctor.report(checks)


def cmd_new(args: argparse.Namespace) -> int:
    for path in newmodule.create(args.module, args.dir):
        print(f"wrote {path}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="pbx-python",
        description="Build, install and check pbx_python (Python dialplan code inside Asterisk).")
    top.add_argument("--version", action="version", version=f"pbx_python {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("build", help="build pbx_python.so against an Asterisk's headers",
                       description="Build pbx_python.so with cffi, linking the running Python.")
    _prefix_option(p)
    _build_dir_option(p)
    p.set_defaults(run=cmd_build)

    p = sub.add_parser("install", help="build, then install pbx_python.so and the sample config",
                       description="Build pbx_python.so, write it into the Asterisk's astmoddir "
                       "through a temporary file and a rename (a loaded module is never "
                       "overwritten in place), and pbx_python.conf.sample into its config dir.")
    _prefix_option(p)
    _build_dir_option(p)
    p.set_defaults(run=cmd_install)

    p = sub.add_parser("doctor", help="check the installation; one ok/FAIL line per check",
                       description="Check Asterisk, its headers, the shared libpython, the "
                       "installed module, pbx_python.conf, the embedded Python, each configured "
                       "module (imported in a dry run) and, when Asterisk runs, the loaded "
                       "module. Exits 1 if any check failed.")
    _prefix_option(p)
    p.add_argument("--asterisk-conf", metavar="F", type=Path,
                   help="that Asterisk's asterisk.conf (its directories; passed as -C to "
                   "'asterisk -rx'); default: <astetcdir>/asterisk.conf")
    p.add_argument("--config", metavar="F", type=Path,
                   help="the pbx_python.conf to check (default: <astetcdir>/pbx_python.conf)")
    p.set_defaults(run=cmd_doctor)

    p = sub.add_parser("new", help="write a dialplan module skeleton and its test",
                       description="Write <module>.py (one application, one function) and "
                       "tests/test_<module>.py (pytest, against a real Asterisk, through "
                       "pbx_python's pytest plugin). Never overwrites a file.")
    p.add_argument("module", help="the Python module name (e.g. greetings)")
    p.add_argument("--dir", type=Path, default=Path("."),
                   help="where to write (default: the current directory)")
    p.set_defaults(run=cmd_new)
    return top


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (building.BuildError, newmodule.SkeletonError) as exc:
        print(f"pbx-python {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
