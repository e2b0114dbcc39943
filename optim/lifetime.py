"""Worker processes that die with the process that started them.

A pool worker blocked on its task queue, or a pipeline worker blocked in a receive,
never learns that its parent was killed with SIGKILL (the OOM killer, ``kill -9``, a
job scheduler): it keeps its memory and, through the file descriptors it holds, keeps
multiprocessing's forkserver and resource tracker alive too. :func:`die_with` ends
the calling process as soon as a given process ends; every process pool the project
starts (the benchmark runner, :class:`~nondiff.optim.evaluate.ProcessPoolEvaluator`,
:func:`~nondiff.hybrid.parallel.fit_parallel`) calls it first thing in each worker, with
the pid of the process that created the pool. When the workers are gone, the forkserver
(which stays up while any of its children hold its "alive" pipe) and the resource
tracker (which stays up while any process holds its pipe) see end-of-file and exit.

How: on Linux (kernel >= 5.3) a daemon thread waits on a pidfd of the owner
(``os.pidfd_open``), which becomes readable the moment the owner exits, zombie or not,
so no polling and no race with pid reuse; elsewhere the thread polls every
:data:`POLL_SECONDS` whether the owner still exists (and, when the owner is the parent,
whether this process was re-parented). It then calls ``os._exit(EXIT_CODE)``.

Why not ``prctl(PR_SET_PDEATHSIG)``: the kernel sends that signal when the *thread*
that forked the child exits, not the process (a pool created lazily by a short-lived
thread would lose its workers with that thread), and it fires on the death of the
immediate parent, which for a forkserver worker is the forkserver, not the owner.

Example:
    >>> import multiprocessing, os
    >>> from concurrent.futures import ProcessPoolExecutor
    >>> from nondiff.optim.lifetime import die_with
    >>> context = multiprocessing.get_context("fork")  # the child runs no torch: fork is safe
    >>> with ProcessPoolExecutor(1, mp_context=context, initializer=die_with,
    ...                          initargs=(os.getpid(),)) as pool:
    ...     pool.submit(os.getppid).result() == os.getpid()
    True
"""

from __future__ import annotations

import contextlib
import os
import select
import threading

__all__ = ["EXIT_CODE", "POLL_SECONDS", "die_with"]

EXIT_CODE = 70
"""The exit status of a process that ended because its owner had ended."""

POLL_SECONDS = 0.5
"""Polling interval where no pidfd is available (not Linux, or a kernel before 5.3)."""


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (cannot be ours, but alive)
        return True
    return True


def _wait_pidfd(fd: int) -> None:
    while True:
        with contextlib.suppress(InterruptedError):
            ready, _, _ = select.select([fd], [], [])
            if ready:
                return


def _wait_polling(owner: int, parent: int) -> None:
    import time

    while _exists(owner) and (owner != parent or os.getppid() == parent):
        time.sleep(POLL_SECONDS)


def die_with(owner: int) -> None:
    """End this process (``os._exit(EXIT_CODE)``) as soon as process ``owner`` ends.

    Call it first thing in a worker (a pool ``initializer``, a ``Process`` target) with
    the pid of the process that started the pool, read there with ``os.getpid()``.
    If ``owner`` has already ended, this process exits at once. Returns immediately;
    the watching is done by a daemon thread named ``nondiff-die-with``.

    Args:
        owner: the pid of the process whose death should end this one.

    Raises:
        ValueError: ``owner`` is not a positive integer, or is this process itself.
    """
    if isinstance(owner, bool) or not isinstance(owner, int) or owner < 1:
        raise ValueError(f"owner must be a positive process id, got {owner!r}")
    if owner == os.getpid():
        raise ValueError(f"owner {owner} is this process itself; pass the pid of the process "
                         "that started this one (os.getpid() there)")
    parent = os.getppid()
    fd = None
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(owner)
        except ProcessLookupError:
            os._exit(EXIT_CODE)
        except OSError:  # pidfd_open unsupported by this kernel: poll instead
            fd = None
    if fd is None and not _exists(owner):
        os._exit(EXIT_CODE)

    def watch() -> None:
        if fd is not None:
            _wait_pidfd(fd)
        else:
            _wait_polling(owner, parent)
        os._exit(EXIT_CODE)

    threading.Thread(target=watch, name="nondiff-die-with", daemon=True).start()
