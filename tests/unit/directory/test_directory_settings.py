"""The [directory] section of pbx_python.conf."""
from __future__ import annotations

import pytest

from dialplan_funcs.directory.settings import (
    DirectorySettingsError, parse_settings, redact_dsn, redact_error)


def parse(*pairs):
    return parse_settings(list(pairs), "/etc/ast", "/var/lib/ast")


def test_defaults_are_the_file_source_in_the_config_dir():
    s = parse()
    assert (s.source, s.file, s.refresh, s.snapshot) == \
        ("file", "/etc/ast/cluster_directory.conf", 30.0, "/var/lib/ast/pbx_python/directory.json")


def test_relative_file_is_taken_from_the_config_dir():
    assert parse(("file", "dirs/cluster.conf")).file == "/etc/ast/dirs/cluster.conf"


def test_absolute_file_is_kept():
    assert parse(("file", "/srv/dir.conf")).file == "/srv/dir.conf"


def test_postgresql_source_with_its_settings():
    s = parse(("source", "postgresql"), ("dsn", "host=127.0.0.1 dbname=pbx"), ("refresh", "5"),
              ("snapshot", "snap.json"))
    assert (s.source, s.dsn, s.refresh, s.snapshot) == \
        ("postgresql", "host=127.0.0.1 dbname=pbx", 5.0, "/var/lib/ast/snap.json")


def test_postgresql_without_dsn_is_refused():
    with pytest.raises(DirectorySettingsError, match="needs dsn"):
        parse(("source", "postgresql"))


def test_every_problem_is_reported():
    with pytest.raises(DirectorySettingsError) as err:
        parse(("source", "ldap"), ("refresh", "-1"), ("fiel", "x"), ("file", "a"), ("file", "b"))
    assert len(err.value.errors) == 4


@pytest.mark.parametrize("dsn, shown", [
    ("host=h password=secret dbname=pbx", "host=h password=*** dbname=pbx"),
    ("host=h password = 'se cret' dbname=pbx", "host=h password = *** dbname=pbx"),
    ("postgresql://pbx:secret@127.0.0.1/pbx", "postgresql://pbx:***@127.0.0.1/pbx"),
])
def test_dsn_password_is_never_shown(dsn, shown):
    assert redact_dsn(dsn) == shown
    assert "secret" not in parse(("source", "postgresql"), ("dsn", dsn)).location


@pytest.mark.parametrize("dsn, message, secret", [
    # libpq's own messages for these DSNs (psycopg.connect raises them before any connection)
    ("postgresql://pbx:s3cr%et@127.0.0.1/pbx", 'invalid percent-encoded token: "s3cr%et"', "s3cr"),
    ("host=h password=pass word dbname=pbx", 'missing "=" after "word" in connection info string',
     "word"),
    ("postgresql://pbx:pa]ss@[::1/pbx", 'end of string reached when looking for matching "]" in '
     'IPv6 host address in URI: "postgresql://pbx:pa]ss@[::1/pbx"', "pa]ss"),
    ("host=h password='se cret' port=x", 'the secret is se cret', "se cret"),
    ("postgresql://pbx:p%40ss@h/pbx", "p@ss was rejected", "p@ss"),
])
def test_an_error_about_the_dsn_never_shows_its_password(dsn, message, secret):
    shown = redact_error(message, dsn)
    assert "***" in shown and secret not in shown


def test_an_error_without_the_password_is_unchanged():
    message = 'connection to server at "127.0.0.1", port 1 failed: Connection refused'
    assert redact_error(message, "host=127.0.0.1 port=1 password=secret") == message


@pytest.mark.parametrize("refresh", ["0.03", "0.5", "0", "86401", "1e3", "nan"])
def test_a_refresh_below_a_second_or_above_a_day_is_refused(refresh):
    with pytest.raises(DirectorySettingsError, match="from 1 to 86400"):
        parse(("source", "postgresql"), ("dsn", "host=h"), ("refresh", refresh))


@pytest.mark.parametrize("refresh, seconds", [("1", 1.0), ("2.5", 2.5), ("86400", 86400.0)])
def test_a_refresh_from_a_second_to_a_day_is_taken(refresh, seconds):
    s = parse(("source", "postgresql"), ("dsn", "host=h"), ("refresh", refresh))
    assert s.refresh == seconds
