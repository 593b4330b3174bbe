"""JSON encoding of contexts, payloads and journal data, with clear errors."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from tripwright.errors import ContextNotSerializableError

__all__ = ["MAX_NAME", "check_name", "dumps", "loads", "safe_text"]

#: Longest name (step, timer, topic, event type, correlation id, ...) the stores keep.
MAX_NAME = 200


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"object of type {type(value).__name__} is not JSON serializable")


# One encoder for the process: building a JSONEncoder per call costs more than encoding
# the small documents the engine writes.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_default, allow_nan=False)
_DECODER = json.JSONDecoder()
# An escaped NUL: "\u0000" not itself preceded by an escaped backslash.
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
# Without ASCII escapes, a lone surrogate cannot be encoded as UTF-8: an exact test.
_UNESCAPED = json.JSONEncoder(
    separators=(",", ":"), default=_default, allow_nan=False, ensure_ascii=False
)


def _surrogates_pair(value: Any) -> bool:
    """Whether every UTF-16 surrogate in ``value`` is half of a pair (valid text)."""
    try:
        _UNESCAPED.encode(value).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def dumps(value: Any, *, what: str = "value", run_id: str | None = None) -> str:
    """Encode ``value`` as compact JSON or raise :class:`ContextNotSerializableError`."""
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        path = _find_bad_path(value)
        where = f" at {path}" if path else ""
        raise ContextNotSerializableError(
            f"{what} is not JSON-serialisable{where}: {exc}", run_id=run_id
        ) from exc
    if "\\ud" in text and not _surrogates_pair(value):
        raise ContextNotSerializableError(
            f"{what} contains a lone UTF-16 surrogate, which is not valid text",
            run_id=run_id,
        )
    if "\\u0000" in text and _NUL.search(text):
        # PostgreSQL's jsonb cannot store NUL; refuse it on every store alike.
        raise ContextNotSerializableError(
            f"{what} contains a NUL character (\\u0000), which stores cannot keep",
            run_id=run_id,
        )
    return text


def loads(text: str | None) -> Any:
    """Decode JSON text; ``None`` stays ``None``."""
    return None if text is None else _DECODER.decode(text)


def _find_bad_path(value: Any, path: str = "$") -> str | None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                return f"{path} (key {key!r})"
            found = _find_bad_path(item, f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _find_bad_path(item, f"{path}[{index}]")
            if found:
                return found
        return None
    if value is None or isinstance(value, str | int | bool | Decimal):
        return None
    if isinstance(value, float):
        return None if value == value and value not in (float("inf"), float("-inf")) else path
    return path


def check_name(value: str, what: str) -> str:
    """Refuse a name the stores cannot keep (too long, or containing NUL)."""
    from tripwright.errors import ConfigurationError

    if len(value) > MAX_NAME or "\x00" in value:
        raise ConfigurationError(
            f"{what} {value[:40]!r}... is over {MAX_NAME} characters or has NUL"
        )
    return value


def safe_text(value: object, limit: int = 1000) -> str:
    """``str(value)`` made storable: no NUL, no lone surrogate, at most ``limit`` chars.

    For texts the engine did not write itself (exception messages) that go into runs.
    """
    try:
        text = str(value)
    except Exception:  # a broken __str__ must not stop the error from being recorded
        text = f"<{type(value).__name__} whose text cannot be read>"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")[:limit]
