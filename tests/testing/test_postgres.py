"""PrivatePostgres: a private server on its own loopback address, a real stop, and nothing left
behind (process, directory) once it is cleaned up or its test process exits."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from pbx_python.testing.postgres import PrivatePostgres

pytestmark = pytest.mark.integration


def connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def test_it_listens_only_on_its_own_loopback_address(postgres):
    assert postgres.host.startswith("127.") and postgres.host != "127.0.0.1"
    assert connects(postgres.host, postgres.port)
    assert not connects("127.0.0.1", postgres.port)
    assert postgres.execute("SHOW listen_addresses") == [(postgres.host,)]
    assert (postgres.base / f".s.PGSQL.{postgres.port}").is_socket()   # not in /run/postgresql


def test_the_schema_is_applied_and_the_pbx_user_owns_the_table(postgres):
    assert postgres.execute("SELECT tableowner FROM pg_tables WHERE tablename = "
                            "'cluster_directory'") == [("pbx",)]
    postgres.psql("INSERT INTO cluster_directory (extension, primary_sop) VALUES ('1', 'sopA')")
    assert postgres.execute("SELECT extension, secondary_sop, attributes FROM cluster_directory") \
        == [("1", "", {})]


def test_stop_is_a_real_stop_and_start_brings_the_data_back(postgres):
    postgres.psql("INSERT INTO cluster_directory (extension, primary_sop) VALUES ('1', 'sopA')")
    pid = postgres.pid
    postgres.stop()
    assert not alive(pid) and not connects(postgres.host, postgres.port)
    postgres.start()
    assert postgres.execute("SELECT extension FROM cluster_directory") == [("1",)]


def test_cleanup_leaves_no_process_and_no_directory():
    pg = PrivatePostgres().start()
    pid, base = pg.pid, pg.base
    pg.cleanup()
    assert not alive(pid) and not base.exists()


def test_a_server_left_by_a_test_process_that_exits_is_stopped(tmp_path):
    code = ("from pbx_python.testing.postgres import PrivatePostgres\n"
            "pg = PrivatePostgres().start()\n"
            "print(pg.pid, pg.base, flush=True)\n")           # exits without cleanup()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    pid, base = int(out[0]), out[1]
    try:
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid)
    finally:
        if alive(pid):
            os.kill(pid, 9)
        subprocess.run(["rm", "-rf", base], check=False)
