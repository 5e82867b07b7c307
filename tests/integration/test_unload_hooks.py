"""on_unload: each discarded generation of a Python module can stop what it started."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DIALPLAN = """\
[default]
exten => workers,1,Verbose(0,RESULT WORKERS=${PYWORKERS()})
"""


def _write(path: Path, generation: str, fail_import: bool = False) -> None:
    """A module that starts a worker thread in on_load and stops it in on_unload."""
    path.write_text(textwrap.dedent(f"""\
        import logging
        import threading
        import pbx_python as px

        log = logging.getLogger("pxhooks")
        stop = threading.Event()

        @px.on_load
        def start(config):
            threading.Thread(target=stop.wait, name="pxhooks-worker", daemon=True).start()
            log.warning("LOADED {generation}")

        @px.on_unload
        def finish(reason):
            stop.set()
            log.warning("UNLOADED {generation} reason=%s", reason)

        @px.function("PYWORKERS", synopsis="live worker threads")
        def workers(chan):
            return sum(t.name == "pxhooks-worker" and t.is_alive() for t in threading.enumerate())
        """))


def _write_broken(path: Path) -> None:
    path.write_text("raise RuntimeError('broken on purpose')\n")


def _start(python_asterisk, tmp_path: Path):
    _write(tmp_path / "px_hooks.py", "one")
    (tmp_path / "px_other.py").write_text("import pbx_python as px\n")
    return python_asterisk(DIALPLAN, modules=("px_hooks", "px_other"), paths=(str(tmp_path),))


def _unloads(ast, since: int) -> list[str]:
    return re.findall(r"UNLOADED (\w+ reason=\w+)", ast.log_text(since))


def test_a_reload_unloads_the_old_generation_after_the_new_one_is_in_service(python_asterisk,
                                                                            tmp_path):
    ast = _start(python_asterisk, tmp_path)
    _write(tmp_path / "px_hooks.py", "two")
    since = ast.log_offset()
    assert "reloaded successfully" in ast.cli("module reload pbx_python.so")
    ast.wait_for_log(r"UNLOADED one reason=reload", since=since)
    text = ast.log_text(since)
    assert text.index("LOADED two") < text.index("UNLOADED one reason=reload")
    assert _unloads(ast, since) == ["one reason=reload"]


def test_threads_stopped_by_on_unload_do_not_pile_up_across_reloads(python_asterisk, tmp_path):
    ast = _start(python_asterisk, tmp_path)
    for generation in ("two", "three", "four"):
        _write(tmp_path / "px_hooks.py", generation)
        assert "reloaded successfully" in ast.cli("module reload pbx_python.so")
    assert ast.eval_function("PYWORKERS()") == "1"


def test_a_rolled_back_reload_unloads_the_new_generation_and_keeps_the_old(python_asterisk,
                                                                          tmp_path):
    ast = _start(python_asterisk, tmp_path)
    _write(tmp_path / "px_hooks.py", "two")
    _write_broken(tmp_path / "px_other.py")
    since = ast.log_offset()
    ast.cli("module reload pbx_python.so")
    ast.wait_for_log(r"pbx_python reload failed \(px_other\)", since=since)
    assert _unloads(ast, since) == ["two reason=rollback"]
    assert ast.eval_function("PYWORKERS()") == "1"     # generation one's worker, still serving


def test_a_graceful_shutdown_calls_on_unload(python_asterisk, tmp_path):
    ast = _start(python_asterisk, tmp_path)
    since = ast.log_offset()
    ast.stop(graceful=True)
    assert _unloads(ast, since) == ["one reason=shutdown"]
