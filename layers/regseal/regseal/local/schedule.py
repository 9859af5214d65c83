"""A stand-in for an EventBridge schedule: invoke a handler every so often.

The deployed TUF function also runs on a schedule (e.g. hourly) to re-sign
snapshot and timestamp before they expire; the local stack does the same, so
a stack left running for days keeps serving metadata that verifies.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from regseal.local.background import BackgroundLoop
from regseal.local.runtime import Handler, LambdaContext

logger = logging.getLogger(__name__)


def scheduled_event(rule: str, *, region: str) -> dict[str, Any]:
    """The event an EventBridge schedule rule named ``rule`` delivers now."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:123456789012:rule/{rule}"],
        "detail": {},
    }


class Schedule(BackgroundLoop):
    """Invokes one handler every ``interval`` seconds on a thread.

    The first invocation comes one interval after :meth:`start`. A failing
    invocation is logged; the next one comes on time, as with EventBridge.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        interval: float,
        rule: str,
        function_name: str,
        region: str,
    ) -> None:
        super().__init__(f"{rule}-schedule")
        self._handler = handler
        self._interval = interval
        self._rule = rule
        self._function_name = function_name
        self._region = region

    def invoke_once(self) -> Any:
        """Deliver one scheduled event now; return the handler's response."""
        context = LambdaContext.for_invocation(self._function_name, region=self._region)
        return self._handler(scheduled_event(self._rule, region=self._region), context)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self.invoke_once()
            except Exception:
                logger.warning(
                    "scheduled %s raised", self._function_name, exc_info=True
                )
