"""Finds the packaged templates/ and schemas/ folders.

The wheel carries them as ``lvsgen/_data/{templates,schemas}``; a source checkout has them at
the top level. The installed copy wins, because an editable install shadows nothing there.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def data_dir(name: str) -> Path:
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"lvsgen is installed without its {name}/ folder")


def schema_path() -> Path:
    return data_dir("schemas") / "cluster.schema.json"


def templates_dir() -> Path:
    return data_dir("templates")
