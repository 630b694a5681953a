"""Command line: parse arguments, map errors to messages and exit codes. Nothing else.

Exit codes: 0 ok; 1 invalid input (every problem listed); 2 usage error; 3 internal bug.
"""

from __future__ import annotations

import json
import os
import sys
from functools import wraps
from pathlib import Path
from typing import Any, Callable, List, Optional, TypeVar

import typer

from lvsgen import __version__, pipeline, schema, writer
from lvsgen.errors import InputError, OutputError

EXIT_INVALID = 1
EXIT_BUG = 3

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Compile a JSON description of an LVS (IPVS) cluster into per-host artifacts.",
)

F = TypeVar("F", bound=Callable[..., Any])


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _guarded(func: F) -> F:
    """Turn every failure into a message and an exit code; never a traceback for users."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if os.environ.get("LVSGEN_DEBUG"):
                raise
            _err(f"lvsgen: internal error: {type(exc).__name__}: {exc}")
            _err("lvsgen: this is a bug in lvsgen, not in your input; please report it with the input file (set LVSGEN_DEBUG=1 for a traceback)")
            raise typer.Exit(EXIT_BUG) from None

    return wrapper  # type: ignore[return-value]


def _report(source: Path, error: InputError) -> None:
    for problem in error.problems:
        _err(problem.render(str(source)))
    count = len(error.problems)
    _err(f"lvsgen: {source}: {count} problem{'s' if count != 1 else ''}; nothing was written")


def _version(value: bool) -> None:
    if value:
        print(f"lvsgen {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """lvsgen: one JSON file in, every host's LVS configuration out."""


@app.command()
@_guarded
def build(
    cluster: Path = typer.Argument(..., help="The cluster description (JSON).", dir_okay=False),
    output: Path = typer.Option(Path("out"), "-o", "--output", help="Folder for the per-host trees.", file_okay=False),
) -> None:
    """Validate CLUSTER and write OUTPUT/<host>/... for every managed host."""
    try:
        plan = pipeline.compile_file(cluster)
    except InputError as error:
        _report(cluster, error)
        raise typer.Exit(EXIT_INVALID) from None
    try:
        writer.write(output, plan)
    except (OutputError, OSError) as error:
        _err(f"lvsgen: cannot write {output}: {error}")
        raise typer.Exit(EXIT_INVALID) from None


@app.command()
@_guarded
def validate(
    clusters: List[Path] = typer.Argument(..., help="One or more cluster descriptions (JSON).", dir_okay=False),
) -> None:
    """Check CLUSTER files only; list every problem. Exit 1 if there is any."""
    failed = False
    for cluster in clusters:
        try:
            pipeline.load(cluster)
        except InputError as error:
            _report(cluster, error)
            failed = True
    if failed:
        raise typer.Exit(EXIT_INVALID)


@app.command("schema")
@_guarded
def print_schema() -> None:
    """Print the JSON Schema of the cluster file (point "$schema" at a saved copy)."""
    print(json.dumps(schema.load_schema(), indent=2, ensure_ascii=False))


def main(argv: Optional[List[str]] = None) -> None:
    app(args=argv, prog_name="lvsgen")
