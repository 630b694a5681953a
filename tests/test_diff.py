"""`lvsgen diff CLUSTER --host DIRECTOR --live SAVED`: the director's live table against its build.

The delta is the host engine's own (lvs_ipvs_plan in the engine lvsgen.engine assembles,
which tests/test_host_lib.py tests line by line); these tests check what the command makes of it:
the table, the unified diff, the exit code (0 no changes, 2 changes, 1 errors) and the
messages. The expected tables are written out here from the cluster files, not asked of lvsgen.
A property test compares the exit code with an expectation computed from the two tables
alone: with an owned table, "no changes" exactly when they hold the same lines.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cases import ROOT, lvsgen
from lvsgen import cli, engine
from lvsgen import diff as differ

SHOP = ROOT / "examples" / "cluster.json"
LB1 = ROOT / "tests/cases/shop/expected/lb1/etc/lvsgen/ipvsadm.rules"
LB1_TEXT = LB1.read_text()
FOREIGN = "-A -u 10.9.9.9:53 -s rr\n-a -u 10.9.9.9:53 -r 10.9.9.1:53 -m -w 1\n"
GOLDEN_TABLES = sorted(ROOT.glob("tests/cases/*/expected/*/etc/lvsgen/ipvsadm.rules"))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def shop_variant(tmp_path: Path, **lb1: object) -> Path:
    """examples/cluster.json with lb1's host entry changed."""
    doc = json.loads(SHOP.read_text())
    doc["hosts"]["lb1"].update(lb1)
    return write(tmp_path / "cluster.json", json.dumps(doc))


def test_a_table_equal_to_the_build_is_no_changes(tmp_path: Path) -> None:
    run = lvsgen("diff", "examples/cluster.json", "--host", "lb1", "--live", str(LB1))
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout == f"lb1 (examples/cluster.json) against {LB1}: no changes: the live table is what the cluster file describes\n"


@pytest.mark.parametrize("table", GOLDEN_TABLES, ids=lambda p: f"{p.parts[-6]}-{p.parts[-4]}")
def test_every_golden_director_is_no_changes_against_its_own_rules(table: Path) -> None:
    case = table.parents[4]
    (source,) = case.glob("*.json")
    director = table.parts[-4]
    run = lvsgen("diff", str(source), "--host", director, "--live", str(table))
    assert (run.returncode, run.stderr) == (0, "")
    assert "no changes" in run.stdout


def test_one_changed_weight_is_exactly_that_line(tmp_path: Path) -> None:
    live = write(tmp_path / "lb1.saved", LB1_TEXT.replace("-r 192.0.2.12:80 -g -w 2", "-r 192.0.2.12:80 -g -w 5"))
    run = lvsgen("diff", "examples/cluster.json", "--host", "lb1", "--live", str(live))
    assert run.stderr == ""
    assert run.returncode == 2
    assert run.stdout == (
        f"lb1 (examples/cluster.json) against {live}: 1 change to the IPVS table\n"
        "\n"
        "  action  service            real server    live → desired\n"
        "  change  -t 192.0.2.100:80  192.0.2.12:80  -g -w 5 → -g -w 2\n"
        "\n"
        f"--- {live} (live)\n"
        "+++ examples/cluster.json: lb1/etc/lvsgen/ipvsadm.rules\n"
        "@@ -1,6 +1,6 @@\n"
        " -A -t 192.0.2.100:80 -s wrr\n"
        " -a -t 192.0.2.100:80 -r 192.0.2.11:80 -g -w 1\n"
        "--a -t 192.0.2.100:80 -r 192.0.2.12:80 -g -w 5\n"
        "+-a -t 192.0.2.100:80 -r 192.0.2.12:80 -g -w 2\n"
        " -a -t 192.0.2.100:80 -r 192.0.2.13:80 -g -w 3\n"
        " -A -t 192.0.2.100:443 -s wlc -p 300\n"
        " -a -t 192.0.2.100:443 -r 192.0.2.11:443 -g -w 1\n"
    )


def test_a_foreign_service_is_removed_when_the_table_is_owned(tmp_path: Path) -> None:
    live = write(tmp_path / "saved", LB1_TEXT + FOREIGN)
    run = lvsgen("diff", "examples/cluster.json", "--host", "lb1", "--live", str(live))
    assert (run.returncode, run.stderr) == (2, "")
    rows = run.stdout.split("\n\n")[1].splitlines()
    assert rows[1:] == [
        "  drain   -u 10.9.9.9:53  (1 real server)  -s rr: real servers → weight 0, wait for their connections to end (up to 60 s), then delete the service"
    ]
    assert run.stdout.split("\n\n")[2].splitlines()[-2:] == ["--A -u 10.9.9.9:53 -s rr", "--a -u 10.9.9.9:53 -r 10.9.9.1:53 -m -w 1"]
    # drain_timeout 0: deleted at once
    cluster = shop_variant(tmp_path, drain_timeout=0)
    run = lvsgen("diff", str(cluster), "--host", "lb1", "--live", str(live))
    assert run.returncode == 2
    assert "  remove  -u 10.9.9.9:53  (1 real server)  -s rr: not in the cluster file, and the table is lvsgen's (owns_ipvs_table: true)\n" in run.stdout


def test_a_foreign_service_is_kept_when_the_table_is_not_owned(tmp_path: Path) -> None:
    cluster = shop_variant(tmp_path, owns_ipvs_table=False)
    live = write(tmp_path / "saved", LB1_TEXT + FOREIGN)
    run = lvsgen("diff", str(cluster), "--host", "lb1", "--live", str(live))
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout == (
        f"lb1 ({cluster}) against {live}: no changes: the live table is what the cluster file describes\n"
        "\n"
        "  action  service         real server      live → desired\n"
        "  keep    -u 10.9.9.9:53  (1 real server)  -s rr: not in the cluster file; owns_ipvs_table is false, so setup.sh leaves it alone unless lvsgen added it\n"
    )


def test_not_owned_still_changes_described_services_and_leaves_the_rest(tmp_path: Path) -> None:
    cluster = shop_variant(tmp_path, owns_ipvs_table=False)
    live = write(tmp_path / "saved", LB1_TEXT.replace("-s wrr", "-s rr") + FOREIGN)
    run = lvsgen("diff", str(cluster), "--host", "lb1", "--live", str(live))
    assert run.returncode == 2
    table, unified = run.stdout.split("\n\n")[1:]
    assert [row.split()[0] for row in table.splitlines()[1:]] == ["change", "keep"]
    assert f"--- {live} (live, without the 1 kept service)" in unified
    assert "10.9.9.9" not in unified


def test_added_changed_drained_and_removed(tmp_path: Path) -> None:
    live = LB1_TEXT.replace("-A -t 192.0.2.100:443 -s wlc -p 300", "-A -t 192.0.2.100:443 -s wlc")
    live = live.replace("-a -t 192.0.2.100:443 -r 192.0.2.13:443 -g -w 1\n", "")
    live += "-a -t 192.0.2.100:80 -r 192.0.2.99:80 -g -w 4\n"
    saved = write(tmp_path / "saved", live)
    run = lvsgen("diff", "examples/cluster.json", "--host", "lb1", "--live", str(saved))
    assert run.returncode == 2
    assert run.stdout.split("\n\n")[1].splitlines() == [
        "  action  service             real server     live → desired",
        "  change  -t 192.0.2.100:443                  -s wlc → -s wlc -p 300",
        "  add     -t 192.0.2.100:443  192.0.2.13:443  -g -w 1",
        "  drain   -t 192.0.2.100:80   192.0.2.99:80   -g -w 4 → weight 0, wait for its connections to end (up to 60 s), then delete",
    ]
    cluster = shop_variant(tmp_path, drain_timeout=0)
    run = lvsgen("diff", str(cluster), "--host", "lb1", "--live", str(saved))
    assert "  remove  -t 192.0.2.100:80   192.0.2.99:80   -g -w 4\n" in run.stdout


def test_an_empty_live_table_adds_everything(tmp_path: Path) -> None:
    run = lvsgen("diff", "examples/cluster.json", "--host", "lb1", "--live", str(write(tmp_path / "empty", "")))
    assert run.returncode == 2
    assert "8 changes to the IPVS table" in run.stdout
    assert [line for line in run.stdout.splitlines() if line.startswith("+-")] == ["+" + line for line in LB1_TEXT.splitlines()]


def test_live_from_stdin(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["diff", str(SHOP), "--host", "lb1", "--live", "-"], input=LB1_TEXT.replace("-w 3", "-w 7"))
    assert result.exit_code == 2, result.output
    assert f"lb1 ({SHOP}) against <stdin>: 1 change to the IPVS table" in result.stdout
    assert "-g -w 7 → -g -w 3" in result.stdout
    result = CliRunner().invoke(cli.app, ["diff", str(SHOP), "--host", "lb1", "--live", "-"], input=LB1_TEXT)
    assert result.exit_code == 0
    assert "no changes" in result.stdout


def test_order_comments_and_spacing_of_the_saved_table_do_not_matter(tmp_path: Path) -> None:
    lines = LB1_TEXT.splitlines()
    shuffled = "# saved on lb1\n\n" + "\n".join(lines[4:] + lines[:4]).replace(" -w ", "  -w\t") + "\n"
    run = lvsgen("diff", "examples/cluster.json", "--host", "lb1", "--live", str(write(tmp_path / "saved", shuffled)))
    assert (run.returncode, run.stderr) == (0, "")


# --- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("lb9", "lvsgen: diff: examples/cluster.json: no host \"lb9\"; name one of its directors: lb1, lb2\n"),
        ("rs1", "lvsgen: diff: examples/cluster.json: host \"rs1\" is a real server; only directors have an IPVS table: name one of lb1, lb2\n"),
    ],
)
def test_host_must_be_a_director(host: str, message: str) -> None:
    run = lvsgen("diff", "examples/cluster.json", "--host", host, "--live", str(LB1))
    assert (run.returncode, run.stdout, run.stderr) == (1, "", message)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(None, "lvsgen: diff: {live}: no such file; give the file 'ipvsadm -S -n' wrote on the director, or - for standard input\n", id="missing"),
        pytest.param(b"\xff\xfe-A", "lvsgen: diff: {live}: not text (byte 1 is not UTF-8): give the file 'ipvsadm -S -n' wrote\n", id="binary"),
        pytest.param(
            b"IP Virtual Server version 1.2.1 (size=4096)\n",
            "{live}:1: this looks like 'ipvsadm -L -n' output (the listing); save the table with 'ipvsadm -S -n' instead\n",
            id="listing",
        ),
        pytest.param(
            LB1_TEXT.encode() + b"-a -t 192.0.2.100:80 -r\n",
            "{live}:9: -r needs ADDRESS:PORT: the line is cut short\n",
            id="truncated",
        ),
        pytest.param(
            b"-A -t lb1.example.net:http -s rr\n",
            "{live}:1: \"lb1.example.net:http\" has names instead of numbers: save the table with 'ipvsadm -S -n' (-n prints addresses and ports as numbers)\n",
            id="names",
        ),
        pytest.param(
            LB1_TEXT.encode() + LB1_TEXT.encode()[:28],
            "{live}:9: service -t 192.0.2.100:80 is already added at line 1: a saved table lists each service once\n",
            id="duplicate",
        ),
    ],
)
def test_an_unreadable_live_table_is_exit_1(tmp_path: Path, text: bytes | None, message: str) -> None:
    live = tmp_path / "saved"
    if text is not None:
        live.write_bytes(text)
    run = lvsgen("diff", "examples/cluster.json", "--host", "lb1", "--live", str(live))
    assert (run.returncode, run.stdout, run.stderr) == (1, "", message.format(live=live))


def test_an_invalid_cluster_is_reported_as_build_reports_it(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.json", SHOP.read_text().replace('"wrr"', '"nope"'))
    run = lvsgen("diff", str(bad), "--host", "lb1", "--live", str(LB1))
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr.startswith(f"{bad}::$.vips.www.services[0].scheduler: ")


def test_usage_errors_exit_2() -> None:
    assert lvsgen("diff", "examples/cluster.json", "--host", "lb1").returncode == 2
    assert lvsgen("diff", "examples/cluster.json", "--live", "-").returncode == 2


@pytest.mark.parametrize("tool", ["awk", "bash"])
def test_without_bash_or_awk_it_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tool: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for other in {"bash", "awk"} - {tool}:
        (bin_dir / other).symlink_to(shutil.which(other) or other)
    monkeypatch.setenv("PATH", str(bin_dir))
    result = CliRunner().invoke(cli.app, ["diff", str(SHOP), "--host", "lb1", "--live", str(LB1)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"lvsgen: diff needs {tool}: it runs the host engine's own plan (lvsgen.sh, bash and awk), the code setup.sh runs; install {tool}\n"
    )


def test_the_plan_is_the_one_of_the_engine_every_host_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    """diff runs lvsgen.engine's text, the bytes every host folder's lvsgen.sh has (tests/test_engine.py
    checks those): an engine whose plan adds a service makes diff report that service."""
    golden = ROOT / "tests/cases/shop/expected/lb1/lvsgen.sh"
    assert golden.read_text() == engine.text()
    monkeypatch.setattr(engine, "text", lambda: 'lvs_ipvs_plan() { echo "A -A -t 10.0.0.1:80 -s rr"; }\n')
    result = differ.compare(SHOP, "lb1", str(LB1))
    assert [(row.action, row.service) for row in result.rows] == [("add", "-t 10.0.0.1:80")]


# --- the exit code against an expectation from the two tables alone -----------------------------
def _mutations(lines: list[str], draw: st.DrawFn) -> list[str]:
    out = list(lines)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["weight", "drop-server", "scheduler", "foreign", "swap"]))
        servers = [i for i, line in enumerate(out) if line.startswith("-a ")]
        services = [i for i, line in enumerate(out) if line.startswith("-A ")]
        if kind == "weight" and servers:
            i = draw(st.sampled_from(servers))
            out[i] = re.sub(r"-w [0-9]+", f"-w {draw(st.integers(0, 9))}", out[i])
        elif kind == "drop-server" and servers:
            del out[draw(st.sampled_from(servers))]
        elif kind == "scheduler" and services:
            i = draw(st.sampled_from(services))
            out[i] = re.sub(r"-s [a-z]+", f"-s {draw(st.sampled_from(['rr', 'wrr', 'wlc', 'sh']))}", out[i])
        elif kind == "foreign" and not any("10.9.9.9" in line for line in out):
            port = draw(st.integers(1, 65535))
            out += [f"-A -t 10.9.9.9:{port} -s rr", f"-a -t 10.9.9.9:{port} -r 10.9.9.1:{port} -g -w 1"]
        elif kind == "swap" and len(out) > 1:
            i, j = draw(st.integers(0, len(out) - 1)), draw(st.integers(0, len(out) - 1))
            out[i], out[j] = out[j], out[i]
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_changes_exactly_when_the_tables_differ(data: st.DataObject) -> None:
    table = data.draw(st.sampled_from(GOLDEN_TABLES))
    case = table.parents[4]
    (source,) = case.glob("*.json")
    desired = table.read_text().splitlines()
    live = _mutations(desired, data.draw)
    # a swap may put an -a line before its -A line; a saved table never has that
    names: set[str] = set()
    for line in live:
        words = line.split(" ")
        if words[0] == "-A":
            names.add(" ".join(words[1:3]))
        elif " ".join(words[1:3]) not in names:
            return
    stdin = "".join(f"{line}\n" for line in live)
    result = CliRunner().invoke(cli.app, ["diff", str(source), "--host", table.parts[-4], "--live", "-"], input=stdin)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    expected = 0 if sorted(live) == sorted(desired) else 2
    assert result.exit_code == expected, (live, result.output)
    unified = [line for line in result.stdout.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert bool(unified) == bool(expected)
