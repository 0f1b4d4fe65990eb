"""containerd's filter syntax (its `filters` package), as `ctr ... ls` and the List calls send it.

A request carries a list of filter strings; an object matches if any of them matches (OR). One
string is a comma-separated list of selectors that must all match (AND):

    selector  := fieldpath [operator value]      a fieldpath alone tests presence
    fieldpath := field ("." field)*              field: [A-Za-z0-9_]+ or "quoted"
    operator  := "==" | "!=" | "~="             ~= is an unanchored regexp search
    value     := quoted | run of printable non-space characters up to a comma
    quoted    := "..." with Go escapes; a ~= value may also be quoted /.../ or |...|

e.g. `name==foo,labels."io.foo/bar"`, `labels.team~=/^web-/`. The scanner and parser follow
containerd's quirks closely (where spaces are allowed, what ends a value, the text and the
`>|x|<` position marker of parse errors), because clients show those errors to users.

What the fieldpath means is up to the caller's Adaptor: `(value, present)` for a fieldpath.
"""

import enum
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from containerd_py.errdefs import InvalidArgument

log = logging.getLogger(__name__)

Adaptor = Callable[[Sequence[str]], tuple[str, bool]]


class Filter(Protocol):
    def match(self, adaptor: Adaptor) -> bool: ...


def parse(s: str) -> Filter:
    """One filter string; the empty string matches everything. InvalidArgument on errors."""
    if not s:
        return _ALWAYS
    return _Parser(s).selectors()


def parse_all(*ss: str) -> Filter:
    """Any of `ss` must match; no filters at all matches everything."""
    if not ss:
        return _ALWAYS
    return _Any(tuple(parse(s) for s in ss))


def label_adaptor(labels: Mapping[str, str], fieldpath: Sequence[str]) -> tuple[str, bool]:
    """The `labels.<key>` part of an adaptor, given the fieldpath after `labels`: the key is
    the rest joined with dots, so `labels.io.foo` and `labels."io.foo"` find the same label."""
    key = ".".join(fieldpath)
    if key in labels:
        return labels[key], True
    return "", False


# -- filters


class _Always:
    def match(self, adaptor: Adaptor) -> bool:
        return True


_ALWAYS = _Always()


@dataclass(frozen=True)
class _Any:
    filters: tuple[Filter, ...]

    def match(self, adaptor: Adaptor) -> bool:
        return any(f.match(adaptor) for f in self.filters)


@dataclass(frozen=True)
class _All:
    filters: tuple[Filter, ...]

    def match(self, adaptor: Adaptor) -> bool:
        return all(f.match(adaptor) for f in self.filters)


@dataclass(frozen=True)
class _Selector:
    fieldpath: tuple[str, ...]
    operator: str  # "" for presence, else "==", "!=" or "~="
    value: str = ""
    regexp: re.Pattern[str] | None = None

    def match(self, adaptor: Adaptor) -> bool:
        value, present = adaptor(self.fieldpath)
        if not self.operator:
            return present
        if self.operator == "==":
            return present and value == self.value
        # As in containerd, != and ~= look at the value even when the field is absent.
        if self.operator == "!=":
            return value != self.value
        return self.regexp is not None and self.regexp.search(value) is not None


# -- scanner

_EOF = ""  # what the scanner reads past the end
_ILLEGAL = "\0"  # what it reads for a NUL, which containerd's scanner refuses
_QUOTES = frozenset('/|"')
_SEPARATORS = frozenset(",.")
_OPERATOR_CHARS = frozenset("=!~")
_SIMPLE_ESCAPES = frozenset("abfnrtv\\")
_OCTAL = frozenset("01234567")


class _Tok(enum.Enum):
    EOF = enum.auto()
    QUOTED = enum.auto()
    VALUE = enum.auto()
    FIELD = enum.auto()
    SEPARATOR = enum.auto()
    OPERATOR = enum.auto()
    ILLEGAL = enum.auto()
    OTHER = enum.auto()  # any other single character


def _is_field_char(c: str) -> bool:
    return c == "_" or (c.isascii() and c.isalnum())


def _is_value_char(c: str) -> bool:
    return c not in (_EOF, ",") and not c.isspace() and c.isprintable()


def _digit_value(c: str) -> int:
    return int(c, 16) if c and c in "0123456789abcdefABCDEF" else 16


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0  # start of the character last read
        self.ppos = 0  # just past it
        self.value = False  # after an operator, a bare word is a value, not a field
        self.err = ""  # the first error met, reported with an ILLEGAL token

    def next(self) -> str:
        if self.pos >= len(self.text):
            return _EOF
        self.pos = self.ppos
        if self.ppos >= len(self.text):
            return _EOF
        c = self.text[self.ppos]
        self.ppos += 1
        if c == _ILLEGAL:
            self.error("unexpected null")
        return c

    def peek(self) -> str:
        pos, ppos = self.pos, self.ppos
        c = self.next()
        self.pos, self.ppos = pos, ppos
        return c

    def scan(self) -> tuple[int, _Tok, str]:
        """The next token: its position, kind and text (quotes included)."""
        c = self.next()
        while c.isspace():
            c = self.next()
        pos = self.pos
        if c == _EOF:
            return pos, _Tok.EOF, ""
        if c == _ILLEGAL:
            return pos, _Tok.ILLEGAL, ""
        if c in _QUOTES:
            kind = _Tok.QUOTED if self._quoted(c) else _Tok.ILLEGAL
            return pos, kind, self.text[pos : self.ppos]
        if c in _SEPARATORS:
            self.value = False
            return pos, _Tok.SEPARATOR, c
        if c in _OPERATOR_CHARS:
            while self.peek() in _OPERATOR_CHARS:
                self.next()
            self.value = True
            return pos, _Tok.OPERATOR, self.text[pos : self.ppos]
        if self.value:
            while _is_value_char(self.peek()):
                self.next()
            self.value = False
            return pos, _Tok.VALUE, self.text[pos : self.ppos]
        if _is_field_char(c):
            while _is_field_char(self.peek()):
                self.next()
            return pos, _Tok.FIELD, self.text[pos : self.ppos]
        return pos, _Tok.OTHER, ""

    def error(self, msg: str) -> None:
        if not self.err:
            self.err = msg

    def _quoted(self, quote: str) -> bool:
        """Consume a quoted literal up to its closing quote; False if it is malformed."""
        legal = True
        c = self.next()
        while c != quote:
            if c in ("\n", _EOF, _ILLEGAL):
                self.error("quoted literal not terminated")
                return False
            if c == "\\":
                c, ok = self._escape(quote)
                legal = legal and ok
            else:
                c = self.next()
        return legal

    def _escape(self, quote: str) -> tuple[str, bool]:
        """Consume an escape after its backslash; the character after it, and whether legal."""
        c = self.next()
        if c in _SIMPLE_ESCAPES or c == quote:
            return self.next(), True
        if c in _OCTAL:
            return self._digits(c, 8, 3)
        if c == "x":
            return self._digits(self.next(), 16, 2)
        if c == "u":
            return self._digits(self.next(), 16, 4)
        if c == "U":
            return self._digits(self.next(), 16, 8)
        self.error("illegal escape sequence")
        return c, False

    def _digits(self, c: str, base: int, n: int) -> tuple[str, bool]:
        while n > 0 and _digit_value(c) < base:
            c = self.next()
            n -= 1
        if n > 0:
            self.error("illegal numeric escape sequence")
            return c, False
        return c, True


# -- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.scanner = _Scanner(text)

    def selectors(self) -> Filter:
        selectors = [self.selector()]
        while True:
            c = self.scanner.peek()
            if c == ",":
                self.scanner.scan()
                selectors.append(self.selector())
            elif c == _EOF:
                return _All(tuple(selectors))
            else:
                shown = "\ufffd" if c == _ILLEGAL else c  # Go prints its illegal token as U+FFFD
                raise self.error(self.scanner.ppos, f"unexpected input: {shown}")

    def selector(self) -> _Selector:
        fieldpath = self.fieldpath()
        if self.scanner.peek() in (",", _EOF):
            return _Selector(fieldpath, "")
        operator = self.operator()
        if operator != "~=":
            return _Selector(fieldpath, operator, self.value(alt_quotes=False))
        pattern = self.value(alt_quotes=True)
        try:
            regexp = re.compile(pattern)
        except re.error as err:
            # containerd accepts the filter and then matches nothing with it.
            log.error("error compiling regexp %r: %s", pattern, err)
            regexp = None
        return _Selector(fieldpath, operator, pattern, regexp)

    def fieldpath(self) -> tuple[str, ...]:
        fields = [self.field()]
        while self.scanner.peek() == ".":
            self.scanner.scan()
            fields.append(self.field())
        return tuple(fields)

    def field(self) -> str:
        pos, tok, text = self.scanner.scan()
        if tok is _Tok.FIELD:
            return text
        if tok is _Tok.QUOTED:
            return self.unquote(pos, text, alt_quotes=False)
        if tok is _Tok.ILLEGAL:
            raise self.error(pos, self.scanner.err)
        raise self.error(pos, "expected field or quoted")

    def operator(self) -> str:
        pos, tok, text = self.scanner.scan()
        if tok is _Tok.OPERATOR:
            if text in ("==", "!=", "~="):
                return text
            raise self.error(pos, f'unsupported operator "{text}"')
        if tok is _Tok.ILLEGAL:
            raise self.error(pos, self.scanner.err)
        raise self.error(pos, 'expected an operator ("=="|"!="|"~=")')

    def value(self, alt_quotes: bool) -> str:
        pos, tok, text = self.scanner.scan()
        if tok in (_Tok.VALUE, _Tok.FIELD):
            return text
        if tok is _Tok.QUOTED:
            return self.unquote(pos, text, alt_quotes)
        if tok is _Tok.ILLEGAL:
            raise self.error(pos, self.scanner.err)
        raise self.error(pos, "expected value or quoted")

    def unquote(self, pos: int, text: str, alt_quotes: bool) -> str:
        if not alt_quotes and text[0] != '"':
            raise self.error(pos, "invalid quote encountered")
        try:
            return _unquote(text[1:-1], text[0])
        except ValueError:
            raise self.error(pos, "unquoting failed: quote syntax error") from None

    def error(self, pos: int, msg: str) -> InvalidArgument:
        """containerd's parse error: the input with `>|x|<` around the offending character."""
        if pos < len(self.text):
            before, at, after = self.text[:pos], self.text[pos], self.text[pos + 1 :]
            where = f"[{before} >|{at}|< {after}]"
        else:
            where = f"[{self.text}]"
        return InvalidArgument(f"filters: parse error: {where}: {msg}")


# -- unquoting (Go's strconv.Unquote, with / and | quoting like ")

_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_HEX_WIDTH = {"x": 2, "u": 4, "U": 8}


def _unquote(body: str, quote: str) -> str:
    """Decode the escapes of a quoted literal the scanner accepted; ValueError where Go's
    strconv would fail (e.g. an octal escape above \\377). \\x and octal escapes give the code
    point of that number, where Go gives a raw byte."""
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        c, i = body[i + 1], i + 2  # the scanner never ends a literal on a backslash
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif c == "\\" or c == quote:
            out.append(c)
        elif c in _HEX_WIDTH:
            digits = body[i : i + _HEX_WIDTH[c]]
            i += len(digits)
            code = int(digits, 16)
            if code > 0x10FFFF:
                raise ValueError(f"escape out of range: \\{c}{digits}")
            out.append(chr(code))
        else:  # octal: the scanner let only these through
            digits = c + body[i : i + 2]
            i += 2
            code = int(digits, 8)
            if code > 0o377:
                raise ValueError(f"escape out of range: \\{digits}")
            out.append(chr(code))
    return "".join(out)
