import socket
import sys
import threading

import pytest

from regseal.errors import LocalStackError
from regseal.local.processes import answers, free_port, start_on_free_port


def http_server(port):
    return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]


def test_free_port_can_be_bound_on_loopback():
    port = free_port()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert 1024 <= port <= 65535


def test_server_is_started_waited_for_and_stopped(tmp_path):
    process, port = start_on_free_port(
        "http.server",
        http_server,
        lambda port: f"http://127.0.0.1:{port}/",
        env={},
        log_path=tmp_path / "server.log",
        cancel=threading.Event(),
    )
    try:
        assert answers(f"http://127.0.0.1:{port}/")
    finally:
        process.stop()

    assert not process.running()
    assert not answers(f"http://127.0.0.1:{port}/")


def test_server_exiting_at_startup_is_tried_again_then_reported(tmp_path):
    starts = []

    def failing(port):
        starts.append(port)
        return [sys.executable, "-c", "print('cannot bind'); raise SystemExit(3)"]

    with pytest.raises(LocalStackError, match=r"(?s)exited with status 3.*cannot bind"):
        start_on_free_port(
            "failing server",
            failing,
            lambda port: f"http://127.0.0.1:{port}/",
            env={},
            log_path=tmp_path / "server.log",
            cancel=threading.Event(),
            attempts=2,
        )
    assert len(starts) == 2


def test_cancel_interrupts_the_wait_and_stops_the_process(tmp_path):
    cancel = threading.Event()
    cancel.set()
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]

    with pytest.raises(LocalStackError, match="interrupted while waiting for sleeper"):
        start_on_free_port(
            "sleeper",
            lambda port: sleeper,
            lambda port: f"http://127.0.0.1:{port}/",
            env={},
            log_path=tmp_path / "sleeper.log",
            cancel=cancel,
        )
