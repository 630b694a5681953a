"""The one jinja2 Environment. Templates are dumb: every token is computed before rendering."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2

from lvsgen.resources import templates_dir


def shell_quote(value: object) -> str:
    """One shell word, always single-quoted: 'eth0', 'it'\\''s'."""
    text = str(value)
    return "'" + text.replace("'", "'\\''") + "'"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
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
