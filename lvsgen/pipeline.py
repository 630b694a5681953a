"""The one-direction flow: read → schema → semantic checks → model → plan."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from lvsgen import files, model, plan, reader, schema, semantic
from lvsgen.errors import InputError, Problem


def load(path: Path) -> model.Cluster:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError([Problem("", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError([Problem("", f"cannot read it: {err}")]) from None
    document = reader.parse(text)
    schema.validate(document)
    semantic.check(document)
    return model.build(document, path.name)


def compile_file(path: Path) -> Mapping[str, list[files.File]]:
    """Every host's files, each host's rendered when the writer comes to it (plan.Plan)."""
    return plan.plan(load(path))
