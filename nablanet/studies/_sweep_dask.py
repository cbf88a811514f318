"""A sweep's cells on a Dask cluster: the scheduler's address, the connection, the run.

Address. What Dask connects with: SCHEME://HOST:PORT with SCHEME tcp, tls, ucx, ws or wss (HOST:PORT
alone means tcp), or an ``inproc://`` address of a cluster in this process. It is checked before
anything else, so a typo is one line naming the address.

Connection. Before the ``Client`` is made, the address is asked who it is (Dask's ``identity``
call) under a deadline of its own: Dask's connect timeout covers opening the connection, not the
handshake, so a port where something else listens (an HTTP server, the scheduler's dashboard)
would keep a Client waiting forever. A worker's address answers too, and is named as such.

Run. Each cell is submitted with ``retries``; the scheduler reschedules the cells of a worker that
dies. When the client loses the scheduler, Dask cancels every future it holds; this module cancels
none itself, so a cancelled future means the scheduler is gone and the run raises
``SchedulerGoneError``. Ctrl-C: the cells not yet written are cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nablanet.studies._sweep_cell import Cell, CellOutput, compute_cell
from nablanet.studies.base import Study

Done = Callable[[Cell, CellOutput], None]
Failed = Callable[[Cell, str, bool], None]

CONNECT_TIMEOUT = 20.0  # seconds for the scheduler to answer (module-level so tests can shorten it)
SCHEMES = ("tcp", "tls", "ucx", "ws", "wss")
EXAMPLE = "tcp://127.0.0.1:8786"
EXPECTED = ("a Dask scheduler address SCHEME://HOST:PORT with SCHEME tcp, tls, ucx, ws or wss and PORT "
            "1-65535")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)$")  # a name, an IPv4 or a bracketed IPv6 address


class SchedulerGoneError(ConnectionError):
    """The client lost the Dask scheduler at ``address`` while cells were running."""

    def __init__(self, address: str) -> None:
        super().__init__(f"lost the Dask scheduler at {address}")
        self.address = address


def address_problem(address: object) -> str | None:
    """Why ``address`` is not a Dask scheduler address, in a few words; None when it is one."""
    if not isinstance(address, str):
        return f"got a {type(address).__name__}, not an address"
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address  # Dask's default scheme
    if scheme == "inproc":
        return None
    if scheme not in SCHEMES:
        web = " (a web address: the dashboard, not the scheduler)" if scheme in ("http", "https") else ""
        return f"the scheme {scheme!r} is not one Dask connects with{web}"
    host, colon, port = rest.rpartition(":")
    if not colon:
        return "it has no port"
    if not _HOST.match(host):
        return f"the host {host!r} is not a host name or IP address"
    if not port.isascii() or not port.isdigit():
        return f"the port {port!r} is not a number"
    if not 1 <= int(port) <= 65535:
        return f"the port {port} is not in 1-65535"
    return None


async def _identity(address: str, timeout: float) -> Any:
    from distributed.comm import connect
    from distributed.security import Security

    comm = await connect(address, timeout=timeout, **Security().get_connection_args("client"))
    try:
        await comm.write({"op": "identity", "reply": True})
        return await comm.read()
    finally:
        comm.abort()


def _who(address: str, timeout: float) -> str | None:
    """The ``type`` a Dask server at ``address`` gives ("Scheduler", "Worker", …); None when nothing
    answered like a Dask server within ``timeout`` seconds."""

    def ask() -> Any:  # a loop of its own: the caller may be inside one (a notebook)
        return asyncio.run(asyncio.wait_for(_identity(address, timeout), timeout))

    pool = ThreadPoolExecutor(1, thread_name_prefix="nablanet-dask-probe")
    try:
        reply = pool.submit(ask).result()
    except Exception:  # refused, timed out, or bytes that are not Dask's: no scheduler there either way
        return None
    finally:
        pool.shutdown(wait=False)
    return reply.get("type") if isinstance(reply, dict) else None


def connect(address: str, timeout: float) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address``; ``ConnectionError`` saying what
    answered there otherwise, within about ``timeout`` seconds."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError("a sweep on a Dask scheduler needs dask.distributed: pip install 'nablanet[sweep]'") from exc
    nothing = (f"no Dask scheduler answered at {address} within {timeout:g} s; expected the address a running "
               "scheduler prints ('Scheduler at: tcp://HOST:PORT', port 8786 unless set; 8787 is its dashboard): "
               "start one with 'dask scheduler' or fix --scheduler")
    who = _who(address, timeout)
    if who is None:
        raise ConnectionError(nothing)
    if who != "Scheduler":
        raise ConnectionError(f"{address} is a Dask {who.lower()}, not the scheduler; give --scheduler the "
                              "scheduler's address (a worker logs it as 'Registered to: tcp://HOST:PORT')")
    try:
        return Client(address, timeout=f"{timeout}s", set_as_default=False)
    except (OSError, TimeoutError):
        raise ConnectionError(nothing) from None


SILENT = logging.CRITICAL + 1


@contextlib.contextmanager
def quieter(level: int) -> Iterator[None]:
    """Inside the block, distributed's loggers pass only records at ``level`` or above. They write to
    stderr, and at INFO a connection that closes (a lost scheduler) comes with a traceback."""
    import distributed  # noqa: F401  (its loggers exist once it is imported)

    names = [n for n in list(logging.root.manager.loggerDict) if n == "distributed" or n.startswith("distributed.")]
    loggers = [logging.getLogger(n) for n in names]
    before = [(lg.level, lg.getEffectiveLevel()) for lg in loggers]
    for lg, (_, effective) in zip(loggers, before, strict=True):
        lg.setLevel(max(effective, level))
    try:
        yield
    finally:
        for lg, (own, _) in zip(loggers, before, strict=True):
            lg.setLevel(own)


def close(client: Any) -> None:
    """Close a client we made, silently: one that lost its scheduler logs the reconnection it gives
    up as a traceback."""
    with quieter(SILENT):
        client.close()


def run(client: Any, study: Study, pending: list[Cell], *, figures: bool, retries: int, done: Done,
        failed: Failed) -> dict[str, str]:
    """Submit every cell with ``retries``; ``done(cell, output)`` as each comes back; returns {key:
    error} of the cells that still failed. Raises ``SchedulerGoneError`` when the scheduler goes away."""
    from distributed import as_completed

    address = client.scheduler.address
    futures = {client.submit(compute_cell, study, c.config, figures, retries=retries, pure=False,
                             key=f"nablanet-cell-{c.key}-{uuid.uuid4().hex[:8]}"): c for c in pending}
    handled: set[Any] = set()
    errors: dict[str, str] = {}

    def lost() -> bool:
        return client.status != "running"

    try:
        for future in as_completed(futures, loop=client.loop):
            cell = futures[future]
            if future.status == "finished":
                try:
                    output = future.result()
                except Exception:
                    if lost():
                        raise SchedulerGoneError(address) from None
                    raise
                done(cell, output)
            elif future.status == "error":
                failure = future.exception()
                errors[cell.key] = f"{type(failure).__name__}: {failure}"
                failed(cell, errors[cell.key], False)
            else:  # cancelled, and not by us: the client lost the scheduler
                raise SchedulerGoneError(address)
            handled.add(future)
            future.release()
    finally:
        if not lost():
            client.cancel([f for f in futures if f not in handled])
    return errors

