"""`lvsgen build --check`: exit 0 only when the tree is what the cluster file gives; else list
each file a build would change. It never writes, not even a temporary file.

What each test expects comes from the trees themselves (a fresh build compared file by file
with the tree under test), not from the writer that --check asks."""

from __future__ import annotations

import builtins
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from typer.testing import CliRunner

from cases import ROOT, error_cases, lvsgen, tree

SHOP = ROOT / "examples" / "cluster.json"


def check(src: Path, out: Path) -> tuple[int, list[str], str]:
    run = lvsgen("build", "--check", str(src), "-o", str(out))
    assert "Traceback" not in run.stderr, run.stderr
    return run.returncode, run.stdout.splitlines(), run.stderr


def expected(out: Path, fresh: Path) -> list[str]:
    """The lines --check must print for out: every difference from a fresh build's tree."""
    have, want = tree(out) if out.exists() else {}, tree(fresh)
    lines = [f"added    {out / p}" for p in set(want) - set(have)]
    lines += [f"removed  {out / p}" for p in set(have) - set(want)]
    for p in set(want) & set(have):
        if have[p][0] != want[p][0]:
            lines.append(f"changed  {out / p}")
        elif have[p][1] != want[p][1]:
            lines.append(f"mode     {out / p}")
    return sorted(lines, key=lambda line: line.split(maxsplit=1)[1])


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of examples/cluster.json and a tree built from it."""
    src = tmp_path / "cluster.json"
    src.write_bytes(SHOP.read_bytes())
    out = tmp_path / "out"
    assert lvsgen("build", str(src), "-o", str(out)).returncode == 0
    return src, out


def test_check_after_build_exits_0_and_says_nothing(built: tuple[Path, Path]) -> None:
    src, out = built
    assert check(src, out) == (0, [], "")


def test_hand_edit_names_exactly_that_file(built: tuple[Path, Path]) -> None:
    src, out = built
    with (out / "lb1/setup.sh").open("a") as f:
        f.write("# a hand edit\n")
    code, lines, stderr = check(src, out)
    assert (code, lines) == (1, [f"changed  {out}/lb1/setup.sh"])
    assert stderr == f"lvsgen: {out}: 1 file differs from what {src} gives; `lvsgen build {src} -o {out}` updates it\n"


def test_same_bytes_other_bytes_same_size(built: tuple[Path, Path]) -> None:
    src, out = built
    rules = out / "lb2/etc/lvsgen/ipvsadm.rules"
    rules.write_text(rules.read_text().replace("-w 0", "-w 9"))  # the same size, other bytes
    assert check(src, out)[:2] == (1, [f"changed  {rules}"])


def test_chmod_is_reported(built: tuple[Path, Path]) -> None:
    src, out = built
    (out / "rs1/setup.sh").chmod(0o644)
    (out / "rs2/cloud-init.yaml.gz").chmod(0o600)
    assert check(src, out)[:2] == (1, [f"mode     {out}/rs1/setup.sh", f"mode     {out}/rs2/cloud-init.yaml.gz"])


def test_removed_file_is_reported_as_added(built: tuple[Path, Path]) -> None:
    src, out = built
    (out / "rs3/etc/sysctl.d/99-zz-lvsgen.conf").unlink()
    (out / "lb2/etc/lvsgen/ipvsadm.rules").unlink()
    assert check(src, out)[:2] == (1, [f"added    {out}/lb2/etc/lvsgen/ipvsadm.rules", f"added    {out}/rs3/etc/sysctl.d/99-zz-lvsgen.conf"])


def test_host_removed_from_cluster_reports_its_files_as_removed(built: tuple[Path, Path], tmp_path: Path) -> None:
    src, out = built
    doc = json.loads(src.read_text())
    del doc["hosts"]["rs4"]
    doc["hosts"]["rs1"]["vip_device"] = "lo"  # units go
    doc["hosts"]["rs2"]["own_interface"] = {"gateway": "192.0.2.1"}  # a unit comes
    for vip in doc["vips"].values():
        for svc in vip["services"]:
            svc["real_servers"] = [r for r in svc["real_servers"] if r.get("host") != "rs4"]
    src.write_text(json.dumps(doc))
    fresh = tmp_path / "fresh"
    assert lvsgen("build", str(src), "-o", str(fresh)).returncode == 0
    code, lines, _ = check(src, out)
    assert code == 1
    assert lines == expected(out, fresh)
    gone = sorted(f"removed  {out}/rs4/{p}" for p in tree(out / "rs4"))
    assert f"removed  {out}/rs4/.lvsgen-manifest" in gone
    assert [line for line in lines if "/rs4/" in line] == gone
    assert any(line.startswith("added    ") for line in lines) and any(line.startswith("changed  ") for line in lines)
    # A build makes exactly that change; then --check agrees.
    assert lvsgen("build", str(src), "-o", str(out)).returncode == 0
    assert check(src, out) == (0, [], "")
    assert not (out / "rs4").exists()


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_missing_or_empty_out_reports_everything_as_added(built: tuple[Path, Path], tmp_path: Path, state: str) -> None:
    src, fresh = built
    out = tmp_path / "new"
    if state == "empty":
        out.mkdir()
    code, lines, _ = check(src, out)
    assert code == 1
    assert lines == expected(out, fresh)
    assert len(lines) == len(tree(fresh)) and all(line.startswith("added    ") for line in lines)
    assert (sorted(out.iterdir()) == []) if state == "empty" else not out.exists()


def test_foreign_files_are_not_reported(built: tuple[Path, Path]) -> None:
    src, out = built
    (out / "notes.txt").write_text("mine")
    (out / "rs4/my-notes.txt").write_text("mine too")
    (out / "other").mkdir()
    (out / "other/setup.sh").write_text("not lvsgen's")
    assert check(src, out) == (0, [], "")


def test_leftover_of_a_killed_build_is_reported_as_removed(built: tuple[Path, Path]) -> None:
    src, out = built
    leftover = out / "lb1/etc/lvsgen/.ipvsadm.rules.lvsgen-tmp"
    leftover.write_text("half a file")
    assert check(src, out)[:2] == (1, [f"removed  {leftover}"])
    assert lvsgen("build", str(src), "-o", str(out)).returncode == 0
    assert not leftover.exists()
    assert check(src, out) == (0, [], "")


def test_refused_folder_is_said_as_build_says_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "lb1").mkdir(parents=True)
    (out / "lb1/setup.sh").write_text("someone else's\n")
    checked = lvsgen("build", "--check", str(SHOP), "-o", str(out))
    built = lvsgen("build", str(SHOP), "-o", str(out))
    assert (checked.returncode, checked.stdout, checked.stderr) == (1, "", built.stderr)
    assert built.returncode == 1 and "was not written by lvsgen" in built.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["lb1", "lb1/setup.sh"]


@pytest.mark.parametrize("case", error_cases(), ids=lambda p: p.name)
def test_invalid_input_is_reported_as_build_reports_it(case: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "cluster.json").write_bytes((case / "cluster.json").read_bytes())
    run = lvsgen("build", "--check", "cluster.json", "-o", "out", cwd=work)
    assert run.stderr == (case / "stderr").read_text()
    assert run.returncode == int((case / "exit_code").read_text())
    assert run.stdout == "" and not (work / "out").exists()


def test_help_documents_check_and_its_exit_codes() -> None:
    run = lvsgen("build", "--help")
    assert run.returncode == 0
    assert "--check" in run.stdout and "Exit codes" in run.stdout and "files that differ" in run.stdout


# --- --check writes nothing ---------------------------------------------------------------------
def listing(folder: Path) -> dict[str, tuple[int, int, int, int, int]]:
    """Every entry below folder, itself included: (inode, mode, size, mtime, ctime) in ns. A
    folder's mtime changes when an entry is made in it, even one removed again at once, so a
    temporary file that came and went shows too."""
    out = {}
    for path in [folder, *sorted(folder.rglob("*"))]:
        st = path.lstat()
        out[path.relative_to(folder).as_posix()] = (st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return out


def scenarios(tmp_path: Path, src: Path, out: Path) -> Iterator[Path]:
    """The trees --check looks at, one after another: up to date, changed in every way it
    reports, missing, and one it refuses."""
    yield out
    (out / "lb1/setup.sh").write_text("edited\n")
    (out / "rs1/setup.sh").chmod(0o700)
    (out / "rs2/lvsgen.sh").unlink()
    (out / "lb2/etc/lvsgen/.ipvsadm.rules.lvsgen-old").write_text("left over")
    doc = json.loads(src.read_text())
    del doc["hosts"]["rs4"]
    for vip in doc["vips"].values():
        for svc in vip["services"]:
            svc["real_servers"] = [r for r in svc["real_servers"] if r.get("host") != "rs4"]
    src.write_text(json.dumps(doc))
    yield out
    yield tmp_path / "missing"
    refused = tmp_path / "refused"
    (refused / "lb1").mkdir(parents=True)
    (refused / "lb1/foreign").write_text("x")
    yield refused


def test_check_writes_nothing(built: tuple[Path, Path], tmp_path: Path) -> None:
    src, out = built
    for n, target in enumerate(scenarios(tmp_path, src, out)):
        before = listing(tmp_path)
        run = lvsgen("build", "--check", str(src), "-o", str(target))
        assert run.returncode == (0 if n == 0 else 1), run.stderr
        assert listing(tmp_path) == before, f"scenario {n}: --check changed the tree"


class NoWrites:
    """Stands in for every function that could make, change or remove a file or folder."""

    OS = ("mkdir", "makedirs", "replace", "rename", "renames", "link", "symlink", "unlink", "remove", "rmdir",
          "chmod", "fchmod", "chown", "write", "truncate", "ftruncate", "utime", "mkfifo", "mknod")

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.calls: list[str] = []
        for name in self.OS:
            if hasattr(os, name):
                monkeypatch.setattr(os, name, self._refuse(f"os.{name}"))
        for mod, name in ((shutil, "copy2"), (shutil, "copyfile"), (shutil, "rmtree"), (shutil, "move"),
                          (tempfile, "mkstemp"), (tempfile, "mkdtemp"), (tempfile, "NamedTemporaryFile"),
                          (tempfile, "TemporaryDirectory")):
            monkeypatch.setattr(mod, name, self._refuse(f"{mod.__name__}.{name}"))
        real_os_open, real_open = os.open, builtins.open

        def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND):
                return self._refuse(f"os.open({path!r}, {flags:#o})")()
            return real_os_open(path, flags, *args, **kwargs)

        def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if any(c in mode for c in "wax+"):
                return self._refuse(f"open({file!r}, {mode!r})")()
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(os, "open", os_open)
        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)

    def _refuse(self, what: str) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(what)
            raise PermissionError(f"--check tried to write: {what} {args!r}")

        return refuse


def test_check_does_not_even_try_to_write(built: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process, with every writing function replaced by one that refuses: --check gives
    its answer without calling any of them, in every scenario."""
    from lvsgen import cli

    src, out = built
    for n, target in enumerate(scenarios(tmp_path, src, out)):
        with monkeypatch.context() as m:
            guard = NoWrites(m)
            result = CliRunner(env={"LVSGEN_DEBUG": None}).invoke(cli.app, ["build", "--check", str(src), "-o", str(target)])
        assert guard.calls == [], f"scenario {n}: {guard.calls}"
        assert result.exit_code == (0 if n == 0 else 1), result.output
        assert "internal error" not in result.output and "tried to write" not in result.output, result.output
