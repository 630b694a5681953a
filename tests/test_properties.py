"""Property tests: no input makes lvsgen crash, and no input leaves a partial tree.

Two sources of inputs: documents drawn from the schema itself (hypothesis-jsonschema), which
reach the semantic checks and the generator, and the examples with one value replaced by
arbitrary JSON, which reach every error path.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from lvsgen import pipeline, writer
from lvsgen.errors import InputError
from lvsgen.schema import load_schema

from cases import ROOT

EXAMPLES = [ROOT / "examples/seed-dr.json", ROOT / "examples/cluster.json", ROOT / "tests/cases/mixed/cluster.json"]

# Small address pools, so that generated hosts and real servers share subnets now and then.
_v4 = st.sampled_from(["192.0.2.", "198.51.100."]).flatmap(lambda p: st.integers(1, 254).map(lambda i: f"{p}{i}"))
_v6 = st.integers(1, 0xFFFF).map(lambda i: f"2001:db8::{i:x}")
_addr = st.one_of(_v4, _v4, _v6)
_iface = st.one_of(
    _v4.flatmap(lambda a: st.sampled_from([8, 24, 30, 32]).map(lambda p: f"{a}/{p}")),
    _v6.flatmap(lambda a: st.sampled_from([64, 128]).map(lambda p: f"{a}/{p}")),
)
FORMATS = {"lvsgen-ip-address": _addr, "lvsgen-ip-interface": _iface}


def _inlined(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with every #/$defs reference inlined (it has no recursive ones), because
    hypothesis-jsonschema cannot resolve references under a urn: $id."""
    if isinstance(node, dict):
        if "$ref" in node:
            return _inlined(defs[node["$ref"].rsplit("/", 1)[1]], defs)
        return {k: _inlined(v, defs) for k, v in node.items() if k not in ("$defs", "$id")}
    if isinstance(node, list):
        return [_inlined(v, defs) for v in node]
    return node


def _attempt(document: Any, tmp: Path) -> bool:
    """True when the document built; False when it was rejected with problems."""
    src = tmp / "cluster.json"
    out = tmp / "out"
    src.write_text(json.dumps(document))
    try:
        plan = pipeline.compile_file(src)
    except InputError as err:
        assert err.problems, "an InputError always names at least one problem"
        for problem in err.problems:
            assert problem.where.startswith("$") and problem.message
        assert not out.exists()
        return False
    writer.write(out, plan)
    for host, files in plan.items():
        for f in files:
            assert (out / host / f.path).read_text() == f.text
    return True


_DEFS = load_schema()["$defs"]


def _leaf(name: str) -> st.SearchStrategy[Any]:
    return from_schema(_inlined(_DEFS[name], _DEFS), custom_formats=FORMATS)


# Drawing whole documents from the schema is very slow (nested propertyNames objects), so
# the levels above the leaves are composed here, with a small pool of names so that
# references resolve often enough to reach the generator, not only the error paths.
_names = st.sampled_from(["lb", "lb2", "rs1", "rs2", "rs3"])
_real_server = st.one_of(
    st.fixed_dictionaries(
        {"host": _names},
        optional={"weight": st.integers(0, 65535), "port": st.integers(1, 65535), "localnode": st.booleans()},
    ),
    _leaf("real_server"),
)
_service = st.fixed_dictionaries(
    {
        "port": st.sampled_from([53, 80, 443, 8080]),
        "forwarding": st.sampled_from(["dr", "nat", "tun"]),
        "real_servers": st.lists(_real_server, min_size=1, max_size=4),
    },
    optional={
        "protocol": st.sampled_from(["tcp", "udp", "sctp"]),
        "scheduler": st.sampled_from(_DEFS["service"]["properties"]["scheduler"]["enum"]),
        "persistence": from_schema(_inlined(_DEFS["service"]["properties"]["persistence"], _DEFS)),
    },
)
_vip = st.fixed_dictionaries({"address": _addr, "director": _names, "services": st.lists(_service, min_size=1, max_size=3)})
_document = st.fixed_dictionaries(
    {
        "cluster": st.just("prop"),
        "hosts": st.dictionaries(_names, _leaf("host"), min_size=1, max_size=5),
        "vips": st.dictionaries(st.sampled_from(["a", "b", "c"]), _vip, min_size=1, max_size=3),
    }
)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(document=_document)
def test_schema_valid_documents_never_crash(document: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    built = _attempt(document, tmp_path_factory.mktemp("gen"))
    event("built" if built else "rejected")


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:  # type: ignore[type-arg]
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, prefix + (key,)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.extend(_paths(value, prefix + (index,)))
    return out


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 70000) | st.text(max_size=12) | _addr | _iface,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_examples_never_crash(data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    base = json.loads(data.draw(st.sampled_from(EXAMPLES)).read_text())
    document = copy.deepcopy(base)
    path = data.draw(st.sampled_from(_paths(document)[1:]))
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(_json)
    _attempt(document, tmp_path_factory.mktemp("mut"))
