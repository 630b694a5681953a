"""Shared test settings.

LVSGEN_NO_SKIP=1 (set by tests/run, and so by CI) turns every skipped test into a failure:
a test bed that is missing must not pass for green.

engine_file: the host engine every host gets (lvsgen.engine), written once per session, for the
tests that source it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lvsgen import engine  # noqa: E402


@pytest.fixture(scope="session")
def engine_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The assembled engine as a file, in a folder with a space in its name."""
    path = tmp_path_factory.mktemp("assembled engine") / "lvsgen.sh"
    path.write_text(engine.text(), encoding="utf-8")
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("LVSGEN_NO_SKIP") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but LVSGEN_NO_SKIP=1 forbids skips: {reason}"
