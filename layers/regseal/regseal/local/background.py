"""A loop on a daemon thread that the local stack starts and stops."""

from __future__ import annotations

import threading


class BackgroundLoop:
    """Runs :meth:`_run` on a daemon thread until asked to stop.

    Subclasses implement ``_run``, which must return soon after
    ``self._stopping`` is set.
    """

    def __init__(self, thread_name: str) -> None:
        self._thread_name = thread_name
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Run the loop on a background thread until :meth:`stop`."""
        self._thread = threading.Thread(
            target=self._run, name=self._thread_name, daemon=True
        )
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the loop to stop after the work in hand; do not wait."""
        self._stopping.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the work in hand, then stop."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        raise NotImplementedError
