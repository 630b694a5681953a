"""The schema step's speed-ups must not change what it reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from lvsgen import reader, schema
from lvsgen.errors import InputError

from cases import ROOT, error_cases

def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    """lvsgen does not check its schema against the metaschema at run time (it took a third of
    a seed build's own time); this does, and a broken schema fails here."""
    Draft202012Validator.check_schema(schema.load_schema())
    broken = {**schema.load_schema(), "type": "cluster"}
    with pytest.raises(Exception):
        Draft202012Validator.check_schema(broken)


def _is_json(path: Path) -> bool:
    try:
        reader.parse(path.read_text())
    except InputError:
        return False  # the reader rejects it before the schema sees it
    return True


INPUTS = sorted(p for p in [*(ROOT / "examples").glob("*.json"), *(c / "cluster.json" for c in error_cases())] if _is_json(p))


def _plain(document: Any) -> list[tuple[str, str]]:
    """Every error as a plain validator over the untouched schema reports it."""
    whole, _ = schema._validators()
    plain = Draft202012Validator(schema.load_schema(), format_checker=whole.format_checker)
    return sorted({(schema.json_path(e.absolute_path), e.validator) for e in plain.iter_errors(document)})


def _memoised(document: Any) -> list[tuple[str, str]]:
    return sorted({(schema.json_path([*prefix, *e.absolute_path]), e.validator) for prefix, e in schema.iter_errors(document)})


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.parent.name if p.name == "cluster.json" else p.name)
def test_memoised_validation_finds_the_same_errors(path: Path) -> None:
    document = json.loads(path.read_text())
    assert _memoised(document) == _plain(document)


_bad_entry = st.one_of(
    st.fixed_dictionaries({"host": st.sampled_from(["rs1", "Bad", "rs1 "])}, optional={"weight": st.integers(-2, 70000), "port": st.integers(0, 70000)}),
    st.fixed_dictionaries({"address": st.sampled_from(["192.0.2.9", "192.0.2.300", "2001:db8::1", "x"])}, optional={"bogus": st.just(1)}),
    st.just({}),
    st.just({"host": "rs1", "address": "192.0.2.9"}),
    st.just("rs1"),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(entries=st.lists(_bad_entry, min_size=1, max_size=6))
def test_memoised_validation_matches_on_repeated_entries(entries: list[Any]) -> None:
    document = json.loads((ROOT / "examples/cluster.json").read_text())
    document["vips"]["www"]["services"][0]["real_servers"] = entries
    document["vips"]["api"]["services"][0]["real_servers"] = entries + entries
    assert _memoised(document) == _plain(document)


def test_schema_errors_raise_input_error() -> None:
    with pytest.raises(InputError):
        schema.validate({"cluster": "x"})
