"""An ngclient fetcher for metadata in S3 (``s3://bucket/prefix/N.ROLE.json``).

python-tuf's client asks its fetcher for URLs built from the metadata base URL.
For an ``s3://`` base URL this fetcher reads the object with the standard AWS
environment's credentials. A missing object must surface as HTTP 404, because
the client's root update loop stops on 403/404 (``N+1.root.json`` not found
means the current root is the newest); access denied surfaces as 403.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlparse

from botocore.exceptions import BotoCoreError, ClientError
from tuf.api.exceptions import DownloadError, DownloadHTTPError
from tuf.ngclient import FetcherInterface

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024


class S3Fetcher(FetcherInterface):
    """Fetches ``s3://`` URLs for ngclient's Updater.

    Args:
        client: a boto3 S3 client (default: one from the environment).
    """

    def __init__(self, client: Any | None = None) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.bytes_fetched = 0
        self.requests = 0

    def _s3(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def _fetch(self, url: str) -> Iterator[bytes]:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise DownloadError(f"expected an s3://bucket/key URL, got {url!r}")
        key = unquote(parsed.path.lstrip("/"))
        try:
            reply = self._s3().get_object(Bucket=parsed.netloc, Key=key)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(error.get("Code", ""))
            if code in {"NoSuchKey", "404", "NotFound"}:
                status = 404
            elif code in {"AccessDenied", "403"}:
                status = 403
            raise DownloadHTTPError(
                f"{url}: {code or 'error'}", int(status or 500)
            ) from exc
        except BotoCoreError as exc:
            raise DownloadError(f"{url}: {exc}") from exc
        logger.debug("fetching %s", url)
        return self._chunks(reply["Body"])

    def _chunks(self, body: Any) -> Iterator[bytes]:
        with self._lock:
            self.requests += 1
        try:
            while chunk := body.read(_CHUNK):
                with self._lock:
                    self.bytes_fetched += len(chunk)
                yield chunk
        finally:
            body.close()
