"""Step 2: validate the parsed document against the JSON Schema (Draft 2020-12).

Every error is collected, not just the first, and each is tied to a JSON path. ``format`` is
enforced: a FormatChecker is passed, with lvsgen's two address formats registered on it.
"""

from __future__ import annotations

import ipaddress
import json
import re
from functools import lru_cache
from typing import Any, Iterable

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match

from lvsgen.errors import InputError, Problem
from lvsgen.resources import schema_path

_PREFIX = re.compile(r"/(0|[1-9][0-9]{0,2})$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_ip_address(value: object) -> bool:
    """An IPv4 or IPv6 address, no prefix, no zone index."""
    if not isinstance(value, str):
        return True  # the type keyword reports non-strings
    if "%" in value or "/" in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_ip_interface(value: object) -> bool:
    """An address with an explicit numeric prefix length: 192.0.2.10/24, 2001:db8::10/64."""
    if not isinstance(value, str):
        return True  # the type keyword reports non-strings
    if "%" in value or not _PREFIX.search(value):
        return False
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        return False
    return True


_FORMAT_MESSAGES = {
    "lvsgen-ip-address": "is not an IP address; write one IPv4 or IPv6 address without a prefix length, like 192.0.2.10 or 2001:db8::10",
    "lvsgen-ip-interface": "is not an address with a prefix length; write it as on the interface, like 192.0.2.10/24 or 2001:db8::10/64",
}


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    with schema_path().open(encoding="utf-8") as fh:
        schema: dict[str, Any] = json.load(fh)
    Draft202012Validator.check_schema(schema)
    return schema


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    checker = FormatChecker(formats=())
    checker.checks("lvsgen-ip-address")(is_ip_address)
    checker.checks("lvsgen-ip-interface")(is_ip_interface)
    return Draft202012Validator(load_schema(), format_checker=checker)


def json_path(parts: Iterable[Any]) -> str:
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _message(error: ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    hint = schema.get("x-lvsgen-hint")
    instance = json.dumps(error.instance)
    if error.validator == "format":
        return f"{instance} {_FORMAT_MESSAGES.get(str(error.validator_value), 'has the wrong format')}"
    if error.validator == "pattern":
        return f"{instance} is not allowed here: {hint}" if hint else error.message
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        names = ", ".join(json.dumps(e) for e in extra)
        return f"unknown property {names}; allowed here: {', '.join(allowed)}"
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        return f"missing required property {', '.join(json.dumps(m) for m in missing)}"
    if error.validator in ("oneOf", "anyOf"):
        if hint:
            return hint
        return best_match(error.context).message if error.context else error.message
    if error.validator == "minProperties":
        return "must not be empty"
    if error.validator == "minItems":
        return f"must have at least {error.validator_value} item(s)"
    return error.message


def _problem(error: ValidationError) -> Problem:
    where = json_path(error.absolute_path)
    if "propertyNames" in error.absolute_schema_path:
        # jsonschema reports a bad key at the object's path; say which key it is.
        hint = error.schema.get("x-lvsgen-hint", error.message) if isinstance(error.schema, dict) else error.message
        return Problem(where, f"name {json.dumps(error.instance)} is not allowed: {hint}")
    return Problem(where, _message(error))


def validate(document: Any) -> None:
    """Raise InputError listing every schema violation, sorted by path."""
    errors = list(_validator().iter_errors(document))
    if not errors:
        return
    raise InputError(sorted({_problem(error) for error in errors}))
