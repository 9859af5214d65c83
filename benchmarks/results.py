"""Rows of the benchmark table: a measurement, its reference, their ratio.

Every row compares something regseal does with a reference measured in the
same run, and says which way the ratio should go. The table prints as
Markdown so that a run can be pasted into docs/performance.md as it is.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
}
_SHOWN = {">=": "≥", "<=": "≤"}


@dataclass(frozen=True)
class Quantity:
    """A measured value with its unit, e.g. 612.0 MiB/s."""

    value: float
    unit: str

    def __str__(self) -> str:
        if self.unit in {"requests", "calls", "layers", "bytes"}:
            unit = self.unit[:-1] if self.value == 1 else self.unit
            return f"{self.value:,.0f} {unit}"
        if abs(self.value) >= 100:
            return f"{self.value:,.0f} {self.unit}"
        if abs(self.value) >= 10:
            return f"{self.value:.1f} {self.unit}"
        return f"{self.value:.2f} {self.unit}"


@dataclass(frozen=True)
class Row:
    """One line of the table.

    Attributes:
        key: a stable identifier (the smoke test looks for every key).
        measure: what regseal did, in words.
        value: regseal's number.
        against: what the reference is, in words.
        reference: the reference's number, or None where the row is a count
            held against a fixed target (e.g. KMS calls per layer).
        ratio: ``value / reference`` (or the count itself), shown as a factor.
        target: ``(">=" or "<=", threshold)`` for the ratio, if any.
        note: one short remark (settings, load, a caveat).
    """

    key: str
    measure: str
    value: Quantity
    against: str
    reference: Quantity | None
    ratio: float | None
    target: tuple[str, float] | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.target is None or self.ratio is None:
            return None
        comparison, threshold = self.target
        return _COMPARE[comparison](self.ratio, threshold)

    def cells(self) -> list[str]:
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}x"
        target = ""
        if self.target is not None:
            comparison, threshold = self.target
            mark = {True: "met", False: "missed", None: ""}[self.met]
            target = f"{_SHOWN[comparison]} {threshold:.2g} {mark}".strip()
        reference = "" if self.reference is None else str(self.reference)
        return [
            f"`{self.key}`",
            self.measure,
            str(self.value),
            self.against,
            reference,
            ratio,
            target,
            self.note,
        ]

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["met"] = self.met
        return data


def compare(
    key: str,
    measure: str,
    value: Quantity,
    against: str,
    reference: Quantity,
    *,
    target: tuple[str, float] | None = None,
    note: str = "",
) -> Row:
    """A row whose ratio is ``value / reference``."""
    ratio = value.value / reference.value if reference.value else None
    return Row(key, measure, value, against, reference, ratio, target, note)


def count(
    key: str,
    measure: str,
    value: Quantity,
    against: str,
    *,
    per: float | None = None,
    target: tuple[str, float] | None = None,
    note: str = "",
) -> Row:
    """A row of a count; the ratio is the count per ``per`` units, if given."""
    ratio = value.value / per if per else (value.value if target else None)
    return Row(key, measure, value, against, None, ratio, target, note)


HEADER = [
    "key",
    "regseal",
    "value",
    "against",
    "reference",
    "ratio",
    "target",
    "note",
]


def markdown(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
    ]
    for row in rows:
        cells = [cell.replace("|", "\\|") for cell in row.cells()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def dump(rows: Sequence[Row], context: dict[str, object]) -> str:
    """Rows and the run's context as JSON, for keeping a run."""
    return json.dumps(
        {"context": context, "rows": [row.to_json() for row in rows]}, indent=2
    )
