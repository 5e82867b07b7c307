"""Run the pbx_python benchmarks, store raw results as JSON, regenerate docs/BENCHMARKS.md.

    make bench                                  # full mode
    make bench BENCH_ARGS="--quick"             # a few minutes
    make bench BENCH_ARGS="--quick --only dispatch memory"
    .venv/bin/python bench/run.py --report-only [--report-mode full]   # rebuild the markdown

Benchmarks report; nothing here asserts a timing. Each comparison is a module of bench/ with
run(mode) -> dict; a failing comparison is recorded as an error and the others still run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import Mode, log  # noqa: E402

ORDER = ["dispatch", "first_call", "memory", "concurrency", "callservice_e2e", "failover", "switch"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="short runs (a few minutes)")
    g.add_argument("--full", action="store_true", help="full runs (default; under 15 minutes on 2 cores)")
    p.add_argument("--only", nargs="+", choices=ORDER, metavar="NAME",
                   help=f"run only these comparisons ({', '.join(ORDER)})")
    p.add_argument("--reps", type=int, default=5, help="repetitions per measurement (>= 5; default 5)")
    p.add_argument("--report-only", action="store_true", help="only regenerate docs/BENCHMARKS.md")
    p.add_argument("--report-mode", choices=["quick", "full"], default=None,
                   help="build the report from runs of this mode only (default: the newest result "
                        "of each comparison, whatever its mode)")
    p.add_argument("--no-report", action="store_true", help="do not touch docs/BENCHMARKS.md")
    args = p.parse_args(argv)

    import report
    if args.report_only:
        path = report.write_report(args.report_mode)
        print(f"wrote {path}")
        return 0
    if not common.MODULE_SO.is_file():
        print(f"{common.MODULE_SO} is missing: run 'make module' first", file=sys.stderr)
        return 2
    mode = Mode("quick" if args.quick else "full", max(5, args.reps))
    names = args.only or ORDER
    started = time.time()
    result: dict = {"mode": mode.name, "reps": mode.reps, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                    "machine": common.machine_info(), "benchmarks": {}}
    log(f"pbx_python benchmarks, {mode.name} mode, {mode.reps} repetitions: {', '.join(names)}")
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_path = common.RESULTS_DIR / f"{stamp}-{mode.name}.json"
    for name in names:
        t0 = time.time()
        log(f"== {name}")
        env_start = common.section_env()
        try:
            module = __import__(name)
            data = module.run(mode)
            data["status"] = "ok"
        except Exception as exc:  # noqa: BLE001 - recorded, the other comparisons still run
            traceback.print_exc()
            data = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc()}
        data["env"] = {"start": env_start, "end": common.section_env()}
        data["seconds"] = round(time.time() - t0, 1)
        data["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        result["benchmarks"][name] = data
        result["seconds"] = round(time.time() - started, 1)
        out_path.write_text(json.dumps(result, indent=1, default=str))   # partial results survive
        log(f"== {name}: {data['status']} in {data['seconds']} s")
    result["loadavg_end"] = common.loadavg()
    result["seconds"] = round(time.time() - started, 1)
    out_path.write_text(json.dumps(result, indent=1, default=str))
    log(f"results: {out_path} ({result['seconds']} s)")
    if not args.no_report:
        path = report.write_report(args.report_mode)
        log(f"report: {path}")
    return 0 if all(b.get("status") == "ok" for b in result["benchmarks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
