"""Command line: parse arguments, map errors to messages and exit codes. Nothing else.

Exit codes: 0 ok; 1 invalid input (every problem listed); 2 usage error; 3 internal bug.
"""

from __future__ import annotations

import json
import os
import sys
from functools import wraps
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional, TypeVar

import typer

from lvsgen import __version__, pipeline, schema, writer
# show, diff and import are loaded by their own commands: a build does not pay for them.
from lvsgen.errors import InputError, OutputError
from lvsgen.files import File

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
    check: bool = typer.Option(
        False,
        "--check",
        help="Write nothing. Exit 0 if OUTPUT is exactly what CLUSTER gives (bytes and modes); "
        "else print each file a build would change, one per line ('changed', 'mode', 'added' "
        "or 'removed', then the path), and exit 1.",
    ),
) -> None:
    """Validate CLUSTER and write OUTPUT/<host>/... for every managed host.

    Exit codes: 0 ok (with --check: OUTPUT is up to date); 1 invalid input, an OUTPUT lvsgen may not write, or (with --check) files that differ; 2 usage error; 3 a bug in lvsgen.
    """
    try:
        plan = pipeline.compile_file(cluster)
    except InputError as error:
        _report(cluster, error)
        raise typer.Exit(EXIT_INVALID) from None
    if check:
        _check(cluster, output, plan)
        return
    try:
        writer.write(output, plan)
    except (OutputError, OSError) as error:
        _err(f"lvsgen: cannot write {output}: {error}")
        raise typer.Exit(EXIT_INVALID) from None


def _check(cluster: Path, output: Path, plan: Mapping[str, list[File]]) -> None:
    """build --check: list on stdout what a build would change; exit 1 if anything."""
    try:
        from lvsgen import check as checker

        lines = checker.differences(output, plan)
    except OutputError as error:  # the tree the build refuses, refused in the same words
        _err(f"lvsgen: cannot write {output}: {error}")
        raise typer.Exit(EXIT_INVALID) from None
    except OSError as error:
        _err(f"lvsgen: cannot read {output}: {error}")
        raise typer.Exit(EXIT_INVALID) from None
    if lines:
        print("\n".join(lines))
        count = len(lines)
        _err(
            f"lvsgen: {output}: {count} file{'s differ' if count != 1 else ' differs'} from what {cluster} gives; "
            f"`lvsgen build {cluster} -o {output}` updates {'them' if count != 1 else 'it'}"
        )
        raise typer.Exit(EXIT_INVALID)


@app.command("show")
@_guarded
def show_cluster(
    cluster: Path = typer.Argument(..., help="The cluster description (JSON).", dir_okay=False),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON document (sorted keys; its shape is described in README)."),
) -> None:
    """Print, per director, each VIP and service with its real servers: a table, or JSON.

    For each service: protocol, address and port, scheduler, persistence and forwarding method; for each real server: its address and port, the managed host it is (or -) and its weight. Invalid input is reported as build reports it. Exit codes: 0 ok; 1 invalid input; 2 usage error; 3 a bug in lvsgen.
    """
    try:
        model = pipeline.load(cluster)
    except InputError as error:
        _report(cluster, error)
        raise typer.Exit(EXIT_INVALID) from None
    from lvsgen import show as shower

    sys.stdout.write(shower.json_text(model) if as_json else shower.table(model))


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


@app.command("diff")
@_guarded
def diff_live(
    cluster: Path = typer.Argument(..., help="The cluster description (JSON).", dir_okay=False),
    host: str = typer.Option(..., "--host", help="The director whose table to compare."),
    live: str = typer.Option(..., "--live", help="What 'ipvsadm -S -n' printed on that director; - reads standard input."),
) -> None:
    """Show what setup.sh would change in HOST's live IPVS table: a table (add, change old → new, drain, remove, keep) and a unified diff of the rules, live → desired.

    The delta is the host engine's own (lvsgen.sh, run with bash and awk). Exit codes: 0 no changes; 2 changes pending (as setup.sh --dry-run; a usage error is also 2); 1 invalid input, a host that is not a director, or an unreadable table; 3 a bug in lvsgen.
    """
    from lvsgen import diff as differ

    try:
        result = differ.compare(cluster, host, live)
    except InputError as error:
        _report(cluster, error)
        raise typer.Exit(EXIT_INVALID) from None
    except differ.DiffFailed as error:
        for message in error.messages:
            _err(message)
        raise typer.Exit(EXIT_INVALID) from None
    sys.stdout.write(result.text())
    if result.changes:
        raise typer.Exit(2)


@app.command("import")
@_guarded
def import_tables(
    tables: List[str] = typer.Argument(..., help="Saved tables ('ipvsadm -S -n'), one per director: FILE, the director named by FILE's name up to its first dot (lb1.rules: lb1), or NAME=FILE; NAME=- reads standard input."),
    output: str = typer.Option(..., "-o", "--output", help="The cluster file to write; - prints it."),
    name: Optional[str] = typer.Option(None, "--name", help="The cluster's name. Default: OUTPUT's name without .json, or 'imported'."),
    directors: Optional[List[str]] = typer.Option(None, "--director", help="NAME=ADDRESS/PREFIX[@INTERFACE]: a director's own address and the interface facing the VIP network (default eth0). Required for each director."),
    nats: Optional[List[str]] = typer.Option(None, "--nat", help="NAME=ADDRESS/PREFIX[@INTERFACE]: a NAT director's address on its real servers' network."),
    force: bool = typer.Option(False, "--force", help="Replace OUTPUT if it exists."),
) -> None:
    """Turn saved IPVS tables into a cluster file that builds them back, line for line.

    Anything a cluster file cannot describe is an error naming its FILE:LINE; nothing is written then. Exit codes: 0 ok; 1 invalid input; 2 usage error; 3 a bug in lvsgen.
    """
    from lvsgen import importer

    try:
        importer.run(tables, output, name, directors or [], nats or [], force)
    except importer.ImportFailed as error:
        for message in error.messages:
            _err(message)
        if not error.usage:
            _err("lvsgen: import: nothing was written")
        raise typer.Exit(2 if error.usage else EXIT_INVALID) from None


def main(argv: Optional[List[str]] = None) -> None:
    app(args=argv, prog_name="lvsgen")
