"""check_origin: received metadata is believed only from the trunk of the SOP it names."""

import pytest

from dialplan_funcs.callservice.codec import CallMeta, HeaderError, check_origin

SOPS = {"sopA", "sopB", "sopC"}


def meta(origin, path, hop):
    return CallMeta(origin=origin, path=tuple(path), hop=hop, exten="2000")


@pytest.mark.parametrize("m", [
    meta("sopA", ["sopA"], 1),
    meta("sopA", ["sopC", "sopA"], 2),
    meta("sopA", ["sopA"], 3),            # failed legs count in the hop count
])
def test_consistent_metadata_from_the_origin_trunk_is_believed(m):
    check_origin(m, "sopA", SOPS)


def test_an_origin_other_than_the_trunk_s_sop_is_refused():
    with pytest.raises(HeaderError, match="origin o=sopC but the call arrived on the trunk of SOP "
                                          "sopA"):
        check_origin(meta("sopC", ["sopC"], 1), "sopA", SOPS)


def test_a_path_naming_a_sop_outside_the_cluster_is_refused():
    with pytest.raises(HeaderError, match="path names sopZ, which is not a cluster SOP"):
        check_origin(meta("sopA", ["sopZ", "sopA"], 2), "sopA", SOPS)


def test_a_path_naming_a_sop_twice_is_refused():
    with pytest.raises(HeaderError, match="names a SOP twice"):
        check_origin(meta("sopA", ["sopA", "sopC", "sopA"], 3), "sopA", SOPS)


def test_a_path_longer_than_the_hop_count_is_refused():
    with pytest.raises(HeaderError, match="longer than the hop count h=1"):
        check_origin(meta("sopA", ["sopC", "sopA"], 1), "sopA", SOPS)
