"""The kernel mode's nftables ruleset, as text: what `nft -f -` is given for a node."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.agent.mesh.nftables import NftError, check_nft, render, render_delete, table_name


def test_a_table_per_advertise_address() -> None:
    assert table_name("127.0.0.2") == "shoal_mesh_127_0_0_2"
    assert table_name("10.1.20.3") == "shoal_mesh_10_1_20_3"
    with pytest.raises(ValueError, match="IPv4"):
        table_name("::1")


def test_the_ruleset_replaces_the_table_and_round_robins_each_port() -> None:
    script = render(
        "shoal_mesh_10_0_0_1",
        "10.0.0.1",
        {
            8080: [("10.0.0.2", 32768), ("10.0.0.3", 32769)],
            53: [],
            443: [("10.0.0.1", 30443)],
            9000: [],
        },
    )
    assert script == (
        "add table ip shoal_mesh_10_0_0_1\n"
        "delete table ip shoal_mesh_10_0_0_1\n"
        "table ip shoal_mesh_10_0_0_1 {\n"
        "\tchain prerouting {\n"
        "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
        "\t\tjump ports\n"
        "\t}\n"
        "\tchain output {\n"
        "\t\ttype nat hook output priority -100; policy accept;\n"
        "\t\tjump ports\n"
        "\t}\n"
        "\tchain ports {\n"
        "\t\tip daddr 10.0.0.1 tcp dport 443 dnat ip addr . port to"
        " numgen inc mod 1 map { 0 : 10.0.0.1 . 30443 }\n"
        "\t\tip daddr 10.0.0.1 tcp dport 8080 dnat ip addr . port to"
        " numgen inc mod 2 map { 0 : 10.0.0.2 . 32768, 1 : 10.0.0.3 . 32769 }\n"
        "\t}\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy accept;\n"
        "\t\tip daddr 10.0.0.1 tcp dport { 53, 9000 } reject with tcp reset\n"
        "\t}\n"
        "\tset forwarded {\n"
        "\t\ttype inet_service\n"
        "\t\telements = { 443, 8080 }\n"
        "\t}\n"
        "\tchain postrouting {\n"
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        "\t\tmeta l4proto tcp ct status dnat ct original ip daddr 10.0.0.1"
        " ct original proto-dst @forwarded fib daddr type != local masquerade\n"
        "\t}\n"
        "}\n"
    )


def test_no_ports_leave_an_empty_table() -> None:
    script = render("t", "10.0.0.1", {})
    assert "dnat" not in script
    assert "reject" not in script
    assert "masquerade" not in script
    assert script.startswith("add table ip t\ndelete table ip t\ntable ip t {\n")


def test_deleting_works_whether_the_table_exists_or_not() -> None:
    assert render_delete("t") == "add table ip t\ndelete table ip t\n"


def test_a_missing_nft_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(NftError, match="install the nftables package"):
        check_nft(str(tmp_path / "nft"))


def test_nft_without_permission_is_one_sentence(tmp_path: Path) -> None:
    fake = tmp_path / "nft"
    fake.write_text("#!/bin/sh\necho 'Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(NftError, match=r"root or CAP_NET_ADMIN.*Operation not permitted"):
        check_nft(str(fake))
