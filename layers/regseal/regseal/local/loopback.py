"""A small HTTP server of the local stack's own, on a free loopback port.

The token service and the tag front are Python HTTP servers in the stack's
process; this is their shared lifecycle: bind a free port on loopback,
serve on a daemon thread, stop and release the port.

Public API: :class:`LoopbackServer`.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from regseal.local.processes import LOOPBACK

logger = logging.getLogger(__name__)


class LoopbackServer:
    """Serves ``handler`` on ``127.0.0.1`` at a port the system picks.

    Args:
        handler: the request handler class.
        name: the serving thread's name (shows in thread dumps and logs).
    """

    def __init__(self, handler: type[BaseHTTPRequestHandler], name: str) -> None:
        self.name = name
        self._server = ThreadingHTTPServer((LOOPBACK, 0), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """``host:port`` the server answers on."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> None:
        """Serve on a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=self.name, daemon=True
        )
        self._thread.start()
        logger.debug("%s serving on %s", self.name, self.address)

    def stop(self) -> None:
        """Stop serving (waiting up to 10 s for the thread) and free the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10)
            self._thread = None
        self._server.server_close()

    def is_alive(self) -> bool:
        """Whether the serving thread runs."""
        return self._thread is not None and self._thread.is_alive()
