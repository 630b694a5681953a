"""Error goldens: an invalid input gives exactly this stderr and exit code, and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from cases import REGEN, error_cases, lvsgen


@pytest.mark.parametrize("case", error_cases(), ids=lambda p: p.name)
def test_error_golden(case: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "cluster.json").write_bytes((case / "cluster.json").read_bytes())
    run = lvsgen("build", "cluster.json", "-o", "out", cwd=work)
    hint = f"\nIf the change is intended, regenerate with: {REGEN}"
    assert run.stderr == (case / "stderr").read_text(), run.stderr + hint
    assert run.returncode == int((case / "exit_code").read_text()), hint
    assert "Traceback" not in run.stderr
    assert not (work / "out").exists(), "an invalid input must write nothing"
    assert run.stdout == ""


@pytest.mark.parametrize("case", error_cases(), ids=lambda p: p.name)
def test_validate_agrees_with_build(case: Path) -> None:
    run = lvsgen("validate", "cluster.json", cwd=case)
    assert run.returncode == 1
    assert run.stderr == (case / "stderr").read_text()


# --- the reader's own limits: input that would crash Python's parser is an input error -----------
@pytest.mark.parametrize(
    "text, where, words",
    [
        ("[" * 65 + "]" * 65, "1:65", "nested more than 64 levels"),
        ("[" * 64 + "]" * 64, None, None),  # the limit itself is fine
        ('{"a": "' + "[" * 500 + '"}', None, None),  # brackets in a string do not nest
        ('{"a": "\\"' + "{" * 500 + '"}', None, None),  # nor after an escaped quote
        ('{"a": -' + "9" * 21 + "}", "1:7", "21 digits"),
        ('{"a": ' + "9" * 20 + "}", None, None),
        ('{"a": 1e400}', "1:7", "1e400 is too large"),
        ('{"a": -1.5e308, "b": 2.5}', None, None),
    ],
)
def test_reader_limits(text: str, where: str | None, words: str | None) -> None:
    from lvsgen import reader
    from lvsgen.errors import InputError

    if where is None:
        reader.parse(text)
        return
    with pytest.raises(InputError) as caught:
        reader.parse(text)
    (problem,) = caught.value.problems
    assert problem.where == where and words in problem.message
