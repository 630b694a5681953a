"""The host engine's assembly (lvsgen.engine): from the parts in templates/host/ to the one
lvsgen.sh every host gets. What the engine does is tested in tests/test_host_lib.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cases import ROOT, golden_cases
from lvsgen import engine

HOST = ROOT / "templates" / "host"
SHELLCHECK = ["shellcheck", "--severity=style", "--shell=bash"]


def _shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not found: apt-get install shellcheck")


def test_every_host_folder_has_the_assembled_engine_byte_for_byte() -> None:
    engines = sorted(p for case in golden_cases() for p in (case / "expected").glob("*/lvsgen.sh"))
    assert len(engines) == sum(1 for case in golden_cases() for p in (case / "expected").iterdir() if p.is_dir())
    for path in engines:
        assert path.read_text(encoding="utf-8") == engine.text(), path


def test_the_engine_is_assembled_once_per_process() -> None:
    assert engine.text() is engine.text()


def test_the_engine_starts_with_the_fixed_header() -> None:
    text = engine.text()
    assert text.startswith(engine.HEADER)
    assert "assembled by lvsgen from templates/host/" in text.splitlines()[0]
    assert "do not edit" in text.splitlines()[0]


def test_every_part_is_listed_once_and_starts_where_its_line_says(tmp_path: Path) -> None:
    present = sorted(p.name for p in HOST.iterdir() if p.suffix in (".sh", ".awk"))
    assert sorted(engine.PARTS) == present
    assert len(set(engine.PARTS)) == len(engine.PARTS)
    text = engine.text()
    starts = [text.index(f"\n# --- templates/host/{name} ") for name in engine.PARTS]
    assert starts == sorted(starts), "the parts are assembled in the order PARTS gives"


def test_every_bash_part_is_bash_and_shellcheck_clean_on_its_own() -> None:
    """Each part alone, as its first line says (# shellcheck shell=bash): a global that another
    part sets or reads has its own disable on its line, which names that part."""
    parts = [HOST / name for name in engine.PARTS if name.endswith(".sh")]
    for part in parts:
        assert part.read_text().startswith("# shellcheck shell=bash"), part
        assert subprocess.run(["bash", "-n", str(part)]).returncode == 0, part
    _shellcheck()
    run = subprocess.run([*SHELLCHECK, *map(str, parts)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_assembled_engine_is_bash_and_shellcheck_clean(engine_file: Path) -> None:
    assert subprocess.run(["bash", "-n", str(engine_file)]).returncode == 0
    _shellcheck()
    run = subprocess.run([*SHELLCHECK, str(engine_file)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


# --- one part per concern, each using only the parts before it -------------------------------------


def _code(name: str) -> str:
    """A bash part without its comments (whole-line ones, and ' # ...' at the end of a line)."""
    text = (HOST / name).read_text()
    return "\n".join(re.sub(r" # .*$", "", line) for line in text.splitlines() if not line.lstrip().startswith("#"))


def test_each_part_uses_only_the_parts_before_it(engine_file: Path) -> None:
    """The functions a part calls, and the awk programs it runs, are defined in it or in a part
    PARTS puts before it: the dependencies go one way, and the order lists them."""
    where: dict[str, str] = {}
    for name in engine.PARTS:
        if name.endswith(".awk"):
            where[engine.awk_variable(name)] = name
        else:
            for function in re.findall(r"^([a-z_]+)\(\) \{", (HOST / name).read_text(), re.M):
                assert function not in where, f"{function} is defined in {where[function]} and {name}"
                where[function] = name
    sourced = subprocess.run(["bash", "-c", 'source "$1" && declare -F', "engine", str(engine_file)], capture_output=True, text=True)
    assert {line.split()[-1] for line in sourced.stdout.splitlines()} == {f for f in where if not f.startswith("LVS_AWK_")}
    backwards = []
    for index, name in enumerate(engine.PARTS):
        if name.endswith(".awk"):
            continue
        for used in sorted(set(re.findall(r"\b(lvs_[a-z_]+|lvsgen_main|LVS_AWK_[A-Z_]+)\b", _code(name)))):
            assert used in where, f"{name} uses {used}, which no part defines"
            if engine.PARTS.index(where[used]) > index:
                backwards.append(f"{name} uses {used} from {where[used]}, which comes after it")
    assert not backwards, "\n".join(backwards)


def test_main_names_the_part_that_holds_each_step() -> None:
    """'error in step NAME': main.sh's table gives the part of each step, and each step is set
    (lvs_step NAME) only in that part."""
    table = re.search(r"its code\n# is in the part this table gives:\n((?:#   .*\n)+)", (HOST / "main.sh").read_text())
    assert table, "main.sh lists the steps and their parts"
    said: dict[str, str] = {}
    for line in table[1].splitlines():
        steps, part = re.fullmatch(r"#   (.+?)\s{2,}(\S+\.sh)\b.*", line).groups()
        for step in steps.split(", "):
            said[step] = part
    found: dict[str, set[str]] = {}
    for name in engine.PARTS:
        if name.endswith(".sh"):
            for step in re.findall(r"\b(?:lvs_step |LVS_STEP=)([a-z-]+)", _code(name)):
                found.setdefault(step, set()).add(name)
    found.pop("start")  # the value before the first step: the arguments, read in main.sh
    assert said.pop("start") == "main.sh"
    assert {step: {part} for step, part in said.items()} == found


# --- what the assembler refuses ------------------------------------------------------------------


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "host parts"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_an_awk_file_with_a_single_quote_is_refused_by_name_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _folder(tmp_path, {"a.sh": "# shellcheck shell=bash\nf() { :; }\n", "b-c.awk": "{ print }\n# it's\n"})
    monkeypatch.setattr(engine, "PARTS", ("a.sh", "b-c.awk"))
    with pytest.raises(engine.EngineError, match=r"b-c\.awk:2: a single quote"):
        engine.assemble(folder)


def test_an_awk_file_becomes_a_single_quoted_variable_named_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _folder(tmp_path, {"a.sh": "# shellcheck shell=bash\nf() { :; }\n", "b-c.awk": '{ print $1 "\\047" }\n'})
    monkeypatch.setattr(engine, "PARTS", ("a.sh", "b-c.awk"))
    text = engine.assemble(folder)
    assert text.startswith(engine.HEADER)
    run = subprocess.run(["bash", "-c", 'source /dev/stdin; printf "%s" "$LVS_AWK_B_C"'], input=text, capture_output=True, text=True)
    assert run.stdout == "\n{ print $1 \"\\047\" }\n", run.stderr


@pytest.mark.parametrize(
    ("files", "parts", "message"),
    [
        ({"a.sh": "f() { :; }\n"}, ("a.sh",), r"a\.sh:1: a part must start with '# shellcheck shell=bash'"),
        ({"a.sh": "# shellcheck shell=bash\n", "b.sh": "# shellcheck shell=bash\n"}, ("a.sh",), r"b\.sh: not in lvsgen\.engine\.PARTS"),
        ({"a.sh": "# shellcheck shell=bash\n"}, ("a.sh", "b.awk"), r"b\.awk: cannot read"),
        ({"a.sh": "# shellcheck shell=bash"}, ("a.sh",), r"a\.sh: the last line has no newline"),
    ],
    ids=["no directive", "unlisted", "missing", "no final newline"],
)
def test_a_part_that_does_not_fit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str], parts: tuple[str, ...], message: str) -> None:
    folder = _folder(tmp_path, files)
    monkeypatch.setattr(engine, "PARTS", parts)
    with pytest.raises(engine.EngineError, match=message):
        engine.assemble(folder)
