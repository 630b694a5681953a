"""The CLI's contract: exit codes, streams, and what it may write and remove."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cases import ROOT, lvsgen, tree

SEED = ROOT / "examples" / "seed-dr.json"
SHOP = ROOT / "examples" / "cluster.json"


def test_build_writes_one_folder_per_managed_host(tmp_path: Path) -> None:
    run = lvsgen("build", str(SHOP), "-o", str(tmp_path))
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lb1", "lb2", "rs1", "rs2", "rs3", "rs4"]
    # 192.0.2.50 is a bare address: it gets no folder, but its rule is on lb2.
    assert "-r 192.0.2.50:8080 -g -w 0" in (tmp_path / "lb2/etc/lvsgen/ipvsadm.rules").read_text()


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    run = lvsgen("build", str(tmp_path / "nope.json"), "-o", str(tmp_path / "out"))
    assert run.returncode == 1
    assert "nope.json: no such file" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()


def test_usage_error_exits_2() -> None:
    assert lvsgen("build").returncode == 2
    assert lvsgen("frobnicate").returncode == 2


def test_validate_ok_is_silent() -> None:
    run = lvsgen("validate", str(SEED), str(SHOP))
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")


def test_schema_command_prints_the_packaged_schema() -> None:
    run = lvsgen("schema")
    assert run.returncode == 0
    assert json.loads(run.stdout) == json.loads((ROOT / "schemas/cluster.schema.json").read_text())


def test_python_dash_m_and_version() -> None:
    run = lvsgen("--version")
    assert run.returncode == 0 and run.stdout.startswith("lvsgen ")


def test_rebuild_removes_only_files_lvsgen_wrote(tmp_path: Path) -> None:
    out = tmp_path / "out"
    src = tmp_path / "cluster.json"
    doc = json.loads(SHOP.read_text())
    src.write_text(json.dumps(doc))
    assert lvsgen("build", str(src), "-o", str(out)).returncode == 0
    (out / "notes.txt").write_text("mine")
    (out / "rs4" / "my-notes.txt").write_text("mine too")
    assert (out / "rs4/etc/systemd/system/lvsgen.service").exists()
    # rs4 leaves the cluster; rs1 moves its VIP from a dummy device to lo; lvsgen takes
    # over rs2's NIC.
    del doc["hosts"]["rs4"]
    doc["hosts"]["rs1"]["vip_device"] = "lo"
    doc["hosts"]["rs2"]["own_interface"] = {"gateway": "192.0.2.1"}
    for vip in doc["vips"].values():
        for svc in vip["services"]:
            svc["real_servers"] = [r for r in svc["real_servers"] if r.get("host") != "rs4"]
    src.write_text(json.dumps(doc))
    run = lvsgen("build", str(src), "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.relative_to(out / "rs4").as_posix() for p in (out / "rs4").rglob("*")) == ["my-notes.txt"]
    assert not (out / "rs1/etc/systemd/network/10-lvsgen-lvs0.netdev").exists()
    assert not (out / "rs1/etc/systemd/network/10-lvsgen-lvs0.network").exists()
    assert (out / "rs2/etc/systemd/network/10-lvsgen-eth0.network").exists()
    fresh = tmp_path / "fresh"
    assert lvsgen("build", str(src), "-o", str(fresh)).returncode == 0
    built = {k: v for k, v in tree(out).items() if k not in ("notes.txt", "rs4/my-notes.txt")}
    assert built == tree(fresh)


def test_refuses_a_host_folder_it_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "lb").mkdir(parents=True)
    (out / "lb" / "setup.sh").write_text("someone else's\n")
    run = lvsgen("build", str(SEED), "-o", str(out))
    assert run.returncode == 1
    assert "was not written by lvsgen" in run.stderr
    assert (out / "lb" / "setup.sh").read_text() == "someone else's\n"
    assert not (out / "rs1").exists(), "nothing is written when any folder is refused"


def test_invalid_input_leaves_an_existing_tree_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert lvsgen("build", str(SEED), "-o", str(out)).returncode == 0
    before = tree(out)
    bad = tmp_path / "bad.json"
    bad.write_text(SEED.read_text().replace('"rr"', '"nope"'))
    assert lvsgen("build", str(bad), "-o", str(out)).returncode == 1
    assert tree(out) == before


def test_internal_error_is_exit_3_without_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from lvsgen import cli, pipeline

    def boom(path: Path) -> None:
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(pipeline, "compile_file", boom)
    result = CliRunner().invoke(cli.app, ["build", str(SEED), "-o", str(tmp_path / "o")])
    assert result.exit_code == 3
    assert "internal error" in result.output and "this is a bug in lvsgen" in result.output
    assert "Traceback" not in result.output


def test_out_may_not_be_a_file(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_text("x")
    run = lvsgen("build", str(SEED), "-o", str(target))
    assert run.returncode in (1, 2)
    assert "Traceback" not in run.stderr


def test_works_from_any_directory(tmp_path: Path) -> None:
    shutil.copy(SEED, tmp_path / "seed-dr.json")
    run = lvsgen("build", "seed-dr.json", "-o", "o", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "o/lb/setup.sh").exists()
