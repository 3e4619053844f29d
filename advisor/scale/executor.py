"""Where independent units run: in this process (``serial``, the default) or as Ray tasks (``ray``).

:func:`executor` parses ``--executor`` / ``--ray-address``; :class:`RayExecutor` starts a local Ray
runtime with this machine's cores, or joins the cluster at ``address`` (``ray start --head`` prints
it; ``RAY_ADDRESS`` works too), and runs a function over units with :meth:`RayExecutor.run`, yielding
each unit's outcome as it finishes. A task's own exception is that unit's outcome (not retried: it
would fail again); a worker that dies (killed, out of memory, its node lost) is retried by Ray up to
:data:`MAX_RETRIES` times, and after that its unit's outcome is a :class:`TaskLost`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from advisor.errors import AdvisorError

EXECUTORS = ("serial", "ray")
MAX_RETRIES = 3  # Ray's retries of a task whose worker died (system failures only)


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask on Linux, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class TaskLost:
    """A unit whose task could not finish on Ray (its worker died more than :data:`MAX_RETRIES` times,
    or it raised): ``reason`` is one line."""

    reason: str


def executor(name: str | None = "serial", address: str | None = None) -> "RayExecutor | None":
    """``--executor``/``--ray-address`` as given on the command line: None for serial, else a
    :class:`RayExecutor` (not started yet). Raises ``AdvisorError`` for an unknown executor, an
    address without ``--executor ray``, or Ray not installed."""
    if name is not None and not name.strip():
        raise AdvisorError("--executor is empty", f"use --executor {' or --executor '.join(EXECUTORS)}")
    if address is not None and not address.strip():
        raise AdvisorError("--ray-address is empty", "pass HOST:PORT (`ray status` on the head prints it), or drop --ray-address")
    name = (name or "serial").strip().lower()
    if name not in EXECUTORS:
        raise AdvisorError(f"unknown executor '{name}'", f"use --executor {' or --executor '.join(EXECUTORS)}")
    if name == "serial":
        if address:
            raise AdvisorError("--ray-address needs --executor ray", f"add --executor ray, or drop --ray-address {address}")
        return None
    try:
        import ray  # noqa: F401
    except ImportError:
        raise AdvisorError("--executor ray needs Ray, which is not installed", "pip install 'advisor[ray]' (or pip install ray)") from None
    ex = RayExecutor(address=address.strip() if address else None)
    if ex.address or os.environ.get("RAY_ADDRESS"):
        check_reachable(ex.address or os.environ["RAY_ADDRESS"], "--ray-address" if ex.address else "$RAY_ADDRESS")
    return ex


def started(name: str | None = "serial", address: str | None = None):
    """A context manager for the CLI: yields None (serial) or a :class:`RayExecutor` whose address
    was checked; Ray itself starts at its first task (a run with everything cached never starts it)."""
    from contextlib import nullcontext

    ex = executor(name, address)
    return nullcontext() if ex is None else ex


CONNECT_TIMEOUT = 5.0  # seconds to reach a cluster's address before Ray's own (minutes-long) retries
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + an empty SETTINGS frame


def check_reachable(address: str, where: str = "--ray-address") -> None:
    """A ``HOST:PORT`` address (as ``ray start --head`` prints it) must answer as a gRPC server does
    (Ray's GCS): an HTTP/2 SETTINGS frame within :data:`CONNECT_TIMEOUT` seconds. ``auto``, ``local``
    and ``ray://`` addresses are left to Ray. Raises ``AdvisorError`` naming the address and where it
    came from (``where``), instead of Ray retrying for minutes against something that is not a cluster."""
    import socket

    if address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise AdvisorError(f"Ray address '{address}' (from {where}) is not HOST:PORT",
                           "pass the address `ray start --head` printed, e.g. --ray-address 10.0.0.5:6379")
    fix = ("start one there with `ray start --head --port PORT`, check the address with `ray status` on the head, "
           "or drop --ray-address (and unset RAY_ADDRESS) for a local runtime")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT) as sock:
            sock.sendall(HTTP2_PREFACE)
            reply = sock.recv(9)
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__).lower()
        raise AdvisorError(f"no Ray cluster answers at {address} (from {where}: {why})", fix) from None
    if len(reply) < 4 or reply[3] != 4:  # not an HTTP/2 SETTINGS frame: some other server listens there
        raise AdvisorError(f"what answers at {address} (from {where}) is not a Ray cluster (not a gRPC server)", fix)


class RayExecutor:
    """Runs units as Ray tasks. Use as a context manager: a runtime this object started is shut down
    at the end; one that was already running (a notebook's ``ray.init()``, a test's) is left alone."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        self.address = address
        self.num_cpus = num_cpus
        self.started = False  # this object started the runtime (and shuts it down at the end)
        self.joined = False

    def __enter__(self) -> "RayExecutor":
        return self

    def start(self) -> None:
        """Start a local runtime or join the cluster, once; a runtime already running in this process
        (a notebook's ``ray.init()``, a test's) is joined and left running at the end."""
        import ray

        if self.joined:
            return
        self.joined = True
        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if self.address:
                kwargs["address"] = self.address
            elif not os.environ.get("RAY_ADDRESS"):
                kwargs["num_cpus"] = self.num_cpus or cpu_cores()
                # Ray runs its workers at niceness 15 by default: behind every other job of the machine
                # they crawl (a 3-model rank took 4x a serial one on a busy machine); they are the work here
                os.environ.setdefault("RAY_worker_niceness", "0")
                # a runtime private to this command: Ray's notice that token authentication is on (it is, by
                # default) is not the user's business here; its other warnings still show
                import logging

                logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.address or os.environ.get("RAY_ADDRESS") or "a local runtime"
                first = (str(exc).strip().splitlines() or [""])[0][:200]
                raise AdvisorError(f"could not start or join Ray at {where}: {first}",
                                   "check --ray-address (`ray status` on the head node prints it), or drop it for a local runtime") from None
            self.started = True

    def __exit__(self, *exc) -> None:
        if self.started:
            import ray

            ray.shutdown()
        self.started = self.joined = False

    @property
    def gpus(self) -> float:
        import ray

        self.start()
        return float(ray.cluster_resources().get("GPU", 0))

    def put(self, obj):
        """``obj`` in Ray's object store once; pass the reference as a task argument (resolved there)."""
        import ray

        self.start()
        return ray.put(obj)

    def run(self, fn: Callable, units: Iterable[tuple[object, tuple]], *, num_gpus: float = 0) -> Iterator[tuple[object, object]]:
        """``(key, fn(*args))`` for each ``(key, args)`` unit, in the order they finish; a unit whose task
        raised or was lost gives ``(key, TaskLost(reason))``. One CPU (and ``num_gpus``) per task."""
        import ray
        from ray.exceptions import RayError, RayTaskError

        self.start()
        remote = ray.remote(num_cpus=1, num_gpus=num_gpus, max_retries=MAX_RETRIES, retry_exceptions=False)(fn)
        pending = {remote.remote(*args): key for key, args in units}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                key = pending.pop(ref)
                try:
                    yield key, ray.get(ref)
                except RayTaskError as exc:
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    first = (str(cause).strip().splitlines() or [""])[0][:300]
                    yield key, TaskLost(f"{type(cause).__name__}: {first}" if first else type(cause).__name__)
                except RayError as exc:  # the worker died MAX_RETRIES + 1 times, or its node went away
                    yield key, TaskLost(f"its Ray worker was lost {MAX_RETRIES + 1} times ({type(exc).__name__}): out of memory, "
                                        "killed, or its node left the cluster")
