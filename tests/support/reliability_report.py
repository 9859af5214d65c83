"""A pytest plugin that writes the reliability table into docs/reliability.md.

``pytest --reliability-report docs/reliability.md`` (what ``make reliability``
runs) counts, per scenario family, the cases tried and the cases that held,
and replaces the part of the file between the two marker lines with the
table. A test counts as one case unless it records ``cases`` and ``passed``
with ``record_property`` (the crash suite counts crash points that way). A
test whose teardown fails (the leak watch found a secret in its logs) counts
as failed, and the watch's row sums every test that ran under it.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

START = "<!-- reliability-table:start -->"
END = "<!-- reliability-table:end -->"

FAMILIES = {
    "test_invariants.py": "Invariant checker: each invariant broken on purpose",
    "test_invariants_cli.py": "Invariant checker: each invariant broken on purpose",
    "test_crash.py": "Crash injection: every write of a seal, killed or failing",
    "test_crash_tuf.py": "Crash injection with TUF targets, checked by the TUF client",
    "test_races.py": "Races on moto with atomic conditional writes",
    "test_dead_letter.py": "Dead-letter queue and loop-back through SQS",
    "test_tampering.py": "Tampering with sealed layers",
    "test_secrets.py": "Leak watch finds planted secrets",
    "test_regressions.py": "Regressions: one test per bug found",
    "test_load.py": "Load on the local stack (50 images, skopeo)",
}
CORPUS_FAMILIES = {
    "bad input": "Bad-input corpus: errors and skips, bucket unchanged",
    "valid edge cases": "Bad-input corpus: valid edge cases that must seal",
    "artifacts": "Bad-input corpus: artifacts (signatures, attestations, charts)",
}
WATCH_ROW = "No secret in any log record (every test of the run)"


@dataclass
class Row:
    cases: int = 0
    passed: int = 0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-report",
        metavar="FILE",
        default=None,
        help="write the reliability table into FILE (between its marker lines)",
    )


class _Collector:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.families: dict[str, str] = {}
        self.rows: dict[str, Row] = defaultdict(Row)
        self.calls: dict[str, tuple[int, int]] = {}
        self.teardown_failed: set[str] = set()
        self.tests = 0
        self.started = time.monotonic()

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            family = FAMILIES.get(Path(str(item.fspath)).name)
            callspec = getattr(item, "callspec", None)
            case = callspec.params.get("case") if callspec else None
            if getattr(case, "family", None) in CORPUS_FAMILIES:
                family = CORPUS_FAMILIES[case.family]
            if family is not None:
                self.families[item.nodeid] = family

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            self.tests += 1
            properties = dict(report.user_properties)
            cases = int(properties.get("cases", 1))
            passed = int(properties.get("passed", cases)) if report.passed else 0
            self.calls[report.nodeid] = (cases, passed)
        elif report.when == "teardown" and report.failed:
            self.teardown_failed.add(report.nodeid)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        for nodeid, (cases, passed) in self.calls.items():
            family = self.families.get(nodeid)
            if nodeid in self.teardown_failed:
                passed = 0
            if family is not None:
                self.rows[family].cases += cases
                self.rows[family].passed += passed
        watch = self.rows[WATCH_ROW]
        watch.cases = self.tests
        watch.passed = self.tests - len(self.teardown_failed)
        write_table(self.path, self.rows, time.monotonic() - self.started)


def table(rows: dict[str, Row], seconds: float) -> str:
    order = [*FAMILIES.values(), *CORPUS_FAMILIES.values(), WATCH_ROW]
    lines = [
        "| scenario family | cases | passed |",
        "| --- | ---: | ---: |",
    ]
    total = Row()
    for family in sorted(rows, key=lambda f: order.index(f) if f in order else 99):
        row = rows[family]
        lines.append(f"| {family} | {row.cases} | {row.passed} |")
        if family != WATCH_ROW:
            total.cases += row.cases
            total.passed += row.passed
    lines.append(f"| **all families** | **{total.cases}** | **{total.passed}** |")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines.append("")
    lines.append(f"Written by `make reliability` on {stamp}, in {seconds:.0f} s.")
    return "\n".join(lines)


def write_table(path: Path, rows: dict[str, Row], seconds: float) -> None:
    block = f"{START}\n{table(rows, seconds)}\n{END}"
    text = path.read_text() if path.exists() else f"# Reliability\n\n{START}\n{END}\n"
    if START not in text:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    path.write_text(pattern.sub(lambda _m: block, text, count=1))


def pytest_configure(config: pytest.Config) -> None:
    target = config.getoption("--reliability-report")
    if target:
        config.pluginmanager.register(_Collector(Path(target)), "reliability-report")
