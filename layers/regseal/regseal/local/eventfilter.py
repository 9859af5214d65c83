"""Event filtering for the local stack: which messages reach the seal function.

Lambda's SQS event source mapping can filter messages; those that do not
match are deleted without invoking the function. The stack uses the same
idea to run as Harbor 2.15 and later would: such a registry stores a push by
tag as a push by digest and keeps the tag in its database, so storage never
gets a tag link and only revision events reach the seal (docs/harbor.md).
The stack's registry (distribution) still writes tag links; the filter drops
their events before the handler sees them.
"""

from __future__ import annotations

from collections.abc import Callable

from regseal.errors import FormatError
from regseal.events import parse_body
from regseal.layout import LinkKind, RegistryLayout

MessageFilter = Callable[[str], bool]
"""Takes an SQS message body; True when the function is to receive it."""

_TAG_LINKS = (LinkKind.TAG, LinkKind.TAG_INDEX)


def without_tag_events(layout: RegistryLayout) -> MessageFilter:
    """A filter that drops the events of tag links (``current`` and ``index``).

    A message the filter cannot read is kept, so that the handler reports it
    as it would on AWS.
    """

    def accept(body: str) -> bool:
        try:
            events = parse_body(body)
            links = [layout.parse_key(event.key) for event in events]
        except FormatError:
            return True
        return not links or any(
            link is None or link.kind not in _TAG_LINKS for link in links
        )

    return accept
