"""DIRAC JDL (ClassAd-like job descriptions): parse to an ordered mapping and render back.

The accepted syntax is what DIRAC's own submission path accepts: the outer ``[ ... ]`` is
optional, attributes are ``Name = value`` separated by ``;`` (a trailing ``;`` is fine),
lists are ``{ "a", "b" }``, and names are kept in their written case. Values become
``str``, ``int``, ``float``, ``bool`` or a list of those (whose items may be lists of
those). Anything else DIRAC keeps as raw
text (``Requirements = other.Site == "X";``, bare words such as ``/bin/ls``, nested
``[ ... ]`` ClassAds) is kept as the stripped source text, a ``str``.

Where DIRAC's parser is silent or lossy we choose the ClassAd reading:

- comments are ``#`` and ``//`` to the end of the line and ``/* ... */``, outside strings
  (DIRAC itself only drops whole lines starting with ``#``);
- inside strings ``\\"`` is a quote and ``\\\\`` a backslash; any other backslash is kept
  as written;
- an attribute given twice (names compared case-insensitively) keeps its first name and
  position and takes the last value, as DIRAC's dictionary does;
- a second ``Name =`` inside a value is a missing ``;``, reported at that name, where
  DIRAC would silently glue both attributes into one value.

Where DIRAC's reading is deliberate, we read as DIRAC does:

- a newline inside a value is deleted, in strings too, so a string wrapped onto the next line
  (a long LFN) stays one string; in a list item the indentation after the newline goes too,
  as DIRAC drops the spaces of list items;
- a list item that is itself a list (``Parameters.InputData = {{"/a", "/b"}, {"/c"}}``,
  one list of files per parametric job) is read as a list;
- an empty description (nothing, or ``[]``) is refused.

Every malformed text raises :class:`JDLSyntaxError` with a 1-based line and column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from coordinator.errors import InvalidDescription, JDLSyntaxError

NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
"""What an attribute name may look like (dots allow DIRAC's ``Parameters.A``)."""

# ASCII digits only: int() would otherwise accept any Unicode digit.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)")
_INTEGER = re.compile(r"[+-]?[0-9]+")

# Order matters: comments before the '/' operator, the complete string before the
# unterminated one, multi-character operators before single characters.
_TOKEN = re.compile(
    r"""
    (?P<skip>(?:\s+|(?:\#|//)[^\n]*|/\*.*?\*/)+)
  | (?P<open_block>/\*)
  | (?P<string>"[^"\\]*(?:\\.[^"\\]*)*")
  | (?P<open_string>")
  | (?P<number>[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<op>=\?=|=!=|==|!=|<=|>=)
  | (?P<char>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPE = re.compile(r"\\([\"\\])")
_WRAPPED = re.compile(r"\r?\n")
_WRAPPED_ITEM = re.compile(r"\r?\n[ \t]*")
EMPTY_MESSAGE = "empty job description"
_OPENERS = {"{": "}", "[": "]", "(": ")"}
_CLOSERS = {"}": "{", "]": "[", ")": "("}


class _Token(NamedTuple):
    kind: str  # "string", "number", "name", "op" or "char"
    text: str
    start: int
    end: int


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rfind("\n", 0, offset)
    return line, column


def _syntax_error(text: str, offset: int, message: str) -> JDLSyntaxError:
    line, column = _position(text, offset)
    return JDLSyntaxError(message, line=line, column=column)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "char"
        if kind == "skip":
            continue
        if kind == "open_block":
            raise _syntax_error(text, match.start(), "unterminated comment: '/*' is never closed")
        if kind == "open_string":
            raise _syntax_error(text, match.start(), "unterminated string: '\"' is never closed")
        tokens.append(_Token(kind, match.group(), match.start(), match.end()))
    return tokens


class _Parser:
    """Recursive descent over the token list; one instance per text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0

    def error(self, offset: int, message: str) -> JDLSyntaxError:
        return _syntax_error(self.text, offset, message)

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def offset_here(self) -> int:
        token = self.peek()
        return token.start if token is not None else len(self.text)

    def parse(self) -> dict[str, Any]:
        if not self.tokens:
            raise self.error(len(self.text), EMPTY_MESSAGE)
        first = self.tokens[0]
        bracketed = first.text == "["
        if bracketed:
            self.index = 1
        result: dict[str, Any] = {}
        lower_names: dict[str, str] = {}
        while True:
            token = self.peek()
            if token is None:
                if bracketed:
                    raise self.error(first.start, "'[' is never closed")
                return result
            if token.text == ";":
                self.index += 1
                continue
            if token.text == "]":
                if not bracketed:
                    raise self.error(token.start, "unexpected ']' without a matching '['")
                self.index += 1
                self.expect_end()
                if not result:
                    raise self.error(first.start, EMPTY_MESSAGE)
                return result
            name, value = self.attribute()
            written = lower_names.setdefault(name.lower(), name)
            result[written] = value

    def expect_end(self) -> None:
        token = self.peek()
        if token is not None:
            raise self.error(token.start, f"unexpected {token.text!r} after the closing ']'")

    def attribute(self) -> tuple[str, Any]:
        token = self.tokens[self.index]
        if token.text == "=":
            raise self.error(token.start, "empty attribute name before '='")
        if token.kind != "name":
            raise self.error(token.start, f"expected an attribute name, found {token.text!r}")
        self.index += 1
        equals = self.peek()
        if equals is None or equals.text != "=":
            found = "end of text" if equals is None else repr(equals.text)
            raise self.error(
                self.offset_here(), f"expected '=' after {token.text!r}, found {found}"
            )
        self.index += 1
        start = self.index
        self.skip_value()
        if self.index == start:
            raise self.error(self.offset_here(), f"missing value for attribute {token.text!r}")
        return token.text, _classify(self.text, self.tokens[start : self.index])

    def skip_value(self) -> None:
        """Advance past one value: up to ';', the outer ']' or the end, brackets balanced."""
        stack: list[_Token] = []
        while self.index < len(self.tokens):
            token = self.tokens[self.index]
            if not stack and token.text in (";", "]"):
                return
            if token.text in _OPENERS:
                stack.append(token)
            elif token.text in _CLOSERS:
                if not stack or stack[-1].text != _CLOSERS[token.text]:
                    raise self.error(token.start, f"unexpected {token.text!r}")
                stack.pop()
            elif token.text == ";" and stack[-1].text != "[":
                raise self.error(stack[-1].start, f"{stack[-1].text!r} is never closed")
            elif token.text == "=" and not stack:
                self.missing_separator(token)
            self.index += 1
        if stack:
            raise self.error(stack[-1].start, f"{stack[-1].text!r} is never closed")

    def missing_separator(self, equals: _Token) -> None:
        previous = self.tokens[self.index - 1]
        if previous.kind == "name" and self.tokens[self.index - 2].text != "=":
            raise self.error(previous.start, f"missing ';' before attribute {previous.text!r}")
        raise self.error(equals.start, "unexpected '=' in a value (use '==' to compare)")


def _classify(text: str, tokens: list[_Token]) -> Any:
    if tokens[0].text == "{" and tokens[-1].text == "}" and _closes_first(tokens):
        return _list_items(text, tokens[1:-1])
    return _scalar(text, tokens)


def _closes_first(tokens: list[_Token]) -> bool:
    """True when the token list is one bracketed group (the first opener closes last)."""
    depth = 0
    for position, token in enumerate(tokens):
        if token.text in _OPENERS:
            depth += 1
        elif token.text in _CLOSERS:
            depth -= 1
            if depth == 0:
                return position == len(tokens) - 1
    return False


def _list_items(text: str, tokens: list[_Token], nested: bool = False) -> list[Any]:
    """The items of a list; an item that is a list is read as one (one level deep)."""
    items: list[Any] = []
    groups: list[list[_Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.text == "," and depth == 0:
            groups.append([])
            continue
        if token.text in _OPENERS:
            depth += 1
        elif token.text in _CLOSERS:
            depth -= 1
        groups[-1].append(token)
    for group in groups:
        if not group:  # DIRAC skips empty items, so `{"a",}` is one item
            continue
        if not nested and group[0].text == "{" and group[-1].text == "}" and _closes_first(group):
            items.append(_list_items(text, group[1:-1], nested=True))
        else:
            items.append(_scalar(text, group, in_list=True))
    return items


def _scalar(text: str, tokens: list[_Token], in_list: bool = False) -> Any:
    raw = text[tokens[0].start : tokens[-1].end]
    if "\n" in raw:  # DIRAC deletes the newlines of a value, inside strings too
        raw = (_WRAPPED_ITEM if in_list else _WRAPPED).sub("", raw)
    if len(tokens) == 1 and tokens[0].kind == "string":
        return _ESCAPE.sub(r"\1", raw[1:-1]) if "\\" in raw else raw[1:-1]
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _NUMBER.fullmatch(raw):
        return _number(raw)
    return raw


def _number(raw: str) -> Any:
    try:
        value: int | float = int(raw) if _INTEGER.fullmatch(raw) else float(raw)
    except ValueError:  # more digits than int() converts; keep the text
        return raw
    if isinstance(value, float) and not math.isfinite(value):
        return raw
    return value


def parse_jdl(text: str) -> dict[str, Any]:
    """Parse a JDL text into ``{attribute (written case): value}`` in written order."""
    return _Parser(text).parse()


def scalar_text(value: Any) -> str:
    """A scalar as DIRAC writes it unquoted: ``true``/``false``, ``repr`` of floats."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _render_scalar(name: str, value: Any) -> str:
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidDescription(
            f"attribute {name!r} is not a finite number", details={"attribute": name}
        )
    if isinstance(value, (bool, int, float)):
        return scalar_text(value)
    raise InvalidDescription(
        f"attribute {name!r} must be a string, number, boolean or a list of those",
        details={"attribute": name, "type": type(value).__name__},
    )


def _render_value(name: str, value: Any, nested: bool = False) -> str:
    if isinstance(value, (list, tuple)) and not nested:
        return "{" + ", ".join(_render_value(name, item, nested=True) for item in value) + "}"
    if isinstance(value, (list, tuple)):
        return "{" + ", ".join(_render_scalar(name, item) for item in value) + "}"
    return _render_scalar(name, value)


def to_jdl(description: Mapping[str, Any]) -> str:
    """Render a description as bracketed JDL; ``parse_jdl(to_jdl(d)) == d``."""
    lines = ["["]
    seen: set[str] = set()
    for name, value in description.items():
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise InvalidDescription(
                f"{name!r} is not a valid attribute name", details={"attribute": str(name)}
            )
        if name.lower() in seen:
            raise InvalidDescription(
                f"attribute {name!r} is given twice", details={"attribute": name}
            )
        seen.add(name.lower())
        lines.append(f"    {name} = {_render_value(name, value)};")
    lines.append("]")
    return "\n".join(lines)
