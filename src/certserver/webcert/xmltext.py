"""Where each element's tags and attributes sit in an XML text, so an edit can change a few
attributes and leave every other byte (comments, layout, quoting, entities) as it was.

Only start tags, end tags and attributes are located; comments, CDATA, processing
instructions and the DOCTYPE are skipped whole. The caller checks the result against a real
parser (lxml), element by element, so a text this scanner misreads is refused, not damaged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_NAME = re.compile(r"[^\s/>=\"'<]+")
_SPACE = re.compile(r"\s*")


class XmlTextError(ValueError):
    """The text is not XML this scanner can follow."""


@dataclass
class Attribute:
    name: str
    #: from the whitespace before the name to the closing quote
    start: int
    end: int
    value_start: int  # just inside the quote
    value_end: int
    quote: str


@dataclass
class Element:
    name: str
    start: int  # the '<'
    start_tag_end: int  # just after '>' of the start tag
    self_closing: bool
    attributes: list[Attribute] = field(default_factory=list)
    #: start of '</name>' and just after it; equal to start_tag_end for a self-closing tag
    end_tag_start: int = -1
    end: int = -1
    children: list[Element] = field(default_factory=list)

    def attribute(self, name: str) -> Attribute | None:
        return next((a for a in self.attributes if a.name == name), None)


def scan(text: str) -> list[Element]:
    """Every element in document order (the root first)."""
    found: list[Element] = []
    stack: list[Element] = []
    position = 0
    length = len(text)
    while True:
        position = text.find("<", position)
        if position < 0:
            break
        if text.startswith("<!--", position):
            position = _after(text, "-->", position)
        elif text.startswith("<![CDATA[", position):
            position = _after(text, "]]>", position)
        elif text.startswith("<?", position):
            position = _after(text, "?>", position)
        elif text.startswith("<!", position):
            position = _after_doctype(text, position)
        elif text.startswith("</", position):
            close = _after(text, ">", position)
            name = text[position + 2 : close - 1].strip()
            if not stack or stack[-1].name != name:
                raise XmlTextError(f"unexpected end tag </{name}>")
            element = stack.pop()
            element.end_tag_start, element.end = position, close
            position = close
        else:
            element = _start_tag(text, position, length)
            if stack:
                stack[-1].children.append(element)
            found.append(element)
            if not element.self_closing:
                stack.append(element)
            position = element.start_tag_end
    if stack:
        raise XmlTextError(f"<{stack[-1].name}> is not closed")
    return found


def _start_tag(text: str, position: int, length: int) -> Element:
    match = _NAME.match(text, position + 1)
    if match is None:
        raise XmlTextError(f"unreadable tag at offset {position}")
    element = Element(match.group(), position, -1, False)
    cursor = match.end()
    while True:
        space_start = cursor
        cursor = _SPACE.match(text, cursor).end()  # type: ignore[union-attr]
        if cursor >= length:
            raise XmlTextError(f"<{element.name}> is not closed")
        if text.startswith("/>", cursor):
            element.self_closing = True
            element.start_tag_end = element.end_tag_start = element.end = cursor + 2
            return element
        if text[cursor] == ">":
            element.start_tag_end = cursor + 1
            return element
        name = _NAME.match(text, cursor)
        if name is None or cursor == space_start:
            raise XmlTextError(f"unreadable attribute in <{element.name}>")
        cursor = _SPACE.match(text, name.end()).end()  # type: ignore[union-attr]
        if not text.startswith("=", cursor):
            raise XmlTextError(f"attribute {name.group()} of <{element.name}> has no value")
        cursor = _SPACE.match(text, cursor + 1).end()  # type: ignore[union-attr]
        quote = text[cursor : cursor + 1]
        if quote not in ('"', "'"):
            raise XmlTextError(f"attribute {name.group()} of <{element.name}> is not quoted")
        close = text.find(quote, cursor + 1)
        if close < 0:
            raise XmlTextError(f"attribute {name.group()} of <{element.name}> is not closed")
        element.attributes.append(
            Attribute(name.group(), space_start, close + 1, cursor + 1, close, quote)
        )
        cursor = close + 1


def _after(text: str, marker: str, position: int) -> int:
    end = text.find(marker, position)
    if end < 0:
        raise XmlTextError(f"unterminated markup at offset {position}")
    return end + len(marker)


def _after_doctype(text: str, position: int) -> int:
    depth = 0
    for index in range(position, len(text)):
        char = text[index]
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == ">" and depth <= 0:
            return index + 1
    raise XmlTextError("unterminated DOCTYPE")


def escape(value: str, quote: str = '"') -> str:
    """``value`` as the text of an attribute in ``quote`` (every special character escaped)."""
    out = (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\t", "&#9;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
    )
    return out.replace('"', "&quot;") if quote == '"' else out.replace("'", "&apos;")


#: One level of indentation for what an edit adds (Tomcat's own files use four spaces).
INDENT = "    "

Edit = tuple[int, int, str]  # replace text[start:end] with the string


def attribute_edits(
    text: str, tag: Element, values: dict[str, str], remove: Sequence[str]
) -> list[Edit]:
    """Set ``values`` (in place where the attribute exists, keeping its quote; after the last
    attribute otherwise, on its own line when the tag is laid out one per line) and drop
    ``remove``; nothing else in the tag moves."""
    edits: list[Edit] = []
    for attribute in tag.attributes:
        if attribute.name in remove and attribute.name not in values:
            edits.append((attribute.start, attribute.end, ""))
    missing: list[str] = []
    for name, value in values.items():
        found = tag.attribute(name)
        if found is None:
            missing.append(f'{name}="{escape(value)}"')
        elif text[found.value_start : found.value_end] != escape(value, found.quote):
            edits.append((found.value_start, found.value_end, escape(value, found.quote)))
    if missing:
        last = tag.attributes[-1] if tag.attributes else None
        at = last.end if last else tag.start + 1 + len(tag.name)
        separator = " "
        if last is not None:
            lead = text[last.start : last.end]
            space = lead[: len(lead) - len(lead.lstrip())]
            if "\n" in space:
                separator = space
        edits.append((at, at, "".join(separator + item for item in missing)))
    return edits


def indent_of(text: str, position: int) -> str:
    """The whitespace before ``position`` on its line ('' when text precedes it)."""
    line_start = text.rfind("\n", 0, position) + 1
    lead = text[line_start:position]
    return lead if not lead.strip() else ""


def child_insertion(text: str, tag: Element, markup: list[str], newline: str) -> Edit:
    """``markup`` (lines) as the first child of ``tag``, one level deeper; a self-closing
    tag is opened and closed around it."""
    indent = indent_of(text, tag.start)
    body = "".join(newline + indent + INDENT + line for line in markup)
    if not tag.self_closing:
        return (tag.start_tag_end, tag.start_tag_end, body)
    close = text.rfind("/>", tag.start, tag.start_tag_end)
    while text[close - 1].isspace():
        close -= 1
    return (close, tag.start_tag_end, ">" + body + newline + indent + f"</{tag.name}>")
