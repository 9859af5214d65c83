"""Server processes of the local stack: start on a free loopback port, wait, stop.

Each server runs in its own session, so a Ctrl-C in the terminal reaches only
the stack, which then stops its servers in order (event pump first, moto last).
"""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from regseal.errors import LocalStackError

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

# Probes must never go through a proxy taken from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on right now.

    NOTE: another process may take the port before the server binds it; the
    callers retry on a fresh port when a server exits during startup.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether an HTTP GET of ``url`` returns status 200."""
    try:
        with _DIRECT.open(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def responds(url: str, timeout: float = 1.0) -> bool:
    """Whether an HTTP GET of ``url`` gets 200 or an auth challenge (401)."""
    try:
        with _DIRECT.open(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except (urllib.error.URLError, OSError):
        return False


@dataclass(frozen=True)
class ManagedProcess:
    """A server process that the stack started and must stop."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def spawn(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
    ) -> ManagedProcess:
        """Start ``argv`` with stdout and stderr going to ``log_path``."""
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                list(argv),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        logger.debug("started %s as pid %d: %s", name, popen.pid, " ".join(argv))
        return cls(name, popen, log_path)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait_until(
        self,
        ready: Callable[[], bool],
        *,
        timeout: float,
        cancel: threading.Event,
    ) -> None:
        """Block until ``ready()`` is true.

        Raises:
            LocalStackError: the process exited, ``timeout`` seconds passed, or
                ``cancel`` was set (a signal arrived during startup).
        """
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.running():
                raise LocalStackError(
                    f"{self.name} exited with status {self.popen.returncode} "
                    f"during startup; its log {self.log_path} ends with:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise LocalStackError(
                    f"{self.name} did not answer within {timeout:.0f} s; its log "
                    f"{self.log_path} ends with:\n{self.log_tail()}"
                )
            if cancel.wait(0.1):
                raise LocalStackError(f"interrupted while waiting for {self.name}")

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process, and kill it if it outlives ``timeout``."""
        if self.running():
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.debug("%s ignored SIGTERM; killing it", self.name)
                self.popen.kill()
                self.popen.wait()
        logger.debug("%s (pid %d) exited: %s", self.name, self.pid, self.popen.poll())

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def start_on_free_port(
    name: str,
    argv_for_port: Callable[[int], Sequence[str]],
    ready_url_for_port: Callable[[int], str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    cancel: threading.Event,
    timeout: float = 30.0,
    attempts: int = 3,
    probe: Callable[[str], bool] | None = None,
) -> tuple[ManagedProcess, int]:
    """Start a server on a free port and wait until its URL answers 200
    (or whatever ``probe`` accepts).

    A server that exits during startup (most likely because another process
    took the port first) is tried again on another port, ``attempts`` times.

    Returns:
        The running process and the port it listens on.
    """
    failure: LocalStackError | None = None
    for _ in range(attempts):
        port = free_port()
        process = ManagedProcess.spawn(
            name, argv_for_port(port), env=env, log_path=log_path
        )
        url = ready_url_for_port(port)
        try:
            process.wait_until(
                partial(probe or answers, url), timeout=timeout, cancel=cancel
            )
        except LocalStackError as exc:
            exited_by_itself = not process.running()
            process.stop()
            if cancel.is_set() or not exited_by_itself:
                raise
            failure = exc
            continue
        return process, port
    assert failure is not None
    raise failure
