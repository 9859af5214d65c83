"""Bringing a message that failed on bad input back soon.

A message that fails is delivered again once the queue's visibility
timeout passes, and moved to the dead-letter queue after ``maxReceiveCount``
deliveries. The timeout must cover the longest seal (the template sets 1,830
s), so on AWS a message that fails the same way every time would take hours
to be parked, and its alarm would come that late. Bad input fails the same
way every time: for those errors the function shortens the message's
visibility to a few seconds before failing it, so the remaining deliveries
come at once and the queue's own redrive policy parks it. Nothing else
changes: the queue still decides when a message is dead, and every other
failure (S3, KMS, a race) keeps the long wait.

Public API: :data:`BAD_INPUT`, :func:`hasten`.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from regseal.errors import FormatError, IntegrityError

logger = logging.getLogger(__name__)

BAD_INPUT: tuple[type[Exception], ...] = (FormatError, IntegrityError)
"""Failures that another delivery of the same message repeats exactly: a
malformed event, link or manifest, a blob that does not match its digest."""


def hasten(sqs: Any, queue_url: str, receipt_handle: str, seconds: int) -> bool:
    """Make the failed message visible again in ``seconds``; best effort.

    Returns:
        Whether the queue took the change. A refusal (no permission, an
        expired receipt handle) only leaves the queue's own timeout in place.
    """
    try:
        sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )
    except (BotoCoreError, ClientError) as exc:
        logger.warning(
            "could not shorten the visibility of a failed message on %s: %s",
            queue_url,
            exc,
        )
        return False
    logger.debug("failed message visible again in %d s on %s", seconds, queue_url)
    return True
