"""Hash bins: how a team role that grew too large is split (TAP 15).

A team role holds its targets itself until it would hold more than the team's
bin threshold (default 2048 targets, about 950 KB of metadata with
regseal's custom fields). The writer that
crosses the threshold splits it: it writes ``2**bits`` new bins, each holding
the targets whose sha256(path) starts with its index, and then version ``N+1``
of the team role with no targets of its own and a succinct delegation to the
bins, signed by the same team keys. The bins are written first, so the team
role never delegates to a bin that does not exist.

Bin names carry the team role version that delegates to them:
``<team>.bins-v<N+1>-<hex>`` (``team-a.bins-v8-00`` ... ``team-a.bins-v8-ff``
for 8 bits). So every split writes fresh names, all at version 1 with
``If-None-Match``, and two writers splitting from the same version collide on
the first bin. The loser then writes the team role ``N+1`` flat (one target
over the threshold, which is valid) instead of waiting: if the splitter already
finished, that write loses and the loser retries into the bins; if the
splitter is slow or crashed, the flat write wins, the splitter's team write
loses, and its bins are never delegated to. No writer ever builds on bins of a
split that did not complete, so no target is lost.

Why this shape: clients download one bin per lookup instead of the whole team
role, while every bin adds one entry to snapshot; tuf.md §8 puts the optimum
near ``2.9 * sqrt(N)`` bins. 256 bins keep bins near 100 KB at 100,000 targets
and snapshot near 34 KB.

NOTE: bins are not split again. A team that outgrows ``bin_threshold * 2**bits``
targets (524,288 with the defaults) still works, with larger bins; re-binning
would be a second split into fresh names from the bins' content.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tuf.api.metadata import SuccinctRoles, TargetFile


def bin_prefix(team: str, team_version: int) -> str:
    """The name prefix of the bins delegated by ``team_version`` of a team role."""
    return f"{team}.bins-v{team_version}"


def succinct_roles(
    team: str, team_version: int, keyids: Sequence[str], threshold: int, bits: int
) -> SuccinctRoles:
    """The succinct delegation from a team role version to its bins."""
    return SuccinctRoles(
        keyids=list(keyids),
        threshold=threshold,
        bit_length=bits,
        name_prefix=bin_prefix(team, team_version),
    )


def partition(
    succinct: SuccinctRoles, targets: Mapping[str, TargetFile]
) -> dict[str, dict[str, TargetFile]]:
    """Every bin name mapped to the targets it holds (empty bins included)."""
    bins: dict[str, dict[str, TargetFile]] = {name: {} for name in succinct.get_roles()}
    for path, target in targets.items():
        bins[succinct.get_role_for_target(path)][path] = target
    return bins
