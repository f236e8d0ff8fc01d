"""Size-capped disk spill: batches that could not be delivered, kept as JSONL segments.

One segment is one batch of one kind ("events" or "feedback"), one JSON object per line.
Segments are written to a temporary name and renamed into place, so a reader never sees a
half-written file. To re-send one, a process first claims it by renaming it to a name that
carries its pid: two processes sharing the directory (forked workers, a restarted app next
to the old one) never send the same segment at once, and a claim left by a process that
died is given back the next time a store opens the directory. Re-sending the same event
twice is harmless anyway: the server deduplicates by event_id.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

_SUFFIX = ".jsonl"
_CLAIMED = ".claimed"
_TMP = ".tmp"
_RESCAN_S = 30.0


@dataclass
class Segment:
    path: Path  # the claimed file
    original: Path  # where it goes back if sending fails
    kind: str
    lines: list[bytes]
    size: int


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":
        # os.kill(pid, 0) would send CTRL_C_EVENT there; never take over a claim instead.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SpillStore:
    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq = itertools.count()
        self._recover()
        self._pending = True
        self._checked_at = 0.0
        # Names of segments believed unclaimed, oldest first, and the bytes in the directory:
        # kept in memory so that a long outage (tens of thousands of segments) does not
        # cost a directory listing per batch. Both are refreshed from the disk when they
        # run out or are close to the cap, since other processes may share the directory.
        self._backlog: deque[str] = deque()
        self._usage = self.usage()
        self._usage_checked_at = time.monotonic()

    @property
    def maybe_pending(self) -> bool:
        """A cheap hint for the sender loop: this process spilled since the directory was last
        seen empty, or that was a while ago (another process may share the directory)."""
        return self._pending or time.monotonic() - self._checked_at > _RESCAN_S

    def _recover(self) -> None:
        """Give back claims and drop temp files of processes that no longer exist."""
        for path in self.directory.iterdir():
            name = path.name
            for marker in (_CLAIMED, _TMP):
                if not name.endswith(marker):
                    continue
                base, _, pid = name[: -len(marker)].rpartition(".")
                if not pid.isdigit() or _pid_alive(int(pid)):
                    continue
                try:
                    if marker == _CLAIMED:
                        os.replace(path, self.directory / base)
                    else:
                        path.unlink()
                except OSError:
                    pass

    def claim_possible(self) -> bool:
        """Whether any unclaimed segment is there right now."""
        try:
            return any(n.endswith(_SUFFIX) for n in os.listdir(self.directory))
        except OSError:
            return False

    def usage(self) -> int:
        total = 0
        for entry in os.scandir(self.directory):
            try:
                total += entry.stat().st_size
            except OSError:
                pass
        return total

    def write(self, kind: str, lines: list[bytes]) -> bool:
        """Store one batch; False when it does not fit under max_bytes or the disk refuses."""
        data = b"\n".join(lines) + b"\n"
        try:
            stale = time.monotonic() - self._usage_checked_at > _RESCAN_S
            if stale or self._usage + len(data) > self.max_bytes:
                self._usage = self.usage()
                self._usage_checked_at = time.monotonic()
            if self._usage + len(data) > self.max_bytes:
                return False
            # Names sort by time, so the oldest batch goes out first.
            name = f"{kind}-{time.time_ns():020d}-{os.getpid()}-{next(self._seq):06d}{_SUFFIX}"
            tmp = self.directory / f"{name}.{os.getpid()}{_TMP}"
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self.directory / name)
        except OSError:
            return False
        self._usage += len(data)
        if self._backlog:
            self._backlog.append(name)  # the newest; an empty backlog is refilled from disk
        self._pending = True
        return True

    def claim(self) -> Segment | None:
        """The oldest unclaimed segment, now owned by this process; None when there is none."""
        if not self._backlog:
            try:
                names = [n for n in os.listdir(self.directory) if n.endswith(_SUFFIX)]
            except OSError:
                return None
            self._backlog.extend(sorted(names, key=lambda n: n.split("-", 1)[-1]))
        while self._backlog:
            name = self._backlog.popleft()
            original = self.directory / name
            claimed = self.directory / f"{name}.{os.getpid()}{_CLAIMED}"
            try:
                os.rename(original, claimed)
                data = claimed.read_bytes()
            except FileNotFoundError:
                continue  # another process got there first
            except OSError:
                return None
            lines = [line for line in data.split(b"\n") if line]
            return Segment(claimed, original, name.split("-", 1)[0], lines, len(data))
        self._pending = False
        self._checked_at = time.monotonic()
        return None

    def release(self, segment: Segment) -> None:
        """Put a claimed segment back for a later attempt (first in line again)."""
        try:
            os.replace(segment.path, segment.original)
        except OSError:
            return
        self._backlog.appendleft(segment.original.name)

    def remove(self, segment: Segment) -> None:
        try:
            segment.path.unlink()
        except OSError:
            return
        self._usage = max(0, self._usage - segment.size)
