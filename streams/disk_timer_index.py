"""The delay table's index of due times, on disk: a million waiting messages cost no heap.

Same contract as ``TimerIndex`` (timer_index.py): the delay table is the truth, this only says
when to look, it is rebuilt from the table after every partition recovery and may hold stale
pairs. The in-memory heap held about 180 bytes per waiting message (180 MB per million, and as
much again while a recovery rebuilt it); here each pair is a RocksDB key, ``due`` as 8 bytes
big-endian then the message id, so RocksDB's key order is due order. The database is a cache:
it is wiped when the worker starts, written without a write-ahead log, and its memtable is
kept small so that what it holds in memory stays bounded.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterable
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from kafstash.streams.timer_index import wait_for

_WRITE_BUFFER_BYTES = 8 << 20  # RocksDB's default is 64 MiB of memtable
_BATCH = 10_000  # pairs per write batch while rebuilding
_END = b"\x80"  # above every key: due times are positive 63-bit integers


def _key(due_ms: int, message_id: str) -> bytes:
    return due_ms.to_bytes(8, "big") + message_id.encode()


def _pair(key: bytes) -> tuple[int, str]:
    return int.from_bytes(key[:8], "big"), key[8:].decode()


class DiskTimerIndex:
    def __init__(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.set_write_buffer_size(_WRITE_BUFFER_BYTES)
        self._db = Rdict(str(path), options)
        writes = WriteOptions()
        # A property at run time; rocksdict's stubs declare a method.
        writes.disable_wal = True  # type: ignore[method-assign,assignment]
        self._db.set_write_options(writes)
        self._count = 0
        # Every key below this was popped: iterating from here skips the deleted keys that
        # RocksDB would otherwise step over on every look at the front until compaction.
        self._floor = b""
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self._db.close()

    def add(self, due_ms: int, message_id: str) -> None:
        key = _key(due_ms, message_id)
        earliest = self.next_due()
        if key in self._db:
            return
        self._db[key] = b""
        self._count += 1
        self._floor = min(self._floor, key)
        if earliest is None or due_ms < earliest:
            self._changed.set()

    def replace_all(self, pairs: Iterable[tuple[int, str]]) -> None:
        """Forget every pair and index ``pairs`` (read from the table, in chunks)."""
        self._db.delete_range(b"", _END)
        self._count = 0
        self._floor = b""
        batch = WriteBatch(raw_mode=True)
        for due, message_id in pairs:
            batch.put(_key(due, message_id), b"")
            self._count += 1
            if len(batch) >= _BATCH:
                self._db.write(batch)
                batch = WriteBatch(raw_mode=True)
        self._db.write(batch)
        self._changed.set()

    def pop_due(self, now_ms: int, limit: int = 10_000) -> list[tuple[int, str]]:
        self._changed.clear()  # as TimerIndex: an add() while the caller is busy wakes it
        out: list[tuple[int, str]] = []
        batch = WriteBatch(raw_mode=True)
        it = self._db.iter()
        it.seek(self._floor)
        while it.valid() and len(out) < limit:
            key: bytes = it.key()
            due, message_id = _pair(key)
            if due > now_ms:
                break
            out.append((due, message_id))
            batch.delete(key)
            self._floor = key
            it.next()
        del it
        if out:
            self._db.write(batch)
            self._count -= len(out)
        return out

    def next_due(self) -> int | None:
        it = self._db.iter()
        it.seek(self._floor)
        due = _pair(it.key())[0] if it.valid() else None
        del it
        return due

    async def wait(self, timeout_s: float) -> None:
        """Sleep until ``timeout_s`` passes or an earlier due time is added."""
        await wait_for(self._changed, timeout_s)
