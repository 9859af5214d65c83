"""A stand-in for the Lambda runtime: load a function's handler in this process.

The functions live in the repository as ``functions/<name>/app.py``, next to the
``layers/regseal`` package (installed editable). A handler is loaded from its
file as Lambda would: with the deployed function's environment in place before
the module is imported, and its directory on ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import regseal
from regseal.errors import LocalStackError
from regseal.local.resources import (
    DIGEST_PUSH_GRACE_SECONDS,
    DUMMY_ACCESS_KEY_ID,
    DUMMY_SECRET_ACCESS_KEY,
)

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]

SEAL_FUNCTION = "seal"
TUF_FUNCTION = "tuf"
# Variables that would point boto3 away from the dummy credentials.
_CREDENTIAL_OVERRIDES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN")


def repository_root() -> Path:
    """The checkout that holds the installed package (layers/regseal/regseal)."""
    return Path(regseal.__file__).resolve().parents[3]


def function_path(name: str) -> Path:
    """Where the handler module of function ``name`` lives."""
    return repository_root() / "functions" / name / "app.py"


def aws_environment(*, endpoint: str, region: str) -> dict[str, str]:
    """The standard AWS variables that aim every SDK client at moto."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
    }


def seal_environment(
    *,
    endpoint: str,
    region: str,
    bucket: str,
    registry_root: str,
    state_prefix: str,
    policy_location: str,
    max_receive_count: int | None = None,
    digest_push_grace: int = DIGEST_PUSH_GRACE_SECONDS,
    registry_api: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment the deployed seal function gets, aimed at the stack.

    Args:
        max_receive_count: the event queue's ``maxReceiveCount``, so that the
            function logs a failure as an error once, on the last delivery.
        digest_push_grace: seconds before a manifest pushed by digest is
            sealed; it must fit in the queue's retries (the stack's by default).
        registry_api: the registry-API mode variables (``REGSEAL_WRITE_BACK``,
            ``REGSEAL_REGISTRY_URL``, ``REGSEAL_REGISTRY_CREDENTIALS``), if
            the stack runs in that mode.
    """
    environment = {
        **aws_environment(endpoint=endpoint, region=region),
        "REGSEAL_BUCKET": bucket,
        "REGSEAL_REGISTRY_ROOT": registry_root,
        "REGSEAL_STATE_PREFIX": state_prefix,
        "REGSEAL_POLICY": policy_location,
        "REGSEAL_DIGEST_PUSH_GRACE_SECONDS": str(digest_push_grace),
        **(registry_api or {}),
        "POWERTOOLS_SERVICE_NAME": "regseal",
    }
    if max_receive_count is not None:
        environment["REGSEAL_MAX_RECEIVE_COUNT"] = str(max_receive_count)
    return environment


def tuf_target_environment(
    *, bucket: str, prefix: str, queue_url: str
) -> dict[str, str]:
    """What the seal function needs to record TUF targets and notify the TUF
    function (see :class:`regseal.settings.Settings`)."""
    return {
        "REGSEAL_TUF_BUCKET": bucket,
        "REGSEAL_TUF_PREFIX": prefix,
        "REGSEAL_TUF_QUEUE_URL": queue_url,
    }


def tuf_environment(
    *, endpoint: str, region: str, bucket: str, prefix: str
) -> dict[str, str]:
    """The environment the deployed TUF function gets, aimed at the stack.

    The snapshot and timestamp keys are left to root (the function follows
    rotations), and the expiry periods and windows keep their defaults (see
    :mod:`regseal.tuf.settings`). There is no ``POWERTOOLS_SERVICE_NAME``:
    both functions share this process's environment here, and the TUF
    function's logger names its service itself.
    """
    return {
        **aws_environment(endpoint=endpoint, region=region),
        "REGSEAL_TUF_BUCKET": bucket,
        "REGSEAL_TUF_PREFIX": prefix,
    }


def use_environment(environment: Mapping[str, str]) -> None:
    """Set ``environment`` in this process, dropping credential overrides."""
    for name in _CREDENTIAL_OVERRIDES:
        os.environ.pop(name, None)
    os.environ.update(environment)


def load_handler(path: Path, environment: Mapping[str, str]) -> Handler:
    """Set ``environment`` in this process, then import ``handler`` from ``path``.

    The environment is set first because handler modules read it at import
    time (clients, loggers, configuration), as they may on Lambda.

    Raises:
        LocalStackError: the file does not exist, fails to import, or defines
            no callable ``handler``.
    """
    path = path.resolve()
    if not path.is_file():
        raise LocalStackError(
            f"expected a function module with handler(event, context) at {path}, "
            "but there is no such file"
        )

    use_environment(environment)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))

    module_name = f"regseal_function_{path.parent.name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise LocalStackError(f"expected an importable Python file at {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise LocalStackError(f"importing {path} failed: {exc!r}") from exc

    handler = getattr(module, "handler", None)
    if not callable(handler):
        raise LocalStackError(f"expected {path} to define a callable 'handler'")
    logger.debug("loaded handler from %s", path)
    return cast(Handler, handler)


def serialized(handler: Handler) -> Handler:
    """``handler`` with one invocation at a time, as reserved concurrency 1.

    The TUF function runs that way on Lambda; here its queue pump and its
    schedule share one such handler.
    """
    lock = threading.Lock()

    def invoke(event: dict[str, Any], context: Any) -> Any:
        with lock:
            return handler(event, context)

    return invoke


@dataclass(frozen=True)
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools use."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 1024
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"
    deadline: float = 0.0

    @classmethod
    def for_invocation(
        cls, function_name: str, *, region: str, timeout_seconds: float = 900.0
    ) -> LambdaContext:
        """A fresh context, as Lambda makes for each invocation."""
        return cls(
            function_name=function_name,
            invoked_function_arn=(
                f"arn:aws:lambda:{region}:123456789012:function:{function_name}"
            ),
            log_group_name=f"/aws/lambda/{function_name}",
            deadline=time.monotonic() + timeout_seconds,
        )

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))
