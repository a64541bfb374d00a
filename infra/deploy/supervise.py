"""The supervisor of one local service: runs its command, restarts it when it dies, stops it on SIGTERM.

Started by the local runtime as ``python supervise.py --name NAME -- COMMAND`` in a new session (so it and
its service form one process group that outlives the `ws` process that started it, and ``ws down`` can
stop the whole group). Standard library only: it runs with the interpreter of the `ws` that started it.

Start handshake: with ``--start-fd N`` the supervisor first reads fd N (a pipe from `ws`) and starts the service only
on ``start``, which `ws` writes once services.json records the supervisor. If `ws` is killed in between, the pipe
closes unread and the supervisor exits: a service never runs without a record that lets `ws` stop it.

Restart policy: a service that exits on its own is restarted after a back-off (0.5 s doubling to 8 s); after
``--max-restarts`` restarts within a minute the supervisor gives up and exits with the service's code, which
the health gate then sees as a dead service.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from types import FrameType


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--cwd", required=True)
    parser.add_argument("--max-restarts", type=int, default=5)
    parser.add_argument("--start-fd", type=int, default=None, help="wait for 'start' on this fd (see above)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command")

    if args.start_fd is not None and not started_by_ws(args.start_fd):
        log(args.name, "the ws that started this supervisor stopped before recording it: not starting the service")
        return 0

    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    restarts: list[float] = []
    backoff = 0.5
    code = 0
    while not stopping:
        log(args.name, f"starting: {' '.join(command)}")
        # A one-string command runs through the shell with `exec`, so the service replaces the shell and a
        # SIGTERM sent to the child reaches the service itself, not a shell that would leave it orphaned.
        shell = len(command) == 1
        child = subprocess.Popen([f"exec {command[0]}"] if shell else command, cwd=args.cwd, shell=shell)
        code = child.wait()
        if stopping:
            break
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < 60] + [now]
        if len(restarts) > args.max_restarts:
            log(args.name, f"exited with code {code}; {args.max_restarts} restarts within a minute, giving up")
            return code or 1
        log(args.name, f"exited with code {code}; restarting in {backoff:.1f}s")
        deadline = time.monotonic() + backoff
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.05)
        backoff = min(backoff * 2, 8.0)
    if child is not None and child.poll() is None:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    log(args.name, "stopped")
    return 0


def started_by_ws(fd: int) -> bool:
    """Whether `ws` said ``start`` on ``fd``; False when the pipe closed without it (`ws` died before recording)."""
    received = b""
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while len(received) < len(b"start"):
            chunk = pipe.read(len(b"start") - len(received))
            if not chunk:
                break
            received += chunk
    return received == b"start"


def log(name: str, message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    sys.stderr.write(f"[ws-supervise {stamp} {name} pid={os.getpid()}] {message}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
