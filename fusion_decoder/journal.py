"""What the decoder persists so a restart (even SIGKILL) loses and repeats nothing.

An SQLite database in WAL mode (``<state_dir>/journal.sqlite``) with three tables:

* ``sessions``: per node (group, node) its source, incarnation, last contiguous seq
  held and last window: where the node resumes after a restart (its first Ack);
* ``frames``: accepted frames (each chunk of a chunked window is its own row) whose
  window is not decoded yet, with payload, frame shape and operating point (variable-rate
  bundles), re-fed to the aligner on start;
* ``decoded``: every (group, window) decoded, with its presence mask; a window in it is
  never decoded again (late or replayed frames of it are dropped).

Order of writes is the guarantee: frames (and the session's new last seq) are
committed *before* the Ack that promises them is sent, and a decoded window is
committed (its frames deleted in the same transaction) *before* it is published to
subscribers. So every acknowledged frame reaches a decoded window, and every window is
published at most once. ``synchronous=NORMAL`` (default) survives a killed process;
``full`` also survives an OS crash or power loss, at one fsync per commit.

All calls run on one dedicated thread (the caller awaits them through
:meth:`run`), so the event loop never blocks on disk. Frames of many streams share a
transaction (:meth:`Journal.commit_frames`, a group commit): each caller still waits
until its frames are durable, but concurrent streams pay one commit between them.
"""
from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ndsc.wire import FrameData

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    grp TEXT NOT NULL, node TEXT NOT NULL, source INTEGER NOT NULL, incarnation INTEGER NOT NULL,
    last_seq INTEGER NOT NULL, last_window INTEGER NOT NULL, PRIMARY KEY (grp, node));
CREATE TABLE IF NOT EXISTS frames (
    grp TEXT NOT NULL, window INTEGER NOT NULL, source INTEGER NOT NULL, capture_us INTEGER NOT NULL,
    payload BLOB NOT NULL, chunk INTEGER NOT NULL DEFAULT 0, chunks INTEGER NOT NULL DEFAULT 1,
    shape TEXT NOT NULL DEFAULT '', quality TEXT NOT NULL DEFAULT '', PRIMARY KEY (grp, window, source, chunk));
CREATE TABLE IF NOT EXISTS decoded (
    grp TEXT NOT NULL, window INTEGER NOT NULL, present TEXT NOT NULL, run INTEGER NOT NULL,
    PRIMARY KEY (grp, window));
CREATE TABLE IF NOT EXISTS runs (run INTEGER PRIMARY KEY AUTOINCREMENT, started REAL NOT NULL);
"""


@dataclass
class SessionRow:
    group: str
    node: str
    source: int
    incarnation: int
    last_seq: int
    last_window: int


@dataclass
class HeldFrame:
    group: str
    window: int
    source: int
    capture_us: int
    payload: bytes
    chunk: int = 0
    chunks: int = 1
    shape: tuple[int, ...] = ()
    quality: str = ""  # operating point the payload was coded at ("": default / fixed rate)


class Journal:
    """The decoder's durable state. ``Journal(None)`` keeps nothing (every call is a no-op).

    Args:
        state_dir: directory of ``journal.sqlite`` (created), or None.
        sync: ``normal`` (survives a killed process) or ``full`` (also an OS crash).
        remember: decoded window ids per group loaded at start (older ones are kept on
            disk; frames of windows that old are refused as late by the aligner anyway).
    """

    def __init__(self, state_dir: str | Path | None, sync: str = "normal", remember: int = 65536):
        self.enabled = state_dir is not None
        self.remember = remember
        self.run_id = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ndsc-journal") if self.enabled else None
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[tuple, asyncio.Future]] = []  # record_frames calls awaiting the next commit
        self._flusher: asyncio.Task | None = None
        self.commits = 0  # frame transactions committed (group commits count once)
        if self.enabled:
            if sync not in ("normal", "full"):
                raise ValueError("journal sync must be 'normal' or 'full'")
            path = Path(state_dir)
            path.mkdir(parents=True, exist_ok=True)
            self.path = path / "journal.sqlite"
            self._sync = sync
            self._executor.submit(self._open).result()

    def _open(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._sync.upper()}")
        _upgrade(db)
        db.executescript(_SCHEMA)
        with db:
            db.execute("BEGIN")
            # frames of windows already decoded (late frames journaled after their window) are dead
            db.execute("DELETE FROM frames WHERE EXISTS (SELECT 1 FROM decoded d "
                       "WHERE d.grp = frames.grp AND d.window = frames.window)")
            self.run_id = db.execute("INSERT INTO runs (started) VALUES (julianday('now'))").lastrowid
        self._db = db

    async def run(self, fn, *args):
        """Run a journal method on the journal thread (a no-op without a journal)."""
        if not self.enabled:
            return None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ----- reads at start ------------------------------------------------------------------
    def sessions(self) -> list[SessionRow]:
        if not self.enabled:
            return []
        rows = self._executor.submit(lambda: self._db.execute(
            "SELECT grp, node, source, incarnation, last_seq, last_window FROM sessions").fetchall()).result()
        return [SessionRow(*r) for r in rows]

    def held_frames(self) -> list[HeldFrame]:
        if not self.enabled:
            return []
        rows = self._executor.submit(lambda: self._db.execute(
            "SELECT grp, window, source, capture_us, payload, chunk, chunks, shape, quality FROM frames "
            "ORDER BY grp, window, source, chunk").fetchall()).result()
        return [HeldFrame(g, w, s, c, bytes(p), k, n, tuple(int(v) for v in shape.split(",") if v), q)
                for g, w, s, c, p, k, n, shape, q in rows]

    def decoded_windows(self) -> dict[str, list[int]]:
        """The most recent ``remember`` decoded window ids of each group, ascending."""
        if not self.enabled:
            return {}
        rows = self._executor.submit(lambda: self._db.execute(
            "SELECT grp, window FROM (SELECT grp, window, ROW_NUMBER() OVER (PARTITION BY grp ORDER BY window DESC)"
            " AS r FROM decoded) WHERE r <= ? ORDER BY grp, window", (self.remember,)).fetchall()).result()
        out: dict[str, list[int]] = {}
        for g, w in rows:
            out.setdefault(g, []).append(w)
        return out

    # ----- group commit (event loop) ---------------------------------------------------------
    async def commit_frames(self, session: SessionRow, source: int, frames: Sequence[FrameData],
                            shape: Sequence[int] = (), quality: str = "") -> None:
        """:meth:`record_frames`, sharing one transaction with whatever other streams hand in
        meanwhile; returns once these frames are durable (raises what their commit raised)."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append(((session, source, frames, shape, quality), future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self.run(self.record_many, [args for args, _ in batch])
                results = [None] * len(batch)
            except Exception:  # one bad entry must not fail the others: commit them one by one
                results = []
                for args, _ in batch:
                    try:
                        await self.run(self.record_many, [args])
                        results.append(None)
                    except Exception as exc:
                        results.append(exc)
            for (_, future), result in zip(batch, results):
                if future.done():
                    continue
                if result is None:
                    future.set_result(None)
                else:
                    future.set_exception(result)

    # ----- writes (journal thread) -----------------------------------------------------------
    def record_frames(self, session: SessionRow, source: int, frames: Sequence[FrameData],
                      shape: Sequence[int] = (), quality: str = "") -> None:
        """Frames accepted from one message (of frame ``shape``, coded at operating point ``quality``)
        plus the session's new resume point: one transaction."""
        self.record_many([(session, source, frames, shape, quality)])

    def record_many(self, items: Sequence[tuple[SessionRow, int, Sequence[FrameData], Sequence[int], str]]) -> None:
        """Several :meth:`record_frames` calls in one transaction (in order: a later resume
        point of the same node replaces an earlier one)."""
        with self._db:
            self._db.execute("BEGIN")
            for session, source, frames, shape, quality in items:
                shape_text = ",".join(str(int(v)) for v in shape)
                self._db.executemany(
                    "INSERT OR IGNORE INTO frames (grp, window, source, capture_us, payload, chunk, chunks, shape, "
                    "quality) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(session.group, f.window, source, f.capture_us, f.payload, f.chunk, f.chunks, shape_text,
                      quality) for f in frames])
                self._db.execute(
                    "INSERT OR REPLACE INTO sessions (grp, node, source, incarnation, last_seq, last_window) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (session.group, session.node, session.source,
                                                   _signed64(session.incarnation), session.last_seq,
                                                   session.last_window))
        self.commits += 1

    def forget_frames(self, keys: Iterable[tuple[str, int, int]]) -> None:
        """Drop journaled frames the aligner refused (late: their window is already decoded)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM frames WHERE grp = ? AND window = ? AND source = ?", list(keys))

    def record_decoded(self, windows: Sequence[tuple[str, int, Sequence[bool]]]) -> list[bool]:
        """Windows decoded (group, window, present): mark them, delete their frames; one transaction.

        Returns per window whether it was new; False means it was already decoded (never
        expected: the aligner remembers decoded windows) and must not be published again.
        """
        fresh = []
        with self._db:
            self._db.execute("BEGIN")
            for g, w, present in windows:
                cur = self._db.execute("INSERT OR IGNORE INTO decoded (grp, window, present, run) VALUES (?, ?, ?, ?)",
                                       (g, w, "".join("1" if p else "0" for p in present), self.run_id))
                fresh.append(cur.rowcount == 1)
            self._db.executemany("DELETE FROM frames WHERE grp = ? AND window = ?", [(g, w) for g, w, _ in windows])
        return fresh

    def close(self) -> None:
        if self.enabled:
            def _close():
                if self._db is not None:
                    self._db.close()
                    self._db = None
            self._executor.submit(_close).result()
            self._executor.shutdown(wait=True)


def _upgrade(db: sqlite3.Connection) -> None:
    """Bring a journal written before chunked frames (no chunk/chunks/shape columns) or before
    quality points (no quality column) to the schema."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(frames)")}
    if not columns or "quality" in columns:
        return
    if "chunk" in columns:  # frames held before quality points were coded at the default point
        db.execute("ALTER TABLE frames ADD COLUMN quality TEXT NOT NULL DEFAULT ''")
        return
    with db:
        db.execute("BEGIN")
        db.execute("ALTER TABLE frames RENAME TO frames_v1")
        db.execute(_SCHEMA.split(";")[1])  # the new frames table
        db.execute("INSERT INTO frames (grp, window, source, capture_us, payload) "
                   "SELECT grp, window, source, capture_us, payload FROM frames_v1")
        db.execute("DROP TABLE frames_v1")


def _signed64(value: int) -> int:
    """SQLite integers are signed 64-bit; incarnations are random unsigned 64-bit."""
    return value - (1 << 64) if value >= 1 << 63 else value


def unsigned64(value: int) -> int:
    return value + (1 << 64) if value < 0 else value
