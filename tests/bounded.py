"""Run a function in a forked child with a wall-clock and an address-space limit.

The malformed-input tests must be able to fail without their fix, and without the fix an
alias bomb eats gigabytes and never returns. In a child with RLIMIT_AS and an alarm, the
regression becomes a failed test (MemoryError, timeout) instead of a stuck machine.
The child measures its own peak Python allocation with tracemalloc and its time.
"""
from __future__ import annotations

import gc
import json
import os
import resource
import select
import signal
import time
import traceback
import tracemalloc
from dataclasses import dataclass
from typing import Any, Callable

from autopeft.exceptions import AutoPeftError


@dataclass
class Outcome:
    kind: str              # "ok", "error" (an AutoPeftError), "crash" (anything else), "killed"
    error: str | None      # the exception's class name
    message: str           # str(exc), the traceback for a crash, or why it was killed
    seconds: float         # wall time inside the child
    peak_mb: float         # tracemalloc's peak, in MB
    line: int | None = None
    exit_code: int | None = None
    value: Any = None      # what fn returned (JSON-able), for "ok"


def _status(field: str) -> int:
    """A /proc/self/status size (VmSize, VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as fh:
        for row in fh:
            if row.startswith(field + ":"):
                return int(row.split()[1]) * 1024
    return 0


def run_bounded(fn: Callable[[], Any], seconds: float = 10.0, extra_mb: int = 768,
                trace: bool = True) -> Outcome:
    """fn() in a child limited to `seconds` and to its parent's address space + extra_mb.

    fn's return value must be JSON-able; it comes back as Outcome.value. peak_mb is
    tracemalloc's peak, or with trace=False (tracemalloc slows parsing 3x) the growth of
    the resident set (peak minus start, from /proc)."""
    read_end, write_end = os.pipe()
    limit = _status("VmSize") + extra_mb * 2**20
    gc.freeze()  # the child's collector then leaves the parent's objects (and pages) alone
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read_end)
        code = 0
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.setitimer(signal.ITIMER_REAL, seconds + 5)  # a hard stop behind the parent's
            if trace:
                tracemalloc.start()
            rss = _status("VmRSS")
            start = time.perf_counter()
            try:
                value = fn()
                out = {"kind": "ok", "error": None, "message": "", "value": value}
            except AutoPeftError as exc:
                out = {"kind": "error", "error": type(exc).__name__, "message": str(exc),
                       "line": getattr(exc, "line", None), "exit_code": exc.exit_code}
            except BaseException as exc:  # noqa: BLE001 - a crash is what we look for
                out = {"kind": "crash", "error": type(exc).__name__,
                       "message": "".join(traceback.format_exception(exc))[-3000:]}
            out["seconds"] = time.perf_counter() - start
            out["peak_mb"] = (tracemalloc.get_traced_memory()[1] if trace
                              else _status("VmHWM") - rss) / 2**20
            tracemalloc.stop()
            os.write(write_end, json.dumps(out).encode())
        except BaseException:  # noqa: BLE001
            code = 3
        finally:
            os._exit(code)
    gc.unfreeze()
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + seconds
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                return Outcome("killed", None, f"still running after {seconds} s", seconds, 0.0)
            ready, _, _ = select.select([read_end], [], [], left)
            if ready:
                chunk = os.read(read_end, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    if not chunks:
        return Outcome("killed", None, f"the child died (wait status {status}); out of "
                       f"memory under the {extra_mb} MB limit?", seconds, 0.0)
    data = json.loads(b"".join(chunks))
    return Outcome(**data)
