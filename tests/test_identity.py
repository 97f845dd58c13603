"""Typed values at the edge: names, CCIDs, components, SPIFFE IDs, hosts."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certserver.errors import IdentityError, InvalidInput
from certserver.hosts import Host
from certserver.identity import Ccid, Component, DeploymentName, Identity


@pytest.mark.parametrize("name", ["a", "demo", "prod-eu-1", "0abc", "a" * 63])
def test_valid_names_are_accepted(name: str) -> None:
    assert DeploymentName(name).value == name


@pytest.mark.parametrize(
    "name", ["", "-a", "Demo", "a_b", "a b", "a" * 64, "ä", "../x", "a/b", "demo\n"]
)
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="invalid deployment name"):
        DeploymentName(name)


@given(st.text(max_size=70))
def test_name_validation_matches_the_contract(text: str) -> None:
    import re

    ok = re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", text) is not None
    try:
        DeploymentName(text)
    except InvalidInput:
        assert not ok
    else:
        assert ok


def test_generated_ccids_are_lowercase_uuid4_and_distinct() -> None:
    ccids = {Ccid.generate().value for _ in range(200)}
    assert len(ccids) == 200
    for value in ccids:
        assert uuid.UUID(value).version == 4
        assert value == value.lower()


@pytest.mark.parametrize(
    "value",
    [
        "not-a-uuid",
        str(uuid.uuid4()).upper(),
        str(uuid.uuid1()),
        uuid.uuid4().hex,  # no hyphens: not the canonical form
    ],
)
def test_malformed_ccids_are_refused(value: str) -> None:
    with pytest.raises(IdentityError):
        Ccid(value)


def test_component_table_matches_the_contract() -> None:
    table = {c.folder: (c.cert_file, c.key_file, c.ca_file) for c in Component}
    assert table == {
        "ccm": ("mgmtserver.crt", "mgmtserver.key", "ca.crt"),
        "cco": ("gateway.crt", "gateway.key", "ca.crt"),
        "mon": ("monitor.crt", "monitor.key", "ca.crt"),
        "gua": ("gua.crt", "gua.key", "ca.crt"),
        "esb": ("esb.crt", "esb.key", "ca.crt"),
        "esb_rabbit": ("server_certificate.pem", "server_key.pem", "ca_certificate.pem"),
    }


def test_component_parse_accepts_folders_and_refuses_others() -> None:
    assert Component.parse("CCM") is Component.CCM
    assert Component.parse("esb_rabbit") is Component.ESB_BROKER
    with pytest.raises(InvalidInput, match="unknown component 'tomcat'"):
        Component.parse("tomcat")


@given(st.sampled_from(list(Component)))
def test_spiffe_id_round_trips(component: Component) -> None:
    identity = Identity(Ccid.generate(), component)
    assert identity.spiffe_id == f"spiffe://{identity.ccid}/{component.folder}"
    assert Identity.from_spiffe_id(identity.spiffe_id) == identity


@pytest.mark.parametrize(
    "uri",
    [
        "https://example.com/ccm",
        f"spiffe://{uuid.uuid4()}",
        f"spiffe://{uuid.uuid4()}/",
        f"spiffe://{uuid.uuid4()}/ccm/extra",
        f"spiffe://{uuid.uuid4()}/tomcat",
        "spiffe://example.org/ccm",
    ],
)
def test_spiffe_ids_without_a_valid_identity_are_refused(uri: str) -> None:
    with pytest.raises(IdentityError):
        Identity.from_spiffe_id(uri)


@pytest.mark.parametrize(
    ("raw", "text", "is_ip"),
    [
        ("localhost", "localhost", False),
        ("CCM.Example.COM.", "ccm.example.com", False),
        ("127.0.0.1", "127.0.0.1", True),
        ("::1", "::1", True),
        ("[2001:db8::1]", "2001:db8::1", True),
    ],
)
def test_hosts_are_normalised(raw: str, text: str, is_ip: bool) -> None:
    assert Host.parse(raw) == Host(text, is_ip)


@pytest.mark.parametrize(
    "raw", ["", "*.example.com", "exa mple.com", "-bad.com", "300.1.1.1", "a" * 64 + ".com", "a..b"]
)
def test_invalid_hosts_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput):
        Host.parse(raw)
