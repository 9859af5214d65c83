"""The bad-input corpus, table-driven (cases and outcomes in corpus.py).

Each message body goes through what the seal function does with an SQS
record: parse it into events, hand each to the Sealer. Errors must be the
expected type and name the input; skips and ignores give the documented
reason; for all of them the bucket is unchanged. Valid edge cases must seal
and leave a finished registry.
"""

from __future__ import annotations

import pytest

from regseal.digest import Digest
from regseal.errors import RegsealError
from regseal.events import parse_body
from regseal.seal import Outcome
from tests.reliability import corpus
from tests.reliability.corpus import CASES


def test_corpus_has_forty_cases_and_unique_ids():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


def assert_only_ciphertext_added(reg, before, after):
    """Nothing changed; what is new is ciphertext no manifest references."""
    assert {k: after[k] for k in before} == before
    plaintext = {Digest.of(data).hex for data in before.values()}
    for key in sorted(set(after) - set(before)):
        if key.startswith("regseal/sealed/team-a/app/layers/"):
            continue
        if key.startswith(reg.layout.repositories_prefix):
            assert "/_layers/sha256/" in key, key
            digest = Digest.parse(after[key].decode())
            assert reg.layout.blob_data(digest) in after
            assert reg.layout.blob_data(digest) not in before
            continue
        assert key.startswith(reg.layout.base + "blobs/"), key
        assert Digest.of(after[key]).hex not in plaintext


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_input_gets_its_expected_outcome_and_changes_nothing_else(rig, case):
    reg = rig.registry()
    given = case.build(reg)
    before = reg.snapshot()
    sealer = rig.sealer(reg.store)

    def deliver():
        return [sealer.handle(event) for event in parse_body(given.body)]

    expect = case.expect
    if isinstance(expect, corpus.Error):
        with pytest.raises(RegsealError) as caught:
            deliver()
        message = str(caught.value)
        assert type(caught.value) is expect.type, repr(caught.value)
        for word in (*expect.words, *given.names):
            assert word in message, f"{word!r} not in {message!r}"
        if expect.leaves_ciphertext:
            assert_only_ciphertext_added(reg, before, reg.snapshot())
            return
    elif isinstance(expect, corpus.NoEvents):
        assert deliver() == []
    elif isinstance(expect, corpus.Skip | corpus.Ignore):
        [result] = deliver()
        wanted = Outcome.SKIPPED if isinstance(expect, corpus.Skip) else Outcome.IGNORED
        assert (result.outcome, result.reason) == (wanted, expect.reason)
    else:
        [result] = deliver()
        assert result.outcome is Outcome.SEALED, result
        report = rig.check(reg.store, finished=True, kms=True)
        assert report.violations == (), "\n".join(map(str, report.violations))
        if expect.check is not None:
            sealed = reg.registry.manifest(Digest.parse(result.sealed_digest))
            expect.check(given, sealed)
        return
    assert reg.snapshot() == before
