"""Hash bins: how a team role that grew too large is split (TAP 15).

A team role holds its targets itself until it would hold more than the team's
bin threshold (default 2048 targets, about 550 KB of metadata). The writer that
crosses the threshold splits it: it writes ``2**bits`` bins named
``<team>.bin-<hex>`` (``team-a.bin-00`` ... ``team-a.bin-ff`` for 8 bits), each
holding the targets whose sha256(path) starts with its index, and then a new
version of the team role with no targets of its own and a succinct delegation
to the bins, signed by the same team keys. The bins are written first, so the
team role never delegates to a bin that does not exist.

Why this shape: clients download one bin per lookup instead of the whole team
role, while every bin adds one entry to snapshot; tuf.md §8 puts the optimum
near ``2.9 * sqrt(N)`` bins. 256 bins keep bins near 100 KB at 100,000 targets
and snapshot near 34 KB.

NOTE: bins are not split again. A team that outgrows ``bin_threshold * 2**bits``
targets (524,288 with the defaults) still works, with larger bins; re-binning
needs a new team role layout and is left for when a team gets near it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tuf.api.metadata import SuccinctRoles, TargetFile


def bin_prefix(team: str) -> str:
    """The name prefix of a team's bins (``team-a.bin``)."""
    return f"{team}.bin"


def succinct_roles(
    team: str, keyids: Sequence[str], threshold: int, bits: int
) -> SuccinctRoles:
    """The succinct delegation from a team role to its bins."""
    return SuccinctRoles(
        keyids=list(keyids),
        threshold=threshold,
        bit_length=bits,
        name_prefix=bin_prefix(team),
    )


def partition(
    succinct: SuccinctRoles, targets: Mapping[str, TargetFile]
) -> dict[str, dict[str, TargetFile]]:
    """Every bin name mapped to the targets it holds (empty bins included)."""
    bins: dict[str, dict[str, TargetFile]] = {name: {} for name in succinct.get_roles()}
    for path, target in targets.items():
        bins[succinct.get_role_for_target(path)][path] = target
    return bins
