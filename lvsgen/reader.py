"""Step 1: read the JSON text. Syntax errors and duplicate keys are reported with line:col."""

from __future__ import annotations

import json
import math
from typing import Any

from lvsgen.errors import InputError, Problem


class _NonStandard(Exception):
    def __init__(self, token: str):
        self.token = token


def _reject_constant(token: str) -> Any:
    raise _NonStandard(token)


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _line_col(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"{line}:{col}"


# A cluster file nests about six deep, and no field takes a number longer than a 64-bit one.
# Deeper or longer input is refused before Python's parser meets its own limits (recursion,
# integer digits), which would otherwise surface as a crash rather than a message.
MAX_DEPTH = 64
MAX_DIGITS = 20


class _TooLong(Exception):
    def __init__(self, token: str):
        self.token = token


def _parse_int(token: str) -> int:
    if len(token.lstrip("-")) > MAX_DIGITS:
        raise _TooLong(token)
    return int(token)


def _parse_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise _TooLong(token)
    return value


def _too_deep(text: str) -> int | None:
    """The index of the first bracket that opens level MAX_DEPTH + 1, outside strings."""
    depth = 0
    in_string = False
    escaped = False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return index
        elif char in "]}":
            depth -= 1
    return None


def parse(text: str) -> Any:
    """Parse JSON text; raise InputError with line:col on syntax errors or duplicate keys."""
    deep = _too_deep(text)
    if deep is not None:
        message = (
            f"input nested more than {MAX_DEPTH} levels deep: a cluster file needs about six; "
            "check for a runaway or generated structure"
        )
        raise InputError([Problem(_line_col(text, deep), message)])
    try:
        return json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float
        )
    except _TooLong as long:
        if any(c in long.token for c in ".eE"):
            shown = long.token if len(long.token) <= 24 else long.token[:20] + "..."
            message = f"the number {shown} is too large to represent; write the intended value"
        else:
            digits = len(long.token.lstrip("-"))
            message = (
                f"a number with {digits} digits: no lvsgen field takes more than {MAX_DIGITS}; "
                "write the intended value"
            )
        raise InputError([Problem(_line_col(text, text.find(long.token)), message)]) from None
    except _DuplicateKey as dup:
        where = _duplicate_position(text, dup.key)
        message = f"duplicate key {json.dumps(dup.key)}: each key may appear only once in an object; remove or rename one"
        raise InputError([Problem(where, message)]) from None
    except _NonStandard as bad:
        message = f"invalid JSON: {bad.token} is not a JSON number; write a number"
        raise InputError([Problem(_line_col(text, text.find(bad.token)), message)]) from None
    except json.JSONDecodeError as err:
        raise InputError([Problem(f"{err.lineno}:{err.colno}", f"invalid JSON: {err.msg}")]) from None


def _duplicate_position(text: str, key: str) -> str:
    """line:col of the key token that repeats an earlier key in the same object."""
    scanner = _Scanner(text)
    try:
        scanner.value()
    except _Found as found:
        if found.key == key:
            return found.where
    return ""


class _Found(Exception):
    def __init__(self, key: str, where: str):
        self.key = key
        self.where = where


class _Scanner:
    """A small JSON walker that only tracks object keys and their positions.

    The text is already known to be valid JSON except for the duplicate, so this walker can
    lean on json's own scanner for strings and numbers.
    """

    def __init__(self, text: str):
        self.text = text
        self.i = 0
        self.decoder = json.JSONDecoder()

    def _ws(self) -> None:
        t = self.text
        while self.i < len(t) and t[self.i] in " \t\r\n":
            self.i += 1

    def value(self) -> None:
        self._ws()
        ch = self.text[self.i]
        if ch == "{":
            self.i += 1
            keys: set[str] = set()
            self._ws()
            if self.text[self.i] == "}":
                self.i += 1
                return
            while True:
                self._ws()
                start = self.i
                key, self.i = json.decoder.scanstring(self.text, self.i + 1)
                if key in keys:
                    raise _Found(key, _line_col(self.text, start))
                keys.add(key)
                self._ws()
                self.i += 1  # ':'
                self.value()
                self._ws()
                if self.text[self.i] == ",":
                    self.i += 1
                    continue
                self.i += 1  # '}'
                return
        if ch == "[":
            self.i += 1
            self._ws()
            if self.text[self.i] == "]":
                self.i += 1
                return
            while True:
                self.value()
                self._ws()
                if self.text[self.i] == ",":
                    self.i += 1
                    continue
                self.i += 1
                return
        _, self.i = self.decoder.raw_decode(self.text, self.i)
