"""One process per study: a lease row that names the process running it.

Two drivers on one study would both write its trials, reports and optimizer states,
and each would resume the other's running trials as if they had crashed. So
:func:`~nondiff.hybrid.tune.api.tune` takes the study's lease (a row of the
``leases`` table: pid, host name and the process's start time) before it reads the
study, and gives it back when it returns or raises. A second ``tune`` call on the
same study and file is refused while the holder lives: a RuntimeError that names the
file, the study, the holder and the fix. A lease whose holder is gone (its pid no
longer runs on this host, or runs a newer process: a reused pid) is stale, as after a
SIGKILL, and is taken over. A lease held from another host cannot be checked from
here and is refused; :func:`release` with ``force=True`` removes it once that process
is known to be gone. Studies in memory (``storage=None``) need no lease.

Example:
    >>> import os, tempfile
    >>> from nondiff.hybrid.tune.lease import Lease
    >>> from nondiff.hybrid.tune.storage import Storage
    >>> path = os.path.join(tempfile.mkdtemp(), "study.sqlite")
    >>> with Storage(path, "demo") as store, Lease(store):
    ...     with Storage(path, "demo") as other, Lease(other):  # a second runner
    ...         pass
    Traceback (most recent call last):
    RuntimeError: study 'demo' in storage=... is run by this process already; ...
    >>> with Storage(path, "demo") as store, Lease(store):  # given back: free again
    ...     store.study
    'demo'
"""

from __future__ import annotations

import os
import socket
from types import TracebackType

from .storage import Storage

__all__ = ["HOST", "Lease", "release"]

HOST = socket.gethostname()
"""This machine's name, as leases record it."""


def _started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None  # field 22 of proc(5)


def _alive(pid: int, started: str | None) -> bool:
    """Whether the process that took a lease as (``pid``, ``started``) still runs here."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    now = _started(pid)
    return started is None or now is None or now == started  # else the pid was reused


class Lease:
    """The lease of ``storage``'s study for this process, as a context manager.

    Raises:
        RuntimeError: on entry, when a live process (or one on another host) holds it.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.pid, self.started = os.getpid(), _started(os.getpid())

    def __enter__(self) -> Lease:
        store = self.storage
        if store.path == ":memory:":
            return self
        with store.transaction():  # BEGIN IMMEDIATE: two starters cannot both pass
            row = store.db.execute("SELECT pid, host, started FROM leases WHERE study=?",
                                   (store.study,)).fetchone()
            if row is not None:
                pid, host, started = row
                if host != HOST or _alive(pid, started):
                    where = "this process" if (pid, host) == (self.pid, HOST) else \
                        f"process {pid} on host {host!r}"
                    fix = ("wait for it to finish or stop it (a killed study resumes with the "
                           "same call), or pass another study_name or storage file")
                    if host != HOST:
                        fix += ("; if it is gone, free the study with nondiff.hybrid.tune."
                                f"lease.release(Storage({store.path!r}, {store.study!r}), "
                                "force=True)")
                    raise RuntimeError(f"study {store.study!r} in storage={store.path!r} is "
                                       f"run by {where} already; {fix}")
            store.db.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?)",
                             (store.study, self.pid, HOST, self.started))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.storage.path != ":memory:":
            release(self.storage, pid=self.pid)


def release(storage: Storage, *, pid: int | None = None, force: bool = False) -> None:
    """Give back the lease of ``storage``'s study held by ``pid`` on this host (default:
    this process); ``force=True`` removes whoever's lease it is."""
    if force:
        storage.db.execute("DELETE FROM leases WHERE study=?", (storage.study,))
        return
    storage.db.execute("DELETE FROM leases WHERE study=? AND pid=? AND host=?",
                       (storage.study, os.getpid() if pid is None else pid, HOST))
