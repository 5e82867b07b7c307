"""Measure the C stack CPython recursion uses, per unit of its recursion counter.

    python bench/stack_depth/run.py [--units N] [shape ...]

Run it with each Python to measure (e.g. ~/.pyenv/versions/3.13.0/bin/python3): it compiles
stackprobe.c for that Python (gcc and the Python headers), then runs each shape of shapes.py in a
subprocess of its own, in a thread with a 256 MB stack, with the thread's recursion counter lowered
to N units (default 400; 0 keeps CPython's defaults). It prints the deepest C stack used, bytes
per unit, and how the shape ended. docs/DESIGN.md ("Stack depth") has the figures that set
PYAST_UNIT_BYTES in csrc/pbx_python.c.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import sysconfig
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(out: Path) -> None:
    target = out / f"stackprobe{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}",
                    str(HERE / "stackprobe.c"), "-o", str(target)], check=True)


def measure_one(name: str, units: int) -> None:
    """In the child: run one shape and print `used exception`."""
    import shapes
    import stackprobe
    out: list = []
    threading.stack_size(256 * 1024 * 1024)
    t = threading.Thread(target=lambda: out.append(stackprobe.measure(shapes.SHAPES[name], units)))
    t.start()
    t.join()
    used, exc = out[0]
    print(used, exc)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=400)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("shapes", nargs="*")
    args = p.parse_args()
    if args.child:
        measure_one(args.child, args.units)
        return 0
    sys.path.insert(0, str(HERE))
    import shapes
    names = args.shapes or list(shapes.SHAPES)
    print(f"Python {sys.version.split()[0]}, counter lowered to {args.units or 'default'} units")
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp))
        env_path = f"{tmp}:{HERE}"
        for name in names:
            res = subprocess.run([sys.executable, __file__, "--units", str(args.units), "--child", name],
                                 capture_output=True, text=True, timeout=300,
                                 env={"PYTHONPATH": env_path})
            if res.returncode != 0:
                print(f"{name:24} crashed (rc {res.returncode}) {res.stderr.strip()[-200:]}")
                continue
            used, exc = res.stdout.split(" ", 1)
            per_unit = f"{int(used) / args.units:8.0f}" if args.units else "       -"
            print(f"{name:24} {int(used):10d} B {per_unit} B/unit  {exc.strip()[:70]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
