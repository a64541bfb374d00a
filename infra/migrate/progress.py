"""Progress of a migration: live bars on a terminal (overall and per agent, rows/s, ETA), periodic lines otherwise.

The migrator calls an :class:`Observer` from several worker threads; both implementations are thread-safe.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Observer(Protocol):
    def start(self, agents: int, rows: int) -> None: ...

    def agent_started(self, agent: str, rows: int) -> None: ...

    def advance(self, agent: str, rows: int) -> None: ...

    def agent_finished(self, agent: str, status: str, detail: str) -> None: ...

    def finish(self) -> None: ...


class Silent:
    def start(self, agents: int, rows: int) -> None:
        pass

    def agent_started(self, agent: str, rows: int) -> None:
        pass

    def advance(self, agent: str, rows: int) -> None:
        pass

    def agent_finished(self, agent: str, status: str, detail: str) -> None:
        pass

    def finish(self) -> None:
        pass


class RowsPerSecond(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):  # type: ignore[no-untyped-def]
        speed = task.finished_speed or task.speed
        from rich.text import Text

        return Text(f"{speed:,.0f} rows/s" if speed else "- rows/s", style="progress.data.speed")


class Bars:
    """rich progress bars: one overall bar and one per running agent (removed when the agent is done)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RowsPerSecond(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.lock = threading.Lock()
        self.tasks: dict[str, TaskID] = {}
        self.overall: TaskID | None = None
        self.done = 0
        self.agents = 0

    def start(self, agents: int, rows: int) -> None:
        self.agents = agents
        self.progress.start()
        self.overall = self.progress.add_task(f"all agents 0/{agents}", total=rows or None)

    def agent_started(self, agent: str, rows: int) -> None:
        with self.lock:
            self.tasks[agent] = self.progress.add_task(f"  {agent}", total=rows or None)

    def advance(self, agent: str, rows: int) -> None:
        with self.lock:
            task = self.tasks.get(agent)
            if task is not None:
                self.progress.advance(task, rows)
            if self.overall is not None:
                self.progress.advance(self.overall, rows)

    def agent_finished(self, agent: str, status: str, detail: str) -> None:
        with self.lock:
            task = self.tasks.pop(agent, None)
            if task is not None:
                self.progress.remove_task(task)
            self.done += 1
            if self.overall is not None:
                self.progress.update(self.overall, description=f"all agents {self.done}/{self.agents}")
            if status not in ("validated", "loaded", "skipped"):
                self.progress.console.print(f"[red]{status}[/] {agent}: {detail}", markup=True, highlight=False)

    def finish(self) -> None:
        self.progress.stop()


class Lines:
    """A line every ``interval`` seconds (and one per failed agent) for logs and CI."""

    def __init__(self, stream: IO[str] | None = None, interval: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self.lock = threading.Lock()
        self.total = 0
        self.rows = 0
        self.agents = 0
        self.done = 0
        self.started = time.monotonic()
        self.last = self.started

    def _line(self, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.rows / elapsed
        percent = f"{100 * self.rows / self.total:.1f}%" if self.total else "-"
        eta = f", ETA {max(self.total - self.rows, 0) / rate:.0f}s" if rate and self.total and not final else ""
        print(
            f"migrate: {self.rows:,}/{self.total:,} rows ({percent}), agents {self.done}/{self.agents}, "
            f"{rate:,.0f} rows/s, {elapsed:.1f}s elapsed{eta}",
            file=self.stream,
            flush=True,
        )

    def start(self, agents: int, rows: int) -> None:
        self.agents, self.total = agents, rows
        self.started = self.last = time.monotonic()

    def agent_started(self, agent: str, rows: int) -> None:
        pass

    def advance(self, agent: str, rows: int) -> None:
        with self.lock:
            self.rows += rows
            if time.monotonic() - self.last >= self.interval:
                self.last = time.monotonic()
                self._line()

    def agent_finished(self, agent: str, status: str, detail: str) -> None:
        with self.lock:
            self.done += 1
            if status not in ("validated", "loaded", "skipped"):
                print(f"migrate: {status} {agent}: {detail}", file=self.stream, flush=True)

    def finish(self) -> None:
        with self.lock:
            self._line(final=True)


def for_terminal(console: Console, quiet: bool = False) -> Observer:
    if quiet:
        return Silent()
    return Bars(console) if console.is_terminal else Lines()
