"""The directory file format: entries, quoting, comments, and every bad line by its number."""
from __future__ import annotations

import logging
import os
import threading

import pytest

from dialplan_funcs.directory.settings import DirectorySettings
from dialplan_funcs.directory.sources.file import FileSource, parse
from dialplan_funcs.directory.table import TableError

SAMPLE = """\
; extension-or-pattern   primary   secondary   attributes
4711                     sopA      sopB        vm_context=default name="Marie Dupont"
_5XXX                    sopB      sopC        vm_context=default   # a comment
_6XXX                    sopC      -           vm_context=default

"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(TableError) as err:
        parse(text)
    return err.value.errors


def test_sample_file_gives_its_three_entries():
    t = parse(SAMPLE)
    assert [(e.pattern, e.primary, e.secondary) for e in t.entries] == \
        [("4711", "sopA", "sopB"), ("_5XXX", "sopB", "sopC"), ("_6XXX", "sopC", "")]


def test_quoted_value_keeps_its_blanks():
    assert parse(SAMPLE).lookup("4711").attrs["name"] == "Marie Dupont"


def test_comment_signs_inside_quotes_are_text():
    t = parse('4711 sopA - name="A; B # C"\n')
    assert t.lookup("4711").attrs["name"] == "A; B # C"


def test_escaped_quote_and_backslash_in_a_quoted_value():
    t = parse('4711 sopA - name="say \\"hi\\" \\\\ bye"\n')
    assert t.lookup("4711").attrs["name"] == 'say "hi" \\ bye'


def test_dash_means_no_secondary():
    assert parse(SAMPLE).lookup("6000").secondary == ""


def test_empty_value_is_allowed():
    assert parse("4711 sopA - name=\n").lookup("4711").attrs["name"] == ""


def test_empty_file_gives_an_empty_directory():
    assert len(parse("; nothing yet\n\n")) == 0


def test_bad_line_is_reported_with_its_number():
    assert errors_of("4711 sopA sopB\n\n_5[12 sopA -\n") == \
        ["line 3: pattern '_5[12': '[' without ']'"]


def test_every_bad_line_is_reported():
    errors = errors_of("4711 sopA\n4712 sopA - novalue\n4713 sopA - a=1 a=2\n4714 s@p -\n")
    assert [e.split(":")[0] for e in errors] == ["line 1", "line 2", "line 3", "line 4"]


def test_missing_secondary_column_is_explained():
    assert "secondary '-' for none" in errors_of("4711 sopA vm_context=default\n")[0]


def test_unclosed_quote_is_a_bad_line():
    assert errors_of('4711 sopA - name="Marie\n') == ["line 1: a quoted value is not closed"]


def test_duplicate_extension_names_the_first_line():
    assert errors_of("4711 sopA -\n4711 sopB -\n") == \
        ["line 2: 4711 is already listed on line 1"]


def test_two_spellings_of_one_pattern_name_the_line():
    assert errors_of("_5XXX sopA -\n_5[0-9]XX sopB -\n")[0].startswith("line 2:")


def source_for(path) -> FileSource:
    return FileSource(DirectorySettings(file=str(path)))


def test_source_publishes_the_table_and_reports_its_status(tmp_path):
    path = tmp_path / "dir.conf"
    path.write_text(SAMPLE)
    published = []
    src = source_for(path)
    src.start(published.append)
    st = src.status()
    assert (len(published[0]), st.source, st.location, st.entries, st.last_error) == \
        (3, "file", str(path), 3, "")


def test_source_with_a_bad_file_publishes_nothing_and_logs_the_line(tmp_path, caplog):
    path = tmp_path / "dir.conf"
    path.write_text("4711 sopA -\n4712\n")
    published = []
    src = source_for(path)
    with caplog.at_level(logging.ERROR, logger="directory"):
        src.start(published.append)
    assert published == []
    assert "line 2:" in src.status().last_error
    assert "line 2:" in caplog.text and "unchanged" in caplog.text


def test_missing_file_is_an_error_not_a_crash(tmp_path):
    src = source_for(tmp_path / "absent.conf")
    src.start(lambda table: None)
    assert "cannot read the file" in src.status().last_error


def test_file_that_is_not_utf8_is_an_error(tmp_path):
    path = tmp_path / "dir.conf"
    path.write_bytes(b"4711 sopA - name=\xff\n")
    src = source_for(path)
    src.start(lambda table: None)
    assert "not UTF-8" in src.status().last_error


def test_crlf_line_endings_read_like_lf():
    t = parse('4711 sopA sopB name="Marie"\r\n_5XXX sopB -\r\n')
    assert (t.lookup("4711").attrs["name"], t.lookup("5000").primary) == ("Marie", "sopB")


def test_form_feed_or_nel_in_a_value_does_not_shift_the_line_numbers():
    errors = errors_of('4711 sopA - name="a\x0cb\x85c"\n4712\n')
    assert [e.split(":")[0] for e in errors] == ["line 2"]


def test_file_saved_with_a_utf8_bom_loads(tmp_path):
    path = tmp_path / "dir.conf"
    path.write_bytes("\ufeff4711 sopA sopB name=Zoé\n".encode("utf-8"))
    published = []
    src = source_for(path)
    src.start(published.append)
    assert (src.status().last_error, published[0].lookup("4711").attrs["name"]) == ("", "Zoé")


def test_a_file_of_many_bad_lines_logs_the_first_twenty_and_a_count(tmp_path, caplog):
    path = tmp_path / "dir.conf"
    path.write_text("".join(f"{1000 + i} bad@sop -\n" for i in range(5000)))
    src = source_for(path)
    with caplog.at_level(logging.ERROR, logger="directory"):
        src.start(lambda table: None)
    assert "line 20:" in caplog.text and "line 21:" not in caplog.text
    assert "... and 4980 more problems" in caplog.text and len(caplog.text) < 5000
    assert src.status().last_error.endswith("... and 4980 more problems")


def test_a_fifo_at_the_path_is_an_error_not_a_hang(tmp_path):
    path = tmp_path / "dir.conf"
    os.mkfifo(path)                 # nobody writes: open() would wait for a writer for ever
    published = []
    src = source_for(path)
    worker = threading.Thread(target=src.start, args=(published.append,), daemon=True)
    worker.start()
    worker.join(5)
    assert not worker.is_alive() and published == []
    assert "not a regular file" in src.status().last_error


def test_a_symlink_to_the_file_is_followed(tmp_path):
    real = tmp_path / "real.conf"
    real.write_text(SAMPLE)
    (tmp_path / "dir.conf").symlink_to(real)
    published = []
    source_for(tmp_path / "dir.conf").start(published.append)
    assert len(published[0]) == 3
