"""The cluster directory from PostgreSQL (``[directory] source = postgresql``): a private
PostgreSQL server (the ``postgres`` fixture) and real Asterisk nodes reading it with
GETEXTENSIONINFO; changes made with psql, the database stopped and started mid-run."""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

from dialplan_funcs.directory.settings import parse_settings
from dialplan_funcs.directory.sources.postgres import MAX_BACKOFF, PostgresSource
from pbx_python.testing import AsteriskInstance, free_loopback_host
from pbx_python.testing.net import release_host
from pbx_python.testing.postgres import PrivatePostgres

pytestmark = pytest.mark.integration

MARIE = ("INSERT INTO cluster_directory (extension, primary_sop, secondary_sop, attributes) "
         """VALUES ('4711', 'sopA', 'sopB', '{"vm_context": "default", "name": "Marie Dupont"}'), """
         """('_5XXX', 'sopB', '', '{}')""")
UNREACHABLE = r"WARNING.*PostgreSQL directory .*: database unreachable"


def directory_section(pg: PrivatePostgres, snapshot: Path, refresh: float = 30) -> str:
    return (f"[directory]\nsource = postgresql\ndsn = {pg.dsn}\nrefresh = {refresh:g}\n"
            f"snapshot = {snapshot}\n")


@pytest.fixture
def directory_node(python_asterisk, postgres, tmp_path) -> Callable[..., AsteriskInstance]:
    """Start an Asterisk whose directory is the test's private PostgreSQL. Its snapshot is
    under tmp_path: the default (<astdatadir>/pbx_python) is in the Asterisk prefix the test
    instances share."""
    def start(name: str = "ast", snapshot: Optional[Path] = None,
              refresh: float = 30) -> AsteriskInstance:
        snapshot = snapshot or tmp_path / name / "directory.json"
        return python_asterisk(modules=("dialplan_funcs.directory",), name=name,
                               extra_sections=directory_section(postgres, snapshot, refresh))
    return start


def info(node: AsteriskInstance, args: str) -> Optional[str]:
    return node.eval_function(f"GETEXTENSIONINFO({args})")


def wait_value(nodes: list[AsteriskInstance], args: str, expected: str,
               timeout: float) -> float:
    """Seconds until every node reads ``expected`` from GETEXTENSIONINFO(args)."""
    start = time.monotonic()
    pending = list(nodes)
    while pending:
        pending = [n for n in pending if info(n, args) != expected]
        if pending and time.monotonic() - start > timeout:
            raise AssertionError(f"after {timeout}s GETEXTENSIONINFO({args}) is "
                                 + ", ".join(f"{n.name}: {info(n, args)!r}" for n in pending)
                                 + f", not {expected!r}")
        if pending:
            time.sleep(0.05)
    return time.monotonic() - start


# -------------------------------------------------------------------------- Asterisk nodes


def test_a_node_loads_the_directory_from_postgresql_at_start(postgres, directory_node):
    postgres.psql(MARIE)
    node = directory_node()
    assert info(node, "4711") == "sopA,sopB"
    assert info(node, "4711,name") == "Marie Dupont"
    assert info(node, "5123,primary") == "sopB"
    assert info(node, "4712,found") == "0"
    show = node.cli("callservice show directory")
    assert "postgresql" in show and postgres.host in show and "Entries:     2" in show


def test_an_update_made_with_psql_is_seen_by_three_nodes_within_two_seconds(postgres,
                                                                           directory_node):
    postgres.psql(MARIE)
    nodes = [directory_node(name) for name in ("sopA", "sopB", "sopC")]
    wait_value(nodes, "4711", "sopA,sopB", timeout=5)
    postgres.psql("UPDATE cluster_directory SET primary_sop = 'sopC', secondary_sop = 'sopA' "
                  "WHERE extension = '4711'")
    took = wait_value(nodes, "4711", "sopC,sopA", timeout=2)
    print(f"the move was seen by the three nodes after {took:.2f}s")


def test_inserts_and_deletes_are_followed_too(postgres, directory_node):
    node = directory_node()
    assert info(node, "4711,found") == "0"
    postgres.psql(MARIE)
    wait_value([node], "4711,found", "1", timeout=2)
    postgres.psql("DELETE FROM cluster_directory WHERE extension = '_5XXX'")
    wait_value([node], "5123,found", "0", timeout=2)
    postgres.psql("TRUNCATE cluster_directory")
    wait_value([node], "4711,found", "0", timeout=2)


def test_a_change_that_sends_no_notification_is_seen_at_the_periodic_refresh(postgres,
                                                                           directory_node):
    postgres.psql(MARIE)
    node = directory_node("every1s", refresh=1)
    slow = directory_node("every30s", refresh=30)
    postgres.psql("ALTER TABLE cluster_directory DISABLE TRIGGER cluster_directory_notify")
    postgres.psql("UPDATE cluster_directory SET primary_sop = 'sopC' WHERE extension = '4711'")
    wait_value([node], "4711", "sopC,sopB", timeout=2)
    assert info(slow, "4711") == "sopA,sopB"          # no NOTIFY, no refresh yet: not seen


def test_a_change_with_a_bad_row_is_refused_and_the_directory_kept(postgres, directory_node):
    postgres.psql(MARIE)
    node = directory_node()
    since = node.log_offset()
    postgres.psql("""UPDATE cluster_directory SET primary_sop = 'sopZ', attributes = '{"pin": 1234}' """
                  "WHERE extension = '4711'")
    node.wait_for_log(r"ERROR.*reload \(notify\) refused, the previous directory stays in "
                      r"service \(2 entries\): row 4711: attribute values must be strings: "
                      r"pin=1234", since=since, timeout=3)
    assert info(node, "4711") == "sopA,sopB"
    assert "reload refused: row 4711" in node.cli("callservice show directory")


def test_database_stopped_mid_run_lookups_keep_working_then_recover(postgres, directory_node):
    postgres.psql(MARIE)
    node = directory_node()
    assert info(node, "4711") == "sopA,sopB"
    since = node.log_offset()
    postgres.stop()
    node.wait_for_log(UNREACHABLE + r".*serving the directory loaded at", since=since, timeout=3)
    assert info(node, "4711") == "sopA,sopB"          # from memory, no wait on the network
    show = node.cli("callservice show directory")
    assert "database unreachable" in show and "Entries:     2" in show
    time.sleep(3 * MAX_BACKOFF)                      # several retries fail meanwhile
    assert len(node.log_text(since).split("database unreachable (")) == 2   # logged once
    postgres.start()
    node.wait_for_log(r"PostgreSQL directory .*: database reachable again", since=since,
                      timeout=MAX_BACKOFF + 3)
    postgres.psql("UPDATE cluster_directory SET primary_sop = 'sopC' WHERE extension = '4711'")
    wait_value([node], "4711", "sopC,sopB", timeout=2)
    assert "connected, listening" in node.cli("callservice show directory")


def test_a_node_started_while_the_database_is_down_serves_its_snapshot(postgres, directory_node,
                                                                      tmp_path):
    snapshot = tmp_path / "directory.json"
    postgres.psql(MARIE)
    first = directory_node("first", snapshot=snapshot)
    assert info(first, "4711") == "sopA,sopB"
    assert [e["pattern"] for e in json.loads(snapshot.read_text())["entries"]] == ["4711", "_5XXX"]
    first.stop()
    postgres.stop()
    node = directory_node("second", snapshot=snapshot)
    assert info(node, "4711") == "sopA,sopB"
    assert info(node, "4711,name") == "Marie Dupont"
    node.wait_for_log(UNREACHABLE + r".*serving snapshot of", timeout=3)
    assert "database unreachable, serving snapshot of" in node.cli("callservice show directory")
    postgres.start()
    postgres.psql("UPDATE cluster_directory SET secondary_sop = 'sopC' WHERE extension = '4711'")
    wait_value([node], "4711", "sopA,sopC", timeout=MAX_BACKOFF + 3)


def test_a_node_with_the_database_down_and_no_snapshot_knows_no_extension(postgres,
                                                                         directory_node):
    postgres.stop()
    node = directory_node()
    assert info(node, "4711,found") == "0"
    node.wait_for_log(UNREACHABLE + r".*no directory yet \(no snapshot\)", timeout=3)


def test_module_reload_keeps_following_the_database(postgres, directory_node):
    postgres.psql(MARIE)
    node = directory_node()
    node.cli("module reload pbx_python.so")
    node.wait_for_log(r"Cluster directory \(postgresql", timeout=5)
    postgres.psql("UPDATE cluster_directory SET primary_sop = 'sopC' WHERE extension = '4711'")
    wait_value([node], "4711", "sopC,sopB", timeout=2)


# -------------------------------------------------------------------------- the source alone


def _source(dsn: str, tmp_path: Path) -> PostgresSource:
    settings = parse_settings([("source", "postgresql"), ("dsn", dsn),
                               ("snapshot", str(tmp_path / "directory.json"))],
                              str(tmp_path), str(tmp_path))
    return PostgresSource(settings)


def test_stop_returns_within_seconds_while_the_server_does_not_answer(tmp_path):
    host = free_loopback_host(udp_ports=(), tcp_ports=(), candidates=range(191, 200))
    silent = socket.socket()              # accepts TCP (backlog) but never speaks PostgreSQL
    try:
        silent.bind((host, 0))
        silent.listen(8)
        source = _source(f"host={host} port={silent.getsockname()[1]} dbname=pbx user=pbx",
                         tmp_path)
        tables: list = []
        started = time.monotonic()
        source.start(tables.append)
        assert time.monotonic() - started < 2.5
        started = time.monotonic()
        source.stop()
        assert time.monotonic() - started < 4
        assert not [t for t in threading.enumerate() if t.name == "pbx_python-directory-pg"]
    finally:
        silent.close()
        release_host(host)


def test_notifications_in_a_burst_cause_few_reloads(postgres, tmp_path):
    source = _source(postgres.dsn, tmp_path)
    tables: list = []
    source.start(tables.append)
    try:
        assert len(tables) == 1
        import psycopg
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:   # 50 transactions
            for n in range(100, 150):
                conn.execute("INSERT INTO cluster_directory (extension, primary_sop) "
                             "VALUES (%s, 'sopA')", (str(n),))
        deadline = time.monotonic() + 2
        while (not tables or len(tables[-1]) < 50) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(tables[-1]) == 50
        time.sleep(0.5)
        assert len(tables) <= 5           # 50 transactions, 50 notifications: not 50 reloads
    finally:
        source.stop()


# -------------------------------------------------------------------------- CallService(ext)


def cs_extensions(node: str) -> str:
    return f"""\
[general]
static = yes

[phones]
exten => mailbox,1,CallService(4711,,,fr)
 same => n,Verbose(0,RESULT STATUS=${{CALLSERVICE_STATUS}} SOP=${{CALLSERVICE_SOP}})
 same => n,Hangup()

[callservice-in]
exten => 4711,1,Answer()
 same => n,Verbose(0,MAILBOX 4711 NODE={node} LANG=${{INITSERVICE(1)}})
 same => n,Wait(0.2)
 same => n,Hangup()
"""


def test_callservice_follows_a_mailbox_moved_in_postgresql_without_reload(postgres,
                                                                         asterisk_factory,
                                                                         tmp_path):
    from pbx_python.testing.cluster import ClusterSpec, start_cluster, wait_qualified
    from tests.conftest import MODULE_SO
    from tests.integration.test_callservice import pick_hosts

    postgres.psql("INSERT INTO cluster_directory (extension, primary_sop, secondary_sop) "
                  "VALUES ('4711', 'sopB', 'sopA')")
    spec = ClusterSpec(sops=pick_hosts(("sopA", "sopB", "sopC")),
                       modules=["dialplan_funcs.directory"],
                       extra_callservice="\n" + directory_section(postgres, tmp_path / "snap.json"))
    nodes = start_cluster(spec, cs_extensions, MODULE_SO, asterisk_factory)
    wait_qualified(nodes)

    def call() -> str:
        since = nodes["sopA"].log_offset()
        nodes["sopA"].cli("channel originate Local/mailbox@phones application Wait 5")
        return nodes["sopA"].wait_for_log(r"app_verbose\.c: (RESULT .*)$", timeout=15,
                                          since=since).group(1)

    b_since = nodes["sopB"].log_offset()
    assert call() == "RESULT STATUS=ANSWER SOP=sopB"
    nodes["sopB"].wait_for_log(r"MAILBOX 4711 NODE=sopB LANG=fr", since=b_since)
    postgres.psql("UPDATE cluster_directory SET primary_sop = 'sopC', secondary_sop = 'sopB' "
                  "WHERE extension = '4711'")
    wait_value([nodes["sopA"]], "4711", "sopC,sopB", timeout=2)   # no reload
    c_since = nodes["sopC"].log_offset()
    assert call() == "RESULT STATUS=ANSWER SOP=sopC"
    nodes["sopC"].wait_for_log(r"MAILBOX 4711 NODE=sopC LANG=fr", since=c_since)
