"""`loads` and `dumps` for the per-container processes, without the `json` package.

`import json` brings in `re`, and `re` brings in `enum`, `functools` and `collections`: about
10 ms of every runc-py start here, a quarter of a whole `runc-py run`. The work is done by
CPython's C accelerator `_json` either way (json.loads and json.dumps call it); this module
calls it directly, and uses `json` itself where `_json` is missing or has another interface.
Output is byte for byte what `json.dumps(obj)` (or with `separators=(",", ":")`) gives.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WS = " \t\n\r"


class _Decoding:
    """The settings `_json.make_scanner` reads off a decoder: json.loads' defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.get
    memo: dict[str, str] = {}


def _not_serializable(o: object) -> Any:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


try:
    import _json

    _scan: Any = _json.make_scanner(_Decoding)  # type: ignore[arg-type]  # reads the attrs
    _encoders = {
        sep: _json.make_encoder(
            None,  # no cycle check: a failed dumps would otherwise leave its marks behind
            _not_serializable,
            _json.encode_basestring_ascii,
            None,
            sep[1],
            sep[0],
            False,
            False,
            True,
        )
        for sep in ((", ", ": "), (",", ":"))
    }
except (ImportError, AttributeError, TypeError):  # not CPython, or its internals changed
    _scan = None


def loads(s: str | bytes) -> Any:
    if _scan is None:
        import json

        return json.loads(s)
    text = s.decode() if isinstance(s, bytes) else s
    start = len(text) - len(text.lstrip(_WS))
    try:
        obj, end = _scan(text, start)
    except (StopIteration, SystemError):
        # A bad document. The scanner words its errors with json.decoder, which it expects to
        # be imported already (SystemError when it is not): let the json package explain.
        import json

        return json.loads(text)
    finally:
        _Decoding.memo.clear()
    if text[end:].strip(_WS):
        raise ValueError(f"Extra data: char {end}")
    return obj


def dumps(obj: Any, separators: tuple[str, str] = (", ", ": ")) -> str:
    if _scan is None:
        import json

        return json.dumps(obj, separators=separators)
    return "".join(_encoders[separators](obj, 0))
