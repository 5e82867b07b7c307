"""Python logging levels and streams mapped to Asterisk's logger."""
import logging

from pbx_python import asterisk as ast
from pbx_python.logbridge import AsteriskStream, asterisk_level


def test_python_levels_map_to_asterisk_levels():
    assert asterisk_level(logging.CRITICAL) == ast.LOG_ERROR
    assert asterisk_level(logging.ERROR) == ast.LOG_ERROR
    assert asterisk_level(logging.WARNING) == ast.LOG_WARNING
    assert asterisk_level(logging.INFO) == ast.LOG_NOTICE
    assert asterisk_level(logging.DEBUG) == ast.LOG_DEBUG


def test_stream_logs_complete_lines_only_and_flushes_the_rest(monkeypatch):
    seen = []
    monkeypatch.setattr(ast, "log", lambda level, msg, file="", *a: seen.append((level, msg)))
    stream = AsteriskStream(ast.LOG_NOTICE, "python-stdout")
    stream.write("one\ntw")
    stream.write("o\n")
    stream.write("partial")
    assert seen == [(ast.LOG_NOTICE, "one"), (ast.LOG_NOTICE, "two")]
    stream.flush()
    assert seen[-1] == (ast.LOG_NOTICE, "partial")


def test_strings_with_nul_are_refused_not_truncated():
    import pytest
    with pytest.raises(ValueError, match="NUL"):
        ast.encode("a\0b")
    assert ast.decode(ast.encode("caf\u00e9 \udcff")) == "caf\u00e9 \udcff"
