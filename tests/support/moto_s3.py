"""Test-only fix: make moto's conditional PutObject atomic across threads.

moto checks ``If-None-Match``/``If-Match`` and then stores the object in two
separate steps without a lock (``S3Response.put_object``), so two threads can
both pass the check. S3 itself decides conditional writes atomically. The
concurrency tests run real conditional writes through moto with this lock
around the whole request, so that a lost update in them is regseal's fault,
not the emulator's.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any
from unittest import mock

from moto.s3.responses import S3Response

_lock = threading.Lock()
_put_object = S3Response.put_object


def _locked_put_object(self: Any) -> Any:
    with _lock:
        return _put_object(self)


@contextlib.contextmanager
def atomic_conditional_writes() -> Iterator[None]:
    """Within the block, moto's PutObject checks and writes under one lock."""
    with mock.patch.object(S3Response, "put_object", _locked_put_object):
        yield
