"""pbx_python.building: which Asterisk is built against and where the module is installed.

The build and the atomic install themselves: tests/integration/test_install.py.
"""
from __future__ import annotations

import pytest

from pbx_python import building
from pbx_python.building import BuildError


def test_an_explicit_prefix_wins_over_the_environment(tmp_path):
    prefix, how = building.find_prefix(str(tmp_path / "a"), {"ASTERISK_PREFIX": str(tmp_path / "b")})
    assert (prefix, how) == (tmp_path / "a", "--asterisk-prefix")
    prefix, how = building.find_prefix(None, {"ASTERISK_PREFIX": str(tmp_path / "b")})
    assert (prefix, how) == (tmp_path / "b", "ASTERISK_PREFIX")


def test_a_prefix_without_headers_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(BuildError, match=rf"no Asterisk headers under {tmp_path}/include "
                       r"\(--asterisk-prefix\).*make install-headers"):
        building.asterisk_prefix(str(tmp_path))


def test_install_dirs_follow_the_asterisk_conf_of_the_prefix_not_its_template(tmp_path):
    assert building.asterisk_dirs(tmp_path) == {
        "astetcdir": tmp_path / "etc" / "asterisk",
        "astmoddir": tmp_path / "lib" / "asterisk" / "modules",
        "astrundir": tmp_path / "var" / "run" / "asterisk"}
    (tmp_path / "etc" / "asterisk").mkdir(parents=True)
    (tmp_path / "etc" / "asterisk" / "asterisk.conf").write_text(
        "[options]\nastmoddir => /nowhere\n[directories](!)\nastrundir => /template\n"
        "[directories]\nastmoddir => /opt/mods ; ours\nastrundir = /run/ast\n")
    dirs = building.asterisk_dirs(tmp_path)
    assert dirs["astmoddir"] == building.Path("/opt/mods")
    assert dirs["astrundir"] == building.Path("/run/ast")


def test_the_checkout_s_c_sources_and_sample_are_found():
    assert (building.source_dir() / "pbx_python.c").is_file()
    assert building.sample_config().name == "pbx_python.conf.sample"


def test_install_atomically_replaces_by_rename_with_the_mode(tmp_path):
    src, dst = tmp_path / "new", tmp_path / "dir" / "pbx_python.so"
    src.write_bytes(b"new")
    dst.parent.mkdir()
    dst.write_bytes(b"old")
    held = open(dst, "rb")              # noqa: SIM115 - a reader of the old file
    building.install_atomically(src, dst, 0o755)
    assert held.read() == b"old" and dst.read_bytes() == b"new"
    held.close()
    assert dst.stat().st_mode & 0o777 == 0o755
    assert [p.name for p in dst.parent.iterdir()] == ["pbx_python.so"]
