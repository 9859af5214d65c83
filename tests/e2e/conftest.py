"""The local stack as the e2e tests' fixture: ``regseal local up`` in a subprocess.

The session's stack runs the real seal function (``functions/seal/app.py``, the
stack's default), so the seal tests exercise push, S3 event, SQS, pump,
handler and registry together. The pump-contract test runs a stack of its own
with the placeholder handler of ``fixtures/seal_placeholder.py``, which only
records the events the pump hands it.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from regseal.local.cli import SEAL_HANDLER_VARIABLE
from regseal.local.state import StackState

PLACEHOLDER_HANDLER = Path(__file__).parent / "fixtures" / "seal_placeholder.py"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class RunningStack:
    state: StackState
    process: subprocess.Popen
    state_file: Path
    event_log: Path
    output: Path

    def alive(self):
        """The roles in ``state.pids`` whose process still exists."""
        return [name for name, pid in self.state.pids.items() if process_exists(pid)]

    def events(self):
        """Every event the placeholder handler received so far."""
        if not self.event_log.exists():
            return []
        return [json.loads(line) for line in self.event_log.read_text().splitlines()]

    def output_lines(self):
        """The lines ``regseal local up`` printed so far (the handler's log too)."""
        return self.output.read_text(errors="replace").splitlines()


def process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours still "exists"; the stack reaps its children.
    return True


@contextlib.contextmanager
def running_stack(directory, handler=None, *, options=(), env=None):
    """Start ``regseal local up`` in ``directory``; stop it by PID afterwards.

    Args:
        directory: where the state file, the work directory and the output go.
        handler: the seal function module to run; ``None`` for the stack's
            default, the checkout's real ``functions/seal/app.py``.
        options: more ``regseal local up`` options (``--write-back api``, ``--no-tuf``).
        env: more environment variables for the stack process.
    """
    state_file = directory / "state.json"
    event_log = directory / "events.jsonl"
    output = directory / "stack.out"
    environment = {
        **os.environ,
        "REGSEAL_TEST_EVENT_LOG": str(event_log),
        **(env or {}),
    }
    environment.pop(SEAL_HANDLER_VARIABLE, None)
    command = [sys.executable, "-m", "regseal", "local", "up", "--state", state_file]
    if handler is not None:
        command += ["--seal-handler", handler]
    command += list(options)
    with output.open("wb") as out:
        process = subprocess.Popen(
            [str(part) for part in command],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    state = None
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not state_file.exists():
            if process.poll() is not None:
                pytest.fail(f"regseal local up exited early:\n{output.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"no state file after {START_TIMEOUT} s:\n{output.read_text()}"
                )
            time.sleep(0.1)
        state = StackState.load(state_file)
        yield RunningStack(state, process, state_file, event_log, output)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Whatever a broken stack left behind is stopped here, by its PID.
        for pid in state.pids.values() if state else []:
            if pid != process.pid and process_exists(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def start_stack():
    """``with start_stack(directory) as stack:`` runs a stack of the test's own."""
    return running_stack


@pytest.fixture
def placeholder_stack(tmp_path):
    """A stack of the test's own whose seal handler only records its events."""
    with running_stack(tmp_path, handler=PLACEHOLDER_HANDLER) as stack:
        yield stack


@pytest.fixture(scope="session")
def local_stack_run(tmp_path_factory):
    """The session's stack, running the real seal function."""
    with running_stack(tmp_path_factory.mktemp("local-stack")) as stack:
        yield stack


@pytest.fixture(scope="session")
def local_stack(local_stack_run):
    """The parsed state file of the session's running stack."""
    return local_stack_run.state
