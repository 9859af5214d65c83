"""Crash at every write of a seal, check, re-deliver, check again.

For each scenario the writes of one complete seal are counted first (S3 puts,
deletes, copies and multipart calls, and KMS Encrypt). Then, for every write
N and each way of failing (see tests.support.faults), a fresh bucket gets the
same push, the seal fails at write N, and:

- mid-way, every tag still resolves and pulls (its manifest, blobs and links
  exist; a sealed one decrypts) and points at its pushed image or at a seal
  of it: nothing is lost, nothing rolled back;
- after the events are delivered again, the registry is finished: every tag
  sealed, every sealed layer decrypts, no plaintext reachable.
"""

from __future__ import annotations

import pytest

from regseal.errors import RegsealError
from tests.reliability.scenarios import SCENARIOS, tag_problems
from tests.support.faults import MATRIX_MODES, Crash, FaultPlan, FaultyKms, FaultyStore


def complete_writes(rig, scenario) -> list[str]:
    """The writes of a seal that nothing interrupts."""
    reg = rig.registry()
    pushed = scenario.push(reg)
    plan = FaultPlan()
    sealer = rig.sealer(
        FaultyStore(reg.store, plan), FaultyKms(rig.kms, plan), scenario.clock
    )
    for event in pushed.events:
        sealer.handle(event)
    assert rig.check(reg.store, finished=True, fast=True).ok
    return plan.writes


def crash_case(rig, scenario, mode: str, n: int) -> list[str]:
    """Fail write ``n``; return what went wrong (nothing, when all holds)."""
    reg = rig.registry()
    pushed = scenario.push(reg)
    plan = FaultPlan(fail_at=n, mode=mode)
    faulty = rig.sealer(
        FaultyStore(reg.store, plan), FaultyKms(rig.kms, plan), scenario.clock
    )
    pending = list(pushed.events)
    while pending:
        try:
            faulty.handle(pending[0])
        except (Crash, RegsealError):
            break
        pending.pop(0)
    where = f"{scenario.name} {mode} at write {n} ({plan.writes[n - 1]})"
    problems = []
    if not plan.fired:
        problems.append(f"{where}: the fault never fired")

    mid = rig.check(reg.store, finished=False, fast=True)
    problems += [f"{where}, mid-way: {v}" for v in mid.violations]
    problems += [
        f"{where}, mid-way: {p}" for p in tag_problems(reg, pushed, sealed=False)
    ]

    healthy = rig.sealer(reg.store, clock=scenario.clock)
    for event in pending:
        try:
            healthy.handle(event)
        except RegsealError as exc:
            problems.append(f"{where}, retry of {event.key}: {exc!r}")
    final = rig.check(reg.store, finished=True, fast=True)
    problems += [f"{where}, after retry: {v}" for v in final.violations]
    problems += [
        f"{where}, after retry: {p}" for p in tag_problems(reg, pushed, sealed=True)
    ]
    return problems


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_crash_at_every_write_then_retry_keeps_every_invariant(
    rig, scenario, record_property
):
    writes = complete_writes(rig, scenario)
    problems: list[str] = []
    cases = 0
    failed = 0
    for mode in MATRIX_MODES:
        for n in range(1, len(writes) + 1):
            cases += 1
            found = crash_case(rig, scenario, mode, n)
            failed += bool(found)
            problems += found
    record_property("cases", cases)
    record_property("passed", cases - failed)
    print(
        f"{scenario.name}: {len(writes)} writes per seal, {cases} crash points "
        f"tried, {failed} broke an invariant"
    )
    assert problems == [], "\n".join(problems)
