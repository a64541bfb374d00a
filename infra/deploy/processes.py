"""Which process a recorded pid is now: before `ws down` signals a pid from its state files, it checks that it is
still the process `ws` started (same boot, same start time, same command), never whatever process got the pid
after a reboot or a crash.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class ProcessIdentity:
    boot_id: str  # the kernel's id of this boot: a pid from before a reboot is another process now
    start_ticks: int  # the process's start time, in clock ticks since boot (/proc/<pid>/stat field 22)
    command: str  # its command line, arguments separated by spaces

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ProcessIdentity | None:
        try:
            return cls(str(data["boot_id"]), int(data["start_ticks"]), str(data["command"]))
        except (TypeError, KeyError, ValueError):
            return None


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state is the first); None when there is no process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def identity_of(pid: int) -> ProcessIdentity | None:
    """The identity of the live (non-zombie) process ``pid`` now; None when there is none."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        boot = BOOT_ID.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    command = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return ProcessIdentity(boot, int(fields[19]), command)


def mismatch(pid: int, recorded: ProcessIdentity | None, expected_in_command: str) -> str | None:
    """Why ``pid`` is not the process `ws` recorded (None when it is): gone, another boot, another start time or
    another command. Without a recorded identity (state written by an older ws), its command must contain
    ``expected_in_command``."""
    now = identity_of(pid)
    if now is None:
        return f"pid {pid} is gone"
    if recorded is None:
        if expected_in_command in now.command:
            return None
        return f"pid {pid} is now another process ({_short(now.command)})"
    if now.boot_id != recorded.boot_id:
        return f"pid {pid} was recorded before the machine restarted; it is now {_short(now.command)}"
    if now.start_ticks != recorded.start_ticks or (recorded.command and now.command != recorded.command):
        return f"pid {pid} is now another process ({_short(now.command)}), not the recorded {_short(recorded.command)}"
    return None


def _short(command: str, limit: int = 80) -> str:
    return command if len(command) <= limit else command[: limit - 3] + "..."
