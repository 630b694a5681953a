"""The one jinja2 Environment. Templates are dumb: every token is computed before rendering."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.bccache import Bucket

from lvsgen import __version__
from lvsgen.resources import templates_dir


def shell_quote(value: object) -> str:
    """One shell word, always single-quoted: 'eth0', 'it'\\''s'."""
    text = str(value)
    return "'" + text.replace("'", "'\\''") + "'"


class _Cache(jinja2.FileSystemBytecodeCache):
    """jinja2's compiled templates, kept between runs: compiling them was a fifth of a small
    build's own time. A template's entry is keyed by its source's checksum, so an edited
    template is compiled again, and written atomically (a temporary file renamed), so runs
    side by side are safe. A cache that cannot be read or written is only slower."""

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, EOFError, ValueError):
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        try:
            Path(self.directory).mkdir(parents=True, exist_ok=True)
            super().dump_bytecode(bucket)
        except OSError:
            pass


def cache_dir() -> Path | None:
    """$XDG_CACHE_HOME/lvsgen (default ~/.cache/lvsgen), by lvsgen version; LVSGEN_NO_CACHE=1
    turns it off."""
    if os.environ.get("LVSGEN_NO_CACHE") == "1":
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):  # no home: no cache
        return None
    return Path(base) / "lvsgen" / f"templates-{__version__}"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    cache = cache_dir()
    env = jinja2.Environment(
        bytecode_cache=_Cache(str(cache)) if cache is not None else None,
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["sh"] = shell_quote
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
