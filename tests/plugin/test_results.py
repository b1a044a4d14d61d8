"""Unit tests for cni_logger.results: passing prevResult through, converting between result families.

The shapes below are real: the cnitool bridge + host-local result (real-clients.md §3) and bridge
results with interfaces, addresses, routes and DNS in each family (cni-spec.md §5).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cni_logger import results
from cni_logger.skel import SUPPORTED_VERSIONS, CNIError
from tests.harness.plugin import CNITOOL_RESULT_100

FAMILIES = {"0.1.0": "020", "0.2.0": "020", "0.3.0": "040", "0.3.1": "040", "0.4.0": "040",
            "1.0.0": "100", "1.1.0": "100"}
V020 = [v for v in SUPPORTED_VERSIONS if FAMILIES[v] == "020"]
V040 = [v for v in SUPPORTED_VERSIONS if FAMILIES[v] == "040"]
V100 = [v for v in SUPPORTED_VERSIONS if FAMILIES[v] == "100"]

# The final result cnitool printed for bridge + host-local + logger, 1.0.0 (real-clients.md §3).
CNITOOL_100: dict[str, Any] = copy.deepcopy(CNITOOL_RESULT_100)
# The same chain in 0.4.0: "the same plus "version": "4" in each ip".
CNITOOL_040: dict[str, Any] = {
    "cniVersion": "0.4.0",
    "interfaces": CNITOOL_100["interfaces"],
    "ips": [{"version": "4", "interface": 2, "address": "10.250.77.2/24", "gateway": "10.250.77.1"}],
    "dns": {},
}

DNS = {"nameservers": ["10.96.0.10", "fd00:10:96::a"], "domain": "cluster.local",
       "search": ["default.svc.cluster.local", "svc.cluster.local"], "options": ["ndots:5"]}


def bridge_110() -> dict[str, Any]:
    """A dual-stack bridge result using every 1.1.0 field, plus keys this plugin does not know."""
    return {
        "cniVersion": "1.1.0",
        "interfaces": [
            {"name": "cni0", "mac": "0a:58:0a:f4:01:01", "mtu": 1450},
            {"name": "veth1a2b3c4d", "mac": "6e:3f:11:22:33:44", "mtu": 1450},
            {"name": "eth0", "mac": "0a:58:0a:f4:01:11", "mtu": 1450, "sandbox": "/var/run/netns/cni-1c4b",
             "socketPath": "/run/vhost/sock0", "pciID": "0000:00:1f.6", "vendorExtension": {"queues": 4}},
        ],
        "ips": [
            {"interface": 2, "address": "10.244.1.17/24", "gateway": "10.244.1.1"},
            {"interface": 2, "address": "fd00:10:244:1::11/64", "gateway": "fd00:10:244:1::1"},
            {"interface": 2, "address": "10.244.1.18/24"},
            {"interface": 2, "address": "fd00:10:244:1::12/64"},
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "10.244.1.1", "mtu": 1400, "advmss": 1360, "priority": 100,
             "table": 254, "scope": 0, "vendorHint": "keep-me"},
            {"dst": "10.96.0.0/12", "scope": 253},
            {"dst": "::/0", "gw": "fd00:10:244:1::1", "priority": 1024, "table": 254},
        ],
        "dns": DNS,
        "custom": {"x": 1},
    }


def bridge_040(version: str = "0.4.0") -> dict[str, Any]:
    return {
        "cniVersion": version,
        "interfaces": [{"name": "cni0", "mac": "0a:58:0a:f4:01:01"},
                       {"name": "eth0", "mac": "0a:58:0a:f4:01:11", "sandbox": "/var/run/netns/cni-1c4b"}],
        "ips": [{"version": "4", "interface": 1, "address": "10.244.1.17/24", "gateway": "10.244.1.1"},
                {"version": "6", "interface": 1, "address": "fd00:10:244:1::11/64",
                 "gateway": "fd00:10:244:1::1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}, {"dst": "::/0"}],
        "dns": DNS,
        "custom": "kept",
    }


def bridge_020(version: str = "0.2.0") -> dict[str, Any]:
    return {
        "cniVersion": version,
        "ip4": {"ip": "10.244.1.17/24", "gateway": "10.244.1.1",
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}, {"dst": "10.96.0.0/12"}]},
        "ip6": {"ip": "fd00:10:244:1::11/64", "gateway": "fd00:10:244:1::1",
                "routes": [{"dst": "::/0", "gw": "fd00:10:244:1::1"}]},
        "dns": DNS,
        "custom": [1, 2],
    }


# -- families and the empty result ---------------------------------------------------------------


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_family_of_each_version(version: str) -> None:
    assert results.family(version) == FAMILIES[version]


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_pass_through_without_prev_result_is_the_minimal_result(version: str) -> None:
    config = {"cniVersion": version, "name": "net", "type": "logger"}
    assert results.pass_through(config, version) == {"cniVersion": version, "dns": {}}


def test_pass_through_with_null_prev_result_is_the_minimal_result() -> None:
    config = {"cniVersion": "1.0.0", "name": "net", "type": "logger", "prevResult": None}
    assert results.pass_through(config, "1.0.0") == {"cniVersion": "1.0.0", "dns": {}}


# -- 1.0.0 / 1.1.0 -> 0.3.x / 0.4.0 -----------------------------------------------------------------


def test_cnitool_100_result_as_040_is_what_cnitool_printed_for_040() -> None:
    assert results.convert(copy.deepcopy(CNITOOL_100), "0.4.0") == CNITOOL_040


def test_cnitool_040_result_as_100_is_what_cnitool_printed_for_100() -> None:
    assert results.convert(copy.deepcopy(CNITOOL_040), "1.0.0") == CNITOOL_100


@pytest.mark.parametrize("target", V040)
def test_110_to_040_family_drops_only_the_11_fields(target: str) -> None:
    out = results.convert(bridge_110(), target)
    assert out["cniVersion"] == target
    assert out["interfaces"] == [
        {"name": "cni0", "mac": "0a:58:0a:f4:01:01"},
        {"name": "veth1a2b3c4d", "mac": "6e:3f:11:22:33:44"},
        {"name": "eth0", "mac": "0a:58:0a:f4:01:11", "sandbox": "/var/run/netns/cni-1c4b",
         "vendorExtension": {"queues": 4}},
    ]
    assert out["routes"] == [
        {"dst": "0.0.0.0/0", "gw": "10.244.1.1", "vendorHint": "keep-me"},
        {"dst": "10.96.0.0/12"},
        {"dst": "::/0", "gw": "fd00:10:244:1::1"},
    ]
    assert out["dns"] == DNS
    assert out["custom"] == {"x": 1}


def test_110_to_040_derives_ip_version_from_each_address() -> None:
    out = results.convert(bridge_110(), "0.4.0")
    assert [(ip["version"], ip["address"]) for ip in out["ips"]] == [
        ("4", "10.244.1.17/24"), ("6", "fd00:10:244:1::11/64"),
        ("4", "10.244.1.18/24"), ("6", "fd00:10:244:1::12/64"),
    ]
    assert out["ips"][0] == {"version": "4", "interface": 2, "address": "10.244.1.17/24",
                             "gateway": "10.244.1.1"}


def test_ip_version_is_derived_for_bare_addresses_too() -> None:
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "192.0.2.7"}, {"address": "2001:db8::7"}]}
    out = results.convert(prev, "0.3.1")
    assert [ip["version"] for ip in out["ips"]] == ["4", "6"]


def test_unparsable_address_when_deriving_the_version_is_a_decoding_failure() -> None:
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "not-an-ip/24"}]}
    with pytest.raises(CNIError) as info:
        results.convert(prev, "0.4.0")
    assert info.value.code == 6
    assert "not-an-ip" in info.value.details


# -- 0.3.x / 0.4.0 -> 1.0.0 / 1.1.0 -----------------------------------------------------------------


@pytest.mark.parametrize("target", V100)
def test_040_to_100_family_removes_ip_version_and_keeps_the_rest(target: str) -> None:
    out = results.convert(bridge_040(), target)
    expected = bridge_040()
    expected["cniVersion"] = target
    for ip in expected["ips"]:
        del ip["version"]
    assert out == expected


@pytest.mark.parametrize("source", V040)
def test_040_family_round_trip_through_100_is_lossless(source: str) -> None:
    original = bridge_040(source)
    assert results.convert(results.convert(original, "1.1.0"), source) == original


# -- the 0.3.0 "ip" spelling -------------------------------------------------------------------------


def typo_030() -> dict[str, Any]:
    return {"cniVersion": "0.3.0",
            "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/x"}],
            "ip": [{"version": "4", "interface": 0, "address": "10.1.2.3/16", "gateway": "10.1.0.1"}],
            "dns": {}}


@pytest.mark.parametrize("target", V100)
def test_030_ip_key_becomes_ips_in_100(target: str) -> None:
    out = results.convert(typo_030(), target)
    assert "ip" not in out
    assert out["ips"] == [{"interface": 0, "address": "10.1.2.3/16", "gateway": "10.1.0.1"}]


@pytest.mark.parametrize("target", V040)
def test_030_ip_key_becomes_ips_within_the_040_family(target: str) -> None:
    out = results.convert(typo_030(), target)
    assert "ip" not in out
    assert out["ips"] == typo_030()["ip"]


@pytest.mark.parametrize("target", V020)
def test_030_ip_key_is_read_when_converting_to_020(target: str) -> None:
    out = results.convert(typo_030(), target)
    assert out["ip4"] == {"ip": "10.1.2.3/16", "gateway": "10.1.0.1"}
    assert "ip" not in out and "ips" not in out and "interfaces" not in out


# -- 0.1.0 / 0.2.0 <-> the others --------------------------------------------------------------------


def test_020_to_040_builds_ips_and_routes() -> None:
    assert results.convert(bridge_020(), "0.4.0") == {
        "cniVersion": "0.4.0",
        "ips": [{"version": "4", "address": "10.244.1.17/24", "gateway": "10.244.1.1"},
                {"version": "6", "address": "fd00:10:244:1::11/64", "gateway": "fd00:10:244:1::1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}, {"dst": "10.96.0.0/12"},
                   {"dst": "::/0", "gw": "fd00:10:244:1::1"}],
        "dns": DNS,
        "custom": [1, 2],
    }


@pytest.mark.parametrize("target", V100)
def test_020_to_100_has_no_ip_version(target: str) -> None:
    out = results.convert(bridge_020("0.1.0"), target)
    assert out["cniVersion"] == target
    assert out["ips"] == [{"address": "10.244.1.17/24", "gateway": "10.244.1.1"},
                          {"address": "fd00:10:244:1::11/64", "gateway": "fd00:10:244:1::1"}]
    assert "ip4" not in out and "ip6" not in out
    assert out["dns"] == DNS and out["custom"] == [1, 2]


def test_020_without_dns_gets_an_empty_dns_in_040() -> None:
    out = results.convert({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.5/8"}}, "0.4.0")
    assert out == {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.5/8"}], "dns": {}}


@pytest.mark.parametrize("target", V020)
def test_110_to_020_keeps_first_v4_and_first_v6_and_only_dst_gw_of_routes(target: str) -> None:
    out = results.convert(bridge_110(), target)
    assert out == {
        "cniVersion": target,
        "ip4": {"ip": "10.244.1.17/24", "gateway": "10.244.1.1",
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}, {"dst": "10.96.0.0/12"}]},
        "ip6": {"ip": "fd00:10:244:1::11/64", "gateway": "fd00:10:244:1::1",
                "routes": [{"dst": "::/0", "gw": "fd00:10:244:1::1"}]},
        "dns": DNS,
        "custom": {"x": 1},
    }


def test_cnitool_100_result_as_020() -> None:
    assert results.convert(copy.deepcopy(CNITOOL_100), "0.2.0") == {
        "cniVersion": "0.2.0", "ip4": {"ip": "10.250.77.2/24", "gateway": "10.250.77.1"}, "dns": {}}


def test_first_address_of_each_family_wins_even_when_v6_comes_first() -> None:
    prev = {"cniVersion": "0.4.0",
            "ips": [{"version": "6", "address": "2001:db8::2/64"},
                    {"version": "6", "address": "2001:db8::3/64"},
                    {"version": "4", "address": "192.0.2.2/24"},
                    {"version": "4", "address": "192.0.2.3/24"}]}
    out = results.convert(prev, "0.2.0")
    assert out["ip4"] == {"ip": "192.0.2.2/24"}
    assert out["ip6"] == {"ip": "2001:db8::2/64"}


@pytest.mark.parametrize("prev", [
    {"cniVersion": "1.0.0", "dns": {}},
    {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0"}], "ips": [], "dns": {}},
    {"cniVersion": "0.4.0", "interfaces": [{"name": "eth0"}], "dns": {}},
    {"cniVersion": "0.3.1", "ips": [], "routes": [{"dst": "0.0.0.0/0"}]},
])
@pytest.mark.parametrize("target", V020)
def test_result_without_ips_cannot_be_expressed_as_020(prev: dict[str, Any], target: str) -> None:
    with pytest.raises(CNIError) as info:
        results.convert(prev, target)
    assert info.value.code == 1
    assert info.value.msg


@pytest.mark.parametrize("source", V020)
def test_020_round_trip_through_110_is_lossless(source: str) -> None:
    original = bridge_020(source)
    assert results.convert(results.convert(original, "1.1.0"), source) == original


# -- relabelling within a family ----------------------------------------------------------------------


@pytest.mark.parametrize(("make", "versions"), [
    (bridge_020, V020), (bridge_040, V040), (bridge_110, V100),
])
def test_within_a_family_only_the_version_changes(make: Any, versions: list[str]) -> None:
    for source in versions:
        for target in versions:
            original = make()
            original["cniVersion"] = source
            expected = copy.deepcopy(original)
            expected["cniVersion"] = target
            assert results.convert(original, target) == expected, (source, target)


def test_110_to_100_keeps_the_11_fields() -> None:
    out = results.convert(bridge_110(), "1.0.0")
    assert out["interfaces"][2]["socketPath"] == "/run/vhost/sock0"
    assert out["routes"][0]["table"] == 254


# -- general properties -----------------------------------------------------------------------------


@pytest.mark.parametrize("target", SUPPORTED_VERSIONS)
@pytest.mark.parametrize("make", [bridge_020, bridge_040, bridge_110])
def test_convert_never_changes_its_input(make: Any, target: str) -> None:
    original = make()
    snapshot = copy.deepcopy(original)
    results.convert(original, target)
    assert original == snapshot


@pytest.mark.parametrize("target", SUPPORTED_VERSIONS)
@pytest.mark.parametrize("make", [bridge_020, bridge_040, bridge_110])
def test_unknown_top_level_keys_survive_every_conversion(make: Any, target: str) -> None:
    original = make()
    original["x-vendor"] = {"nested": [1, {"a": None}]}
    out = results.convert(original, target)
    assert out["x-vendor"] == {"nested": [1, {"a": None}]}
    assert out["custom"] == original["custom"]
    assert out["cniVersion"] == target


def test_result_without_version_is_read_in_the_config_version() -> None:
    prev = {"ips": [{"version": "4", "address": "10.0.0.2/24"}], "dns": {}}
    assert results.convert(prev, "0.4.0") == {"cniVersion": "0.4.0", **prev}
    # A missing version means "the config's version" (as in Go's ParsePrevResult): only relabelled.
    assert results.convert(prev, "1.0.0") == {"cniVersion": "1.0.0", **prev}


@pytest.mark.parametrize("bad", ["0.5.0", "2.0.0", "1.0", 1, ["1.0.0"]])
def test_unsupported_prev_result_version_is_refused_with_code_1(bad: Any) -> None:
    with pytest.raises(CNIError) as info:
        results.convert({"cniVersion": bad, "dns": {}}, "1.0.0")
    assert info.value.code == 1
    assert repr(bad) in info.value.details


# -- prev_result and pass_through ---------------------------------------------------------------------


def test_prev_result_absent_is_none() -> None:
    assert results.prev_result({"cniVersion": "1.0.0", "name": "n"}) is None


def test_prev_result_object_is_returned_unchanged() -> None:
    config = {"cniVersion": "1.0.0", "name": "n", "prevResult": copy.deepcopy(CNITOOL_100)}
    assert results.prev_result(config) == CNITOOL_100


@pytest.mark.parametrize("bad", [[], ["x"], "result", 0, 1.5, True, False])
def test_prev_result_that_is_not_an_object_is_a_decoding_failure(bad: Any) -> None:
    with pytest.raises(CNIError) as info:
        results.prev_result({"cniVersion": "1.0.0", "name": "n", "prevResult": bad})
    assert info.value.code == 6
    assert type(bad).__name__ in info.value.details


@pytest.mark.parametrize("bad", [[], "result", 7])
def test_pass_through_refuses_a_non_object_prev_result(bad: Any) -> None:
    with pytest.raises(CNIError) as info:
        results.pass_through({"cniVersion": "1.0.0", "name": "n", "prevResult": bad}, "1.0.0")
    assert info.value.code == 6


def test_pass_through_answers_prev_result_in_the_config_version() -> None:
    # cni#862: a 0.4.0 prevResult under a 1.0.0 config.
    config = {"cniVersion": "1.0.0", "name": "rcnet100", "type": "logger",
              "prevResult": copy.deepcopy(CNITOOL_040)}
    assert results.pass_through(config, "1.0.0") == CNITOOL_100


def test_pass_through_same_version_is_byte_faithful() -> None:
    prev = bridge_110()
    config = {"cniVersion": "1.1.0", "name": "n", "type": "logger", "prevResult": prev}
    assert results.pass_through(config, "1.1.0") == bridge_110()
