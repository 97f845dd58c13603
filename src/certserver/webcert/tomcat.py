"""Point Tomcat's HTTPS connector in server.xml at the client certificate's files.

lxml reads the file (and reads the result again); the edit itself is made in the text, on
the few attributes it changes, so every comment, every other connector, the layout, the
quoting and the entities stay byte for byte as they were.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from certserver.errors import FileProblem
from certserver.webcert import connector, xmltext

_INDENT = xmltext.INDENT

_SetAttributes = Callable[[int, dict[str, str], Sequence[str]], None]


@dataclass(frozen=True)
class Edited:
    data: bytes
    description: str


@dataclass
class _Doc:
    text: str
    prefix: bytes  # a byte order mark, kept
    encoding: str
    newline: str
    tags: list[xmltext.Element]
    nodes: list[etree._Element]


def edit_server_xml(
    data: bytes, source: Path, target: connector.Target, port: str | None
) -> Edited:
    """``data`` (the bytes of ``source``) with the HTTPS connector pointed at ``target``.

    The connector is the one on ``port``, or the only HTTPS connector; a file with several
    and no port is refused with their list, as is anything this editor cannot follow.
    """
    doc = _read(data, source)
    edits: list[tuple[int, int, str]] = []
    changed: dict[int, tuple[dict[str, str], tuple[str, ...]]] = {}
    inserted: dict[int, list[tuple[str, dict[str, str]]]] = {}

    def set_attributes(index: int, values: dict[str, str], remove: Sequence[str]) -> None:
        edits.extend(xmltext.attribute_edits(doc.text, doc.tags[index], values, remove))
        changed[index] = (values, tuple(remove))

    connectors = [i for i, node in enumerate(doc.nodes) if node.tag == "Connector"]
    https = [i for i in connectors if _is_https(doc.nodes[i])]
    chosen = _choose(doc, connectors, https, port, source)
    if chosen is None:
        where = _new_connector(doc, target, port or connector.DEFAULT_PORT, source, edits, inserted)
        description = f"added an HTTPS connector on port {port or connector.DEFAULT_PORT}{where}"
    else:
        description = _point(doc, chosen, target, source, edits, inserted, set_attributes)
    text = doc.text
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        text = text[:start] + replacement + text[end:]
    result = doc.prefix + text.encode(doc.encoding)
    _verify(doc, result, source, changed, inserted)
    return Edited(result, description)


def _read(data: bytes, source: Path) -> _Doc:
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, remove_blank_text=False
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise FileProblem(source, f"is not well-formed XML (line {exc.lineno})") from None
    encoding = root.getroottree().docinfo.encoding or "UTF-8"
    prefix = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
    try:
        text = data[len(prefix) :].decode(encoding)
    except (LookupError, UnicodeDecodeError):
        raise FileProblem(source, f"cannot be read as {encoding}") from None
    if any(isinstance(node, etree._Entity) for node in root.iter()):
        # an entity can pull in another file (connectors included from elsewhere): what is
        # edited here would not be the whole configuration
        raise FileProblem(source, "includes XML entities (other files?); edit it by hand")
    nodes = [node for node in root.iter() if isinstance(node.tag, str)]
    try:
        tags = xmltext.scan(text)
    except xmltext.XmlTextError as exc:
        raise FileProblem(source, f"cannot be edited safely: {exc}") from None
    if [t.name for t in tags] != [n.tag for n in nodes] or any(
        _attributes(text, tag) != _attrib(node) for tag, node in zip(tags, nodes, strict=True)
    ):
        raise FileProblem(
            source, "uses XML this editor cannot change safely (entities?); edit it by hand"
        )
    newline = "\r\n" if "\r\n" in text else "\n"
    return _Doc(text, prefix, encoding, newline, tags, nodes)


def _attributes(text: str, tag: xmltext.Element) -> dict[str, str]:
    """Attribute values as a parser reports them (whitespace normalized, references resolved)."""
    return {
        a.name: html.unescape(re.sub(r"[\t\n\r]", " ", text[a.value_start : a.value_end]))
        for a in tag.attributes
    }


def _attrib(node: etree._Element) -> dict[str, str]:
    return {str(k): str(v) for k, v in node.attrib.items()}


def _is_https(node: etree._Element) -> bool:
    return (node.get("SSLEnabled") or "").strip().lower() == "true" or any(
        child.tag == "SSLHostConfig" for child in node
    )


def _choose(
    doc: _Doc, connectors: list[int], https: list[int], port: str | None, source: Path
) -> int | None:
    ports = ", ".join(doc.nodes[i].get("port", "?") for i in https)
    if port is not None:
        on_port = [i for i in connectors if doc.nodes[i].get("port") == port]
        if not on_port:
            if https:
                raise FileProblem(
                    source, f"has no connector on port {port} (HTTPS connectors: {ports})"
                )
            return None
        if len(on_port) > 1:
            raise FileProblem(source, f"has {len(on_port)} connectors on port {port}")
        if on_port[0] not in https:
            raise FileProblem(
                source, f"the connector on port {port} is not an HTTPS connector (SSLEnabled)"
            )
        return on_port[0]
    if len(https) > 1:
        raise FileProblem(
            source,
            f"has {len(https)} HTTPS connectors (ports {ports}): choose one with --connector-port",
        )
    return https[0] if https else None


def _point(
    doc: _Doc,
    index: int,
    target: connector.Target,
    source: Path,
    edits: list[tuple[int, int, str]],
    inserted: dict[int, list[tuple[str, dict[str, str]]]],
    set_attributes: _SetAttributes,
) -> str:
    node = doc.nodes[index]
    port = node.get("port", "?")
    hosts = [i for i in _children(doc, index) if doc.nodes[i].tag == "SSLHostConfig"]
    older = [
        str(name)
        for name in node.attrib
        if name in connector.OLDER_CERTIFICATE_ATTRS or name in connector.OLDER_HOST_ATTRS
    ]
    if not hosts:
        host_attributes = (
            connector.moved_host_attributes(node) if older else dict(connector.DEFAULT_HOST)
        )
        certificate = connector.certificate_values(target)[0]
        if older:
            set_attributes(index, {}, older)
        _insert_child(doc, index, _host_config_markup(host_attributes, certificate), edits)
        inserted[index + 1] = [("SSLHostConfig", host_attributes), ("Certificate", certificate)]
        if older:
            return (
                f"connector on port {port}: moved its older TLS attributes "
                f"({', '.join(older)}) to SSLHostConfig and Certificate (Tomcat 10.1 ignores "
                "them on the Connector)"
            )
        return f"connector on port {port}: added SSLHostConfig and Certificate"
    host = _default_host(doc, index, hosts, source)
    certificates = [i for i in _children(doc, host) if doc.nodes[i].tag == "Certificate"]
    values, remove = connector.certificate_values(target)
    if not certificates:
        if any(
            name in doc.nodes[host].attrib
            for name in connector.PEM_ATTRS + connector.KEYSTORE_ATTRS
        ):
            values.pop("type", None)
            set_attributes(host, values, remove)
            return f"connector on port {port}: set {', '.join(values)} on SSLHostConfig"
        _insert_child(doc, host, _certificate_markup(values), edits)
        inserted[host + 1] = [("Certificate", values)]
        return f"connector on port {port}: added a Certificate"
    if len(certificates) > 1:
        typed = [
            i
            for i in certificates
            if doc.nodes[i].get("type", "").upper() == target.key_type.upper()
        ]
        if len(typed) != 1:
            raise FileProblem(
                source,
                f"the connector on port {port} has {len(certificates)} Certificate elements "
                f"and not one of type {target.key_type}",
            )
        certificates = typed
    set_attributes(certificates[0], values, remove)
    return f"connector on port {port}: set {', '.join(values)}"


def _children(doc: _Doc, index: int) -> list[int]:
    where = {id(tag): i for i, tag in enumerate(doc.tags)}
    return [where[id(child)] for child in doc.tags[index].children]


def _default_host(doc: _Doc, connector: int, hosts: list[int], source: Path) -> int:
    if len(hosts) == 1:
        return hosts[0]
    name = doc.nodes[connector].get("defaultSSLHostConfigName", "_default_")
    named = [i for i in hosts if doc.nodes[i].get("hostName", "_default_") == name]
    if len(named) != 1:
        raise FileProblem(
            source, f"the HTTPS connector has {len(hosts)} SSLHostConfig and no single default"
        )
    return named[0]


def _insert_child(
    doc: _Doc, parent: int, markup: list[str], edits: list[tuple[int, int, str]]
) -> None:
    edits.append(xmltext.child_insertion(doc.text, doc.tags[parent], markup, doc.newline))


def _certificate_markup(values: dict[str, str]) -> list[str]:
    attributes = " ".join(f'{k}="{xmltext.escape(v)}"' for k, v in values.items())
    return [f"<Certificate {attributes} />"]


def _host_config_markup(host: dict[str, str], certificate: dict[str, str]) -> list[str]:
    attributes = "".join(f' {k}="{xmltext.escape(v)}"' for k, v in host.items())
    return [
        f"<SSLHostConfig{attributes}>",
        *[_INDENT + line for line in _certificate_markup(certificate)],
        "</SSLHostConfig>",
    ]


def _new_connector(
    doc: _Doc,
    target: connector.Target,
    port: str,
    source: Path,
    edits: list[tuple[int, int, str]],
    inserted: dict[int, list[tuple[str, dict[str, str]]]],
) -> str:
    services = [i for i, node in enumerate(doc.nodes) if node.tag == "Service"]
    if not services:
        raise FileProblem(source, "has no Service element to add an HTTPS connector to")
    service = services[0]
    children = _children(doc, service)
    engine = next((i for i in children if doc.nodes[i].tag == "Engine"), None)
    pairs = [f'{k}="{xmltext.escape(v)}"' for k, v in connector.connector_attributes(port).items()]
    align = " " * len("<Connector ")
    lines = [
        f"<Connector {' '.join(pairs[:2])}",
        f"{align}{' '.join(pairs[2:6])}",
        f"{align}{pairs[6]}>",
        *[
            _INDENT + x
            for x in _host_config_markup(
                connector.DEFAULT_HOST, connector.certificate_values(target)[0]
            )
        ],
    ]
    lines.append("</Connector>")
    new = [
        ("Connector", connector.connector_attributes(port)),
        ("SSLHostConfig", dict(connector.DEFAULT_HOST)),
        ("Certificate", connector.certificate_values(target)[0]),
    ]
    if engine is not None:
        tag = doc.tags[engine]
        indent = xmltext.indent_of(doc.text, tag.start)
        nl = doc.newline
        block = (nl + indent).join(lines) + nl + nl + indent
        edits.append((tag.start, tag.start, block))
        inserted[engine] = new
        return f" to Service {doc.nodes[service].get('name', '')!r}".replace(" ''", "")
    _insert_child(doc, service, lines, edits)
    inserted[service + 1] = new
    return ""


def _verify(
    old: _Doc,
    data: bytes,
    source: Path,
    changed: dict[int, tuple[dict[str, str], tuple[str, ...]]],
    inserted: dict[int, list[tuple[str, dict[str, str]]]],
) -> None:
    """Read the result again: exactly the planned changes, every other element as it was."""
    try:
        new = _read(data, source)
    except FileProblem as exc:
        raise FileProblem(source, f"the edited file would not read back: {exc.problem}") from None
    expected: list[tuple[str, dict[str, str]]] = []
    for index, node in enumerate(old.nodes):
        expected += inserted.get(index, [])
        attributes = _attrib(node)
        if index in changed:
            values, remove = changed[index]
            attributes = {k: v for k, v in attributes.items() if k not in remove}
            attributes.update(values)
        expected.append((str(node.tag), attributes))
    expected += inserted.get(len(old.nodes), [])
    got = [(str(node.tag), _attrib(node)) for node in new.nodes]
    if got != expected:
        raise FileProblem(source, "the edit did not read back as planned; nothing was changed")
