"""The local stack: moto, the registry on moto's S3, and the event pumps.

:class:`Stack` starts the parts in dependency order and stops them in reverse;
:func:`run` keeps a stack up until SIGINT or SIGTERM. The state file is
written only once every part answers, and removed when the stack stops.

With TUF (the default) the stack also sets up the TUF repository
(:mod:`regseal.local.tufrepo`), gives the seal function the TUF settings, and
runs the TUF function (``functions/tuf/app.py``) from a second pump on the
"targets changed" queue and from an hourly schedule, one invocation at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

from regseal.errors import LocalStackError, PolicyError
from regseal.local import resources
from regseal.local.demo_policy import policy_document
from regseal.local.htpasswd import write_htpasswd
from regseal.local.keys import write_demo_key_pair
from regseal.local.motoserver import start_moto
from regseal.local.processes import ManagedProcess
from regseal.local.pump import EventPump
from regseal.local.registry import (
    HtpasswdAuth,
    RegistryAuth,
    RegistrySettings,
    TokenAuth,
    start_registry,
)
from regseal.local.runtime import (
    SEAL_FUNCTION,
    TUF_FUNCTION,
    aws_environment,
    function_path,
    load_handler,
    seal_environment,
    serialized,
    tuf_environment,
    tuf_target_environment,
    use_environment,
)
from regseal.local.schedule import Schedule
from regseal.local.state import StackState
from regseal.local.tagfront import TagFront
from regseal.local.tokenserver import TokenIssuer, TokenServer
from regseal.local.tufrepo import TUF_PREFIX, LocalTuf, set_up_repository, team_globs
from regseal.policy import load_policy_bytes
from regseal.tuf.store import MetadataLocation, MetadataStore

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = logging.getLogger(__name__)

REGION = "us-east-1"
REGISTRY_ROOT = "/"
PUMP_READY_SECONDS = 10.0
WRITE_BACK_MODES = ("storage", "api")
REGISTRY_AUTH_KINDS = ("none", "htpasswd", "token")
# The registry account of a stack whose registry requires one: dummies.
REGISTRY_USERNAME = "testing"
REGISTRY_PASSWORD = "testing"  # noqa: S105 (a dummy for loopback only)
TUF_SCHEDULE_SECONDS = 3600.0


def default_workdir(state_file: Path) -> Path:
    """The directory for keys, configuration and logs: next to the state file."""
    return state_file.parent / f"{state_file.stem}-work"


@dataclass(frozen=True)
class StackOptions:
    """How to run a stack.

    Attributes:
        state_file: where to write the state JSON.
        workdir: keys, registry configuration and logs; by default
            :func:`default_workdir` of ``state_file``.
        policy_file: an operator's policy to store instead of the demo policy.
        seal_handler: the seal function's module; by default the checkout's
            ``functions/seal/app.py``.
        write_back: ``storage`` (the seal writes the registry's S3 objects) or
            ``api`` (it pushes through the registry's API, as for Harbor).
        registry_auth: ``none``, ``htpasswd`` (basic auth) or ``token`` (an
            in-process token service); by default ``htpasswd`` in api mode
            and ``none`` in storage mode.
        tags_in_database: put a front on the registry that keeps tags to
            itself, as Harbor 2.15 and later do, so storage gets no tag links
            and the seal no tag events (api mode only; see
            :mod:`regseal.local.tagfront`).
        tuf: set up TUF metadata and run the TUF function.
        tuf_handler: the TUF function's module; by default the checkout's
            ``functions/tuf/app.py``.
    """

    state_file: Path
    workdir: Path | None = None
    policy_file: Path | None = None
    seal_handler: Path | None = None
    write_back: str = "storage"
    registry_auth: str | None = None

    def __post_init__(self) -> None:
        if self.write_back not in WRITE_BACK_MODES:
            raise LocalStackError(
                f"write_back: expected one of {', '.join(WRITE_BACK_MODES)}, got "
                f"{self.write_back!r}"
            )
        if self.auth_kind not in REGISTRY_AUTH_KINDS:
            raise LocalStackError(
                f"registry_auth: expected one of {', '.join(REGISTRY_AUTH_KINDS)}, "
                f"got {self.registry_auth!r}"
            )
        if self.tags_in_database and self.write_back != "api":
            # Storage mode finds tags in storage only.
            raise LocalStackError(
                "tags_in_database: expected write_back 'api' (storage mode seals "
                f"only tags it finds in storage), got {self.write_back!r}"
            )

    @property
    def auth_kind(self) -> str:
        """The registry's auth, with the mode's default applied."""
        if self.registry_auth is not None:
            return self.registry_auth
        return "htpasswd" if self.write_back == "api" else "none"

    tuf: bool = True
    tuf_handler: Path | None = None
    tags_in_database: bool = False


class Stack:
    """One local stack. Use as a context manager, or call start and stop."""

    def __init__(
        self, options: StackOptions, *, cancel: threading.Event | None = None
    ) -> None:
        self._options = options
        self._state_file = options.state_file.resolve()
        self._workdir = (options.workdir or default_workdir(self._state_file)).resolve()
        self._cancel = cancel or threading.Event()
        self._moto: ManagedProcess | None = None
        self._registry: ManagedProcess | None = None
        self._tokens: TokenServer | None = None
        self._front: TagFront | None = None
        self._pump: EventPump | None = None
        self._tuf_pump: EventPump | None = None
        self._tuf_schedule: Schedule | None = None
        self._state: StackState | None = None

    def start(self) -> StackState:
        """Start every part, write the state file, and return the state.

        Raises:
            LocalStackError: a part did not come up, or ``cancel`` was set;
                whatever had started is stopped again.
            PolicyError: the operator's policy file is unusable.
        """
        _refuse_running_stack(self._state_file)
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> StackState:
        self._workdir.mkdir(parents=True, exist_ok=True)
        keys = write_demo_key_pair(self._workdir)
        policy = policy_document(self._options.policy_file, keys.public_pem)
        teams = self._tuf_teams(policy)

        self._moto, endpoint = start_moto(workdir=self._workdir, cancel=self._cancel)
        session = resources.moto_session(REGION)
        made = resources.create_resources(session, endpoint, policy_document=policy)
        # Everything in this process (KMS signers too) talks to moto only.
        use_environment(aws_environment(endpoint=endpoint, region=REGION))

        self._registry, registry = start_registry(
            RegistrySettings(
                s3_endpoint=endpoint,
                bucket=made.bucket,
                region=REGION,
                root_directory=REGISTRY_ROOT,
                auth=self._registry_auth(),
            ),
            workdir=self._workdir,
            cancel=self._cancel,
        )
        if self._options.tags_in_database:
            self._front = TagFront(registry)
            self._front.start()
            registry = self._front.address

        registry_api: dict[str, str] = {}
        if self._options.write_back == "api":
            registry_api = {
                "REGSEAL_WRITE_BACK": "api",
                "REGSEAL_REGISTRY_URL": f"http://{registry}",
            }
            if self._options.auth_kind != "none":
                registry_api["REGSEAL_REGISTRY_CREDENTIALS"] = (
                    resources.store_registry_credentials(
                        session,
                        endpoint,
                        username=REGISTRY_USERNAME,
                        password=REGISTRY_PASSWORD,
                    )
                )
        environment = seal_environment(
            endpoint=endpoint,
            region=REGION,
            bucket=made.bucket,
            registry_root=REGISTRY_ROOT,
            state_prefix=resources.STATE_PREFIX,
            policy_location=made.policy_location,
            max_receive_count=resources.MAX_RECEIVE_COUNT,
            registry_api=registry_api,
        )
        tuf: LocalTuf | None = None
        tuf_made: resources.TufResources | None = None
        if teams is not None:
            tuf_made = resources.create_tuf_resources(
                session, endpoint, metadata_prefix=TUF_PREFIX, teams=list(teams)
            )
            tuf = set_up_repository(
                MetadataStore(
                    session.client("s3", endpoint_url=endpoint),
                    MetadataLocation(made.bucket, TUF_PREFIX),
                ),
                workdir=self._workdir,
                endpoint=endpoint,
                snapshot_key=tuf_made.snapshot_key,
                timestamp_key=tuf_made.timestamp_key,
                team_keys=tuf_made.team_keys,
                teams=teams,
            )
            environment |= tuf_target_environment(
                bucket=made.bucket, prefix=TUF_PREFIX, queue_url=tuf_made.queue_url
            )
        handler = load_handler(
            self._options.seal_handler or function_path(SEAL_FUNCTION), environment
        )

        sqs = session.client("sqs", endpoint_url=endpoint)
        self._pump = EventPump(
            sqs,
            handler,
            queue_url=made.queue_url,
            queue_arn=made.queue_arn,
            region=REGION,
        )
        self._pump.start()
        if tuf_made is not None:
            self._start_tuf_function(sqs, endpoint, made.bucket, tuf_made)
        for pump in (self._pump, self._tuf_pump):
            if pump is not None:
                self._wait_for_pump(pump)

        state = StackState(
            registry=registry,
            s3_endpoint=endpoint,
            bucket=made.bucket,
            region=REGION,
            queue_url=made.queue_url,
            dlq_url=made.dead_letter_queue_url,
            kms_key_id=made.kms_key_id,
            kms_key_alias=made.kms_key_alias,
            policy=made.policy_location,
            jwe_private_key=keys.private_key,
            jwe_public_key=keys.public_key,
            workdir=self._workdir,
            pids={
                "stack": os.getpid(),
                "moto": self._moto.pid,
                "registry": self._registry.pid,
            },
            write_back=self._options.write_back,
            tags_in_database=self._options.tags_in_database,
            registry_auth=self._options.auth_kind,
            registry_username=(
                REGISTRY_USERNAME if self._options.auth_kind != "none" else ""
            ),
            registry_password=(
                REGISTRY_PASSWORD if self._options.auth_kind != "none" else ""
            ),
            tuf_metadata_url=tuf.metadata_url if tuf else None,
            tuf_root=tuf.root_file if tuf else None,
            tuf_queue_url=tuf_made.queue_url if tuf_made else None,
            tuf_dlq_url=tuf_made.dead_letter_queue_url if tuf_made else None,
        )
        state.write(self._state_file)
        self._state = state
        logger.debug("stack is up; state in %s", self._state_file)
        return state

    def _registry_auth(self) -> RegistryAuth | None:
        kind = self._options.auth_kind
        if kind == "htpasswd":
            return HtpasswdAuth(
                write_htpasswd(self._workdir, REGISTRY_USERNAME, REGISTRY_PASSWORD)
            )
        if kind == "token":
            issuer = TokenIssuer.generate()
            self._tokens = TokenServer(issuer, REGISTRY_USERNAME, REGISTRY_PASSWORD)
            self._tokens.start()
            return TokenAuth(
                realm=self._tokens.realm,
                service=issuer.service,
                issuer=issuer.issuer,
                root_certificate=issuer.write_certificate(self._workdir),
            )
        return None

    def _tuf_teams(self, policy: bytes) -> dict[str, tuple[str, ...]] | None:
        """The TUF globs of each policy team; None when TUF is off."""
        if not self._options.tuf:
            return None
        given = self._options.policy_file
        try:
            return team_globs(load_policy_bytes(policy, str(given or "demo policy")))
        except PolicyError as exc:
            raise LocalStackError(f"{'--policy ' if given else ''}{exc}") from exc

    def _start_tuf_function(
        self,
        sqs: SQSClient,
        endpoint: str,
        bucket: str,
        made: resources.TufResources,
    ) -> None:
        handler = serialized(
            load_handler(
                self._options.tuf_handler or function_path(TUF_FUNCTION),
                tuf_environment(
                    endpoint=endpoint, region=REGION, bucket=bucket, prefix=TUF_PREFIX
                ),
            )
        )
        self._tuf_pump = EventPump(
            sqs,
            handler,
            queue_url=made.queue_url,
            queue_arn=made.queue_arn,
            region=REGION,
            function_name="regseal-tuf",
        )
        self._tuf_pump.start()
        self._tuf_schedule = Schedule(
            handler,
            interval=TUF_SCHEDULE_SECONDS,
            rule="regseal-tuf-hourly",
            function_name="regseal-tuf",
            region=REGION,
        )
        self._tuf_schedule.start()

    def _wait_for_pump(self, pump: EventPump) -> None:
        waited = 0.0
        while not pump.ready.wait(0.1):
            waited += 0.1
            if self._cancel.is_set():
                raise LocalStackError("interrupted while waiting for the event pump")
            if not pump.is_alive() or waited > PUMP_READY_SECONDS:
                raise LocalStackError(
                    f"the event pump could not receive from the queue within "
                    f"{PUMP_READY_SECONDS:.0f} s"
                )

    def stopped_part(self) -> str | None:
        """The name of a part that stopped on its own, if any."""
        for process in (self._moto, self._registry):
            if process is not None and not process.running():
                return f"{process.name} (exit status {process.popen.returncode})"
        if self._front is not None and not self._front.is_alive():
            return "the registry's tag front"
        if self._pump is not None and not self._pump.is_alive():
            return "the event pump"
        if self._tuf_pump is not None and not self._tuf_pump.is_alive():
            return "the TUF function's event pump"
        if self._tuf_schedule is not None and not self._tuf_schedule.is_alive():
            return "the TUF function's schedule"
        return None

    def stop(self) -> None:
        """Stop the pumps, the tag front, the registry, moto and the token
        service, and remove the state file."""
        if self._state is not None:
            self._state_file.unlink(missing_ok=True)
            self._state = None
        parts = [
            part
            for part in (self._pump, self._tuf_pump, self._tuf_schedule)
            if part is not None
        ]
        # All at once: each may be in a long poll of up to a second.
        for part in parts:
            part.request_stop()
        for part in parts:
            part.stop()
        self._pump = self._tuf_pump = None
        self._tuf_schedule = None
        if self._front is not None:
            self._front.stop()
            self._front = None
        for process in (self._registry, self._moto):
            if process is not None:
                process.stop()
        self._registry = self._moto = None
        if self._tokens is not None:
            self._tokens.stop()
            self._tokens = None

    def __enter__(self) -> StackState:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def run(
    options: StackOptions, *, on_ready: Callable[[StackState], None] | None = None
) -> None:
    """Run a stack until SIGINT or SIGTERM, then stop everything it started.

    Args:
        options: what to run.
        on_ready: called with the state once the state file is written.

    Raises:
        LocalStackError: the stack did not come up, or one of its parts
            stopped on its own while it ran.
    """
    stop = threading.Event()
    with _signals_set(stop):
        stack = Stack(options, cancel=stop)
        try:
            state = stack.start()
        except LocalStackError:
            if stop.is_set():
                return
            raise
        try:
            if on_ready is not None:
                on_ready(state)
            while not stop.wait(0.5):
                part = stack.stopped_part()
                if part is not None:
                    raise LocalStackError(
                        f"{part} stopped on its own; see {state.workdir}"
                    )
        finally:
            stack.stop()


@contextlib.contextmanager
def _signals_set(event: threading.Event) -> Iterator[None]:
    def handle(signum: int, frame: FrameType | None) -> None:
        logger.debug("received signal %d; stopping", signum)
        event.set()

    previous = {
        signum: signal.signal(signum, handle)
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _refuse_running_stack(state_file: Path) -> None:
    if not state_file.exists():
        return
    try:
        pid = StackState.load(state_file).pids.get("stack")
    except LocalStackError:
        return
    if pid is not None and pid != os.getpid() and _process_exists(pid):
        raise LocalStackError(
            f"expected no running stack for {state_file}, but pid {pid} runs one; "
            "stop it or choose another state file"
        )


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
