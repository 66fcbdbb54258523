"""Child processes that write into an env being built die with us.

restore runs conda (or pip) to write into the new env while its journal says "building". If
our process is killed (kill -9, the OOM killer), the next run finishes or rolls back from the
journal; a child that went on writing would change an env already put back. On Linux each such
child asks the kernel for SIGKILL when its parent dies (PR_SET_PDEATHSIG), between fork and
exec (elsewhere, and for what the child starts in turn, kill -9 of ours leaves them running).
When we stop waiting for another reason (^C, SIGHUP, SIGTERM, an error), the child's whole
process group is killed before the caller rolls back.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return, unused-ignore]
    except (OSError, AttributeError):
        return None


def _die_with(parent: int, prctl: Callable[..., int]) -> Callable[[], None]:
    def in_child() -> None:  # after fork, before exec: nothing that takes a lock
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return in_child


def run_tied(argv: list[str], *, env: dict[str, str] | None = None,
             during: AbstractContextManager[object] | None = None,
             ) -> subprocess.CompletedProcess[str]:
    """subprocess.run(argv) with output captured as text and no stdin, the child killed if we
    die. `during` is entered once the child runs and left when it has ended (a thread started
    before the fork would make the fork unsafe)."""
    prctl = _prctl()
    # its own process group, so that what it starts in turn (conda's compileall, link
    # scripts) is killed with it when we stop waiting
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_die_with(os.getpid(), prctl) if prctl else None)
    with during or contextlib.nullcontext(), _killed_on_error(proc):
        out, err = proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@contextlib.contextmanager
def _killed_on_error(proc: subprocess.Popen[str]) -> Iterator[None]:
    """Ctrl-C, a signal or an error while waiting: the child and everything it started end
    before the caller goes on (to roll back what they were writing)."""
    try:
        yield
    except BaseException:
        if hasattr(os, "killpg"):
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
        raise
