"""A FIFO of Kafka records: memory first, then an append-only spill file, bounded in both.

Not thread-safe on its own (the publisher holds a lock). Records spilled to the file survive a
crash: a new queue on the same file resends them (sinks drop duplicates by ``seq``).

>>> import tempfile, pathlib
>>> q = SpillQueue(pathlib.Path(tempfile.mkdtemp()) / "q.spill", memory_records=2, max_file_bytes=10_000)
>>> for i in range(5):
...     q.put(("t", b"k", str(i).encode(), []))
>>> len(q), q.spilled_total
(5, 3)
>>> [q.get()[2] for _ in range(5)]
[b'0', b'1', b'2', b'3', b'4']
>>> q.get() is None
True
"""

from __future__ import annotations

import fcntl
import struct
from collections import deque
from pathlib import Path

import msgspec

# (topic, key, value, headers)
Record = tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]

_LEN = struct.Struct(">I")


class Full(Exception):
    """Memory and spill file are both at their limit."""


class SpillQueue:
    def __init__(self, path: Path, memory_records: int, max_file_bytes: int) -> None:
        self.path = path
        self.memory_records = memory_records
        self.max_file_bytes = max_file_bytes
        self._mem: deque[Record] = deque()
        self._enc = msgspec.msgpack.Encoder()
        self._dec = msgspec.msgpack.Decoder()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a+b")  # noqa: SIM115 - kept open for the queue's life
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise RuntimeError(
                f"spill file {path} is in use by another bridge process; run one bridge per protocol and "
                "mapping file, or give this one its own TWINFLOW_BRIDGE__BUFFER__SPILL_DIR"
            ) from None
        self._read_pos = 0
        self._file_records = self._count_existing()
        self.spilled_total = 0

    def _count_existing(self) -> int:
        """Records left in the file by an earlier run (they are sent first)."""
        self._file.seek(0)
        n = 0
        while head := self._file.read(4):
            if len(head) < 4:
                break
            (size,) = _LEN.unpack(head)
            body = self._file.read(size)
            if len(body) < size:  # torn write at a crash: ignore the tail
                break
            n += 1
        self._file.seek(0, 2)
        return n

    def __len__(self) -> int:
        return len(self._mem) + self._file_records

    @property
    def file_bytes(self) -> int:
        return self._file.tell() if self._file_records else 0

    def put(self, rec: Record) -> None:
        """Append; raises :class:`Full` when both memory and file are at their limit."""
        if self._file_records == 0 and len(self._mem) < self.memory_records:
            self._mem.append(rec)
            return
        body = self._enc.encode(rec)
        self._file.seek(0, 2)
        if self._file.tell() + len(body) + 4 > self.max_file_bytes:
            raise Full(f"spill file {self.path} reached {self.max_file_bytes} bytes")
        self._file.write(_LEN.pack(len(body)) + body)
        self._file_records += 1
        self.spilled_total += 1

    def put_front(self, rec: Record) -> None:
        """Return a record whose delivery failed to the head of the queue (memory may exceed its limit)."""
        self._mem.appendleft(rec)

    def get(self) -> Record | None:
        if self._mem:
            return self._mem.popleft()
        if not self._file_records:
            return None
        self._file.flush()
        self._file.seek(self._read_pos)
        (size,) = _LEN.unpack(self._file.read(4))
        topic, key, value, headers = self._dec.decode(self._file.read(size))
        self._read_pos = self._file.tell()
        self._file_records -= 1
        if self._file_records == 0:
            self._file.truncate(0)
            self._read_pos = 0
        self._file.seek(0, 2)
        return (topic, key, value, [tuple(h) for h in headers])

    def drop_oldest(self) -> Record | None:
        return self.get()

    def persist_memory(self) -> None:
        """Move the in-memory records to the file (at shutdown), ignoring the size limit."""
        self._file.seek(0, 2)
        while self._mem:
            body = self._enc.encode(self._mem.popleft())
            self._file.write(_LEN.pack(len(body)) + body)
            self._file_records += 1
        self._file.flush()

    def close(self) -> None:
        """Close; an empty spill file is removed (nothing left to resend)."""
        self._file.flush()
        if not len(self):
            self.path.unlink(missing_ok=True)
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
