"""The pure parts of the PostgreSQL directory source: database rows to entries, the disk
snapshot, the reconnection backoff, and what its status shows of the DSN."""
from __future__ import annotations

import json
import logging
import os
import time

import pytest

from dialplan_funcs.directory.settings import parse_settings
from dialplan_funcs.directory.sources.postgres import (
    MAX_BACKOFF, PostgresSource, RowsError, SnapshotError, backoff_delays, failure_kind,
    read_snapshot, row_to_entry, rows_to_table, write_snapshot)
from dialplan_funcs.directory.table import Entry, Table


def test_a_row_becomes_an_entry_with_its_attributes():
    entry = row_to_entry(("4711", "sopA", "sopB", {"vm_context": "default", "name": "Marie"}))
    assert entry == Entry("4711", "sopA", "sopB", {"vm_context": "default", "name": "Marie"})


def test_a_null_or_empty_secondary_means_none():
    assert row_to_entry(("_6XXX", "sopC", None, {})).secondary == ""
    assert row_to_entry(("_6XXX", "sopC", "", None)).secondary == ""


def test_attributes_given_as_json_text_are_parsed():
    assert dict(row_to_entry(("4711", "sopA", "", '{"name": "Marie"}')).attrs) == {"name": "Marie"}


@pytest.mark.parametrize("attrs, message", [
    ({"pin": 1234}, "attribute values must be strings: pin=1234"),
    (["a"], "attributes must be a JSON object"),
    ("{not json", "attributes are not JSON"),
])
def test_attributes_that_are_not_an_object_of_strings_are_refused(attrs, message):
    with pytest.raises(ValueError, match=message):
        row_to_entry(("4711", "sopA", "", attrs))


def test_every_bad_row_is_named_and_the_whole_load_refused():
    rows = [("4711", "sopA", "sopB", {}), ("4712", "sopA", "", {"pin": 1}),
            ("4713", "sopA", "", "[]")]
    with pytest.raises(RowsError) as info:
        rows_to_table(rows)
    assert [e.split(":")[0] for e in info.value.errors] == ["row 4712", "row 4713"]


def test_what_the_table_refuses_is_reported_as_row_errors():
    with pytest.raises(RowsError) as info:
        rows_to_table([("4711", "sop A!", "", {})])
    assert info.value.errors and all(e.startswith("row 4711") for e in info.value.errors)


def test_good_rows_make_a_table_with_exact_and_pattern_lookups():
    table = rows_to_table([("4711", "sopA", "sopB", {}), ("_47XX", "sopC", None, {})])
    assert table.lookup("4711").primary == "sopA"
    assert table.lookup("4799").primary == "sopC"


def test_a_snapshot_round_trips_entries_and_time(tmp_path):
    table = Table([Entry("4711", "sopA", "sopB", {"name": "Marie Dupont", "vm_context": "default"}),
                   Entry("_5XXX", "sopB", "", {})])
    path = tmp_path / "sub" / "directory.json"
    write_snapshot(path, table, "host=db dbname=pbx", 1700000000.5)
    again, written = read_snapshot(path)
    assert again.entries == table.entries
    assert written == 1700000000.5
    assert os.listdir(path.parent) == ["directory.json"]     # no temp file left behind


def test_a_snapshot_is_replaced_whole(tmp_path):
    path = tmp_path / "directory.json"
    write_snapshot(path, Table([Entry("1", "sopA", "", {})]), "x", 1.0)
    write_snapshot(path, Table([Entry("2", "sopB", "", {})]), "x", 2.0)
    table, written = read_snapshot(path)
    assert [e.pattern for e in table.entries] == ["2"] and written == 2.0


@pytest.mark.parametrize("content, message", [
    (None, "no snapshot"),
    ('{"format": 1, "written_at": 1.0, "entri', "unreadable"),
    ('{"format": 99, "written_at": 1.0, "entries": []}', "not a pbx_python directory snapshot"),
    ('{"format": 1, "written_at": 1.0, "entries": [{"pattern": "1", "primary": "bad sop"}]}',
     "bad entries"),
    ('{"format": 1, "written_at": 1.0, "entries": ' + "[" * 100000 + "]" * 100000 + "}",
     "unreadable"),
    ('{"format": 1, "written_at": Infinity, "entries": []}', "no valid written_at"),
    ('{"format": 1, "written_at": NaN, "entries": []}', "no valid written_at"),
    ('{"format": 1, "written_at": 1e300, "entries": []}', "no valid written_at"),
    ('{"format": 1, "written_at": -5, "entries": []}', "no valid written_at"),
    ('{"format": 1, "written_at": true, "entries": []}', "no valid written_at"),
])
def test_an_unusable_snapshot_says_why(tmp_path, content, message):
    path = tmp_path / "directory.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SnapshotError, match=message):
        read_snapshot(path)


def test_a_snapshot_is_plain_json_an_admin_can_read(tmp_path):
    path = tmp_path / "d.json"
    write_snapshot(path, Table([Entry("4711", "sopA", "", {"name": "Zoé"})]), "host=db", 3.0)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["entries"] == [{"pattern": "4711", "primary": "sopA", "secondary": "",
                               "attrs": {"name": "Zoé"}}]
    assert doc["location"] == "host=db"


def test_reconnection_backoff_doubles_up_to_a_cap_of_a_few_seconds():
    delays = backoff_delays(first=0.25, cap=2.0)
    assert [next(delays) for _ in range(7)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    assert 1.0 <= MAX_BACKOFF <= 5.0


def test_connection_failures_are_named_database_unreachable():
    import psycopg
    assert failure_kind(psycopg.OperationalError("connection refused")) == "database unreachable"
    assert failure_kind(ConnectionResetError()) == "database unreachable"
    assert failure_kind(psycopg.errors.UndefinedTable("no table")).startswith("cannot load")


def test_the_status_shows_the_dsn_without_its_password(tmp_path):
    settings = parse_settings([("source", "postgresql"),
                               ("dsn", "host=127.0.0.1 dbname=pbx user=pbx password=s3cret")],
                              str(tmp_path), str(tmp_path))
    st = PostgresSource(settings).status()
    assert st.source == "postgresql"
    assert "s3cret" not in st.location and "host=127.0.0.1 dbname=pbx user=pbx" in st.location
    assert st.entries == 0 and st.loaded_at is None


@pytest.mark.parametrize("content", [
    '{"format": 1, "written_at": 1e300, "entries": [{"pattern": "1", "primary": "sopA"}]}',
    '{"format": 1, "written_at": 1.0, "entries": ' + "[" * 100000 + "]" * 100000 + "}",
])
def test_a_corrupted_snapshot_at_start_is_logged_and_not_served(tmp_path, caplog, content):
    path = tmp_path / "directory.json"
    path.write_text(content)
    source = PostgresSource(parse_settings([("source", "postgresql"), ("dsn", "host=x"),
                                            ("snapshot", str(path))], "/etc", "/var"))
    published = []
    source._publish = published.append
    with caplog.at_level(logging.WARNING):
        source._load_snapshot()     # what start() does before its thread: must not raise
    assert published == [] and "not used" in caplog.text
    assert source.status().detail == "no snapshot yet, waiting for the database"


def test_a_malformed_dsn_never_puts_its_password_in_the_log_or_the_status(tmp_path, caplog):
    # a '%' left unencoded in a URI password: libpq's error quotes the whole password
    dsn = "postgresql://pbx:s3cr%et@127.0.0.1:1/pbx"
    source = PostgresSource(parse_settings([("source", "postgresql"), ("dsn", dsn),
                                            ("snapshot", str(tmp_path / "d.json"))], "/e", "/v"))
    with caplog.at_level(logging.DEBUG):
        source.start(lambda table: None)
        source.stop()
    st = source.status()
    assert "percent-encoded" in st.last_error and "percent-encoded" in caplog.text
    assert "s3cr" not in st.last_error + st.detail + st.location + caplog.text


class _Rows:
    """A connection whose every query returns ``rows`` (what _reload reads)."""

    def __init__(self, rows):
        self.rows = rows

    def execute(self, query):
        return self

    def fetchall(self):
        return self.rows


def _source(tmp_path, snapshot=None) -> PostgresSource:
    source = PostgresSource(parse_settings(
        [("source", "postgresql"), ("dsn", "host=x"),
         ("snapshot", str(snapshot or tmp_path / "d.json"))], "/e", "/v"))
    source._publish = lambda table: None
    return source


def test_a_reload_refused_for_many_bad_rows_logs_the_first_twenty_and_a_count(tmp_path, caplog):
    source = _source(tmp_path)
    with caplog.at_level(logging.ERROR):
        source._reload(_Rows([(str(1000 + i), "bad sop", "", {}) for i in range(5000)]), "notify")
    assert "row 1019:" in caplog.text and "row 1020:" not in caplog.text
    assert "... and 4980 more problems" in caplog.text and len(caplog.text) < 5000
    assert source.status().last_error.endswith("... and 4980 more problems")


def test_the_same_refused_rows_are_logged_once_not_on_every_refresh(tmp_path, caplog):
    source = _source(tmp_path)
    bad = _Rows([("4711", "sopA", "", {"pin": 1234})])
    with caplog.at_level(logging.ERROR):
        for why in ("notify", "refresh", "refresh"):
            source._reload(bad, why)
    assert caplog.text.count("refused") == 1
    source._reload(_Rows([("4711", "sopA", "", {})]), "notify")   # fixed: a new error logs again
    with caplog.at_level(logging.ERROR):
        source._reload(bad, "notify")
    assert caplog.text.count("refused") == 2


def test_an_unwritable_snapshot_is_logged_once_not_on_every_reload(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    source = _source(tmp_path, snapshot=blocker / "d.json")      # its directory is a file
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            source._reload(_Rows([("4711", "sopA", "", {})]), "refresh")
    assert caplog.text.count("cannot write the snapshot") == 1


class _StormConn(_Rows):
    """A connection in a storm of changes: a notification is always waiting; each load of the
    table takes ``cost`` seconds. Records how long the source gathers before each reload."""

    closed = False

    def __init__(self, source, rows, cost):
        super().__init__(rows)
        self.source, self.cost, self.gathers = source, cost, []

    def execute(self, query):
        if query.startswith("SELECT"):
            time.sleep(self.cost)
        return self

    def notifies(self, timeout=None, stop_after=None):
        if stop_after == 1:
            yield "NOTIFY"                      # the next change is already there
            return
        self.gathers.append(timeout)
        if len(self.gathers) == 2:
            self.source._stop.set()

    def close(self):
        self.closed = True


def test_in_a_storm_of_changes_the_next_reload_waits_as_long_as_the_last_took(tmp_path,
                                                                             monkeypatch):
    import psycopg
    source = _source(tmp_path)
    conn = _StormConn(source, [("4711", "sopA", "", {})], cost=0.4)
    monkeypatch.setattr(psycopg, "connect", lambda *args, **kwargs: conn)
    source._session()
    assert len(conn.gathers) == 2 and all(g >= 0.4 for g in conn.gathers)   # not 0.1


def test_a_quick_reload_still_gathers_a_burst_for_a_tenth_of_a_second(tmp_path, monkeypatch):
    import psycopg
    source = _source(tmp_path)
    conn = _StormConn(source, [("4711", "sopA", "", {})], cost=0.0)
    monkeypatch.setattr(psycopg, "connect", lambda *args, **kwargs: conn)
    source._session()
    assert len(conn.gathers) == 2 and all(0.1 <= g < 0.4 for g in conn.gathers)


def test_a_snapshot_with_many_bad_entries_names_twenty_and_counts_the_rest(tmp_path):
    path = tmp_path / "directory.json"
    path.write_text(json.dumps({"format": 1, "written_at": 1.0, "entries": [
        {"pattern": str(1000 + i), "primary": "bad sop"} for i in range(5000)]}))
    with pytest.raises(SnapshotError) as err:
        read_snapshot(path)
    assert str(err.value).endswith("... and 4980 more problems") and len(str(err.value)) < 5000
