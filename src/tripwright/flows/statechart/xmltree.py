"""A minimal XML tree with source lines, read with the standard library's expat parser.

Only what SCXML needs: elements (namespace, local name, attributes, children, text) and
the line each element starts on. Document type declarations are refused, so no entity
can be declared and none expanded (no "billion laughs", no external entities): SCXML
documents never need a DTD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.parsers import expat

from tripwright.errors import StatechartError

__all__ = ["XmlNode", "parse_xml"]


@dataclass(slots=True)
class XmlNode:
    """One element: ``ns`` is its namespace URI (``""`` for none), ``tag`` its local name.

    ``attrs`` maps attribute names to values: plain names for attributes without a
    namespace, ``"{uri}name"`` for the others. ``text`` is the character data directly
    inside the element (children's text excluded).
    """

    ns: str
    tag: str
    attrs: dict[str, str]
    line: int
    children: list[XmlNode] = field(default_factory=list)
    text: str = ""


def _split(name: str) -> tuple[str, str]:
    uri, _, local = name.rpartition(" ")
    return uri, local


def parse_xml(text: str | bytes, *, source: str = "document") -> XmlNode:
    """The root element of an XML document; :class:`StatechartError` with the line and
    the parser's reason when it is not well-formed or declares a document type."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[XmlNode] = []
    texts: list[list[str]] = []
    root: list[XmlNode] = []

    def start(name: str, attributes: dict[str, str]) -> None:
        ns, tag = _split(name)
        attrs = {}
        for key, value in attributes.items():
            uri, local = _split(key)
            attrs[f"{{{uri}}}{local}" if uri else local] = value
        node = XmlNode(ns, tag, attrs, parser.CurrentLineNumber)
        if stack:
            stack[-1].children.append(node)
        else:
            root.append(node)
        stack.append(node)
        texts.append([])

    def end(name: str) -> None:
        node = stack.pop()
        node.text = "".join(texts.pop())

    def characters(data: str) -> None:
        if texts:
            texts[-1].append(data)

    def doctype(*_: object) -> None:
        raise StatechartError(
            f"{source}: document type declarations are not allowed in SCXML",
            line=parser.CurrentLineNumber,
        )

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = doctype
    try:
        parser.Parse(text, True)
    except expat.ExpatError as exc:
        reason = expat.ErrorString(exc.code) if exc.code is not None else str(exc)
        raise StatechartError(
            f"{source}: not well-formed XML: {reason} (column {exc.offset + 1})",
            line=exc.lineno,
        ) from None
    if not root:
        raise StatechartError(f"{source}: no root element")
    return root[0]
