"""The annotation store: one SQLite file (WAL mode) holding items, annotators and their answers.

Every submit is one transaction, committed (fsync'd by SQLite) before the call returns, so a
submitted answer is on disk before the next page is served, and killing the server at any
moment loses nothing already submitted and corrupts nothing. Answers are append-only: a
changed answer is a new row and the latest row of an (annotator, item, method) is the
answer; nothing submitted is ever overwritten. Several processes and threads may write at
once: each connection waits up to ``BUSY_TIMEOUT_S`` for the write lock.

Schema (``SCHEMA_VERSION``; a file of another version is an error naming it):

* ``meta(key, value)``: ``schema_version``, ``split``, ``run``.
* ``methods(method, position, run)``: the explained models, in the order given.
* ``items(item, position, label, image, gaze, width, height)``: the images to rate, the paths
  of the image shown and of its gaze map (relative to the store's file folder; ``gaze`` may
  be NULL), and the image's own size (masks are saved at it).
* ``predictions(item, method, predicted, overlay)``: each model's predicted class and the
  path of its Grad-CAM overlay.
* ``annotators(name, token_sha256, created)``.
* ``ratings(id, annotator, item, method, necessary, unnecessary, quality, shown_order, submitted)``:
  Q1 / Q2 as 0/1, Q3 1-5, the shuffled order the overlays were shown in (JSON list of methods).
* ``masks(id, annotator, item, png, width, height, start, submitted)``: drawn masks as PNG bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Mapping, Sequence

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
QUALITY_RANGE = (1, 5)
MASK_STARTS = ("empty", "cam", "gaze")
ITEM_COLUMNS = "item, position, label, image, gaze, width, height"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS methods (method TEXT PRIMARY KEY, position INTEGER NOT NULL UNIQUE, run TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item TEXT PRIMARY KEY, position INTEGER NOT NULL UNIQUE, label INTEGER NOT NULL,
    image TEXT NOT NULL, gaze TEXT, width INTEGER NOT NULL, height INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS predictions (
    item TEXT NOT NULL REFERENCES items(item), method TEXT NOT NULL REFERENCES methods(method),
    predicted INTEGER NOT NULL, overlay TEXT NOT NULL, PRIMARY KEY (item, method));
CREATE TABLE IF NOT EXISTS annotators (name TEXT PRIMARY KEY, token_sha256 TEXT, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    annotator TEXT NOT NULL REFERENCES annotators(name), item TEXT NOT NULL REFERENCES items(item),
    method TEXT NOT NULL REFERENCES methods(method),
    necessary INTEGER NOT NULL CHECK (necessary IN (0, 1)),
    unnecessary INTEGER NOT NULL CHECK (unnecessary IN (0, 1)),
    quality INTEGER NOT NULL CHECK (quality BETWEEN 1 AND 5),
    shown_order TEXT NOT NULL, submitted TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS masks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    annotator TEXT NOT NULL REFERENCES annotators(name), item TEXT NOT NULL REFERENCES items(item),
    png BLOB NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    start TEXT NOT NULL, submitted TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ratings_by_item ON ratings (annotator, item, method, id);
CREATE INDEX IF NOT EXISTS masks_by_item ON masks (annotator, item, id);
"""


class StoreError(ValueError):
    """A request the store refuses (unknown item, method or annotator; an answer out of range)."""


@dataclass(frozen=True)
class Item:
    """One image to rate: its id, 0-based position, label, file paths (relative to the file
    folder) and its own width and height."""

    item: str
    position: int
    label: int
    image: str
    gaze: str | None
    width: int
    height: int


@dataclass(frozen=True)
class Rating:
    """One annotator's answers about one method's attention on one item."""

    necessary: bool
    unnecessary: bool
    quality: int


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def token_digest(token: str) -> str:
    """SHA-256 hex digest of an annotator token (the store keeps only digests)."""
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    """The annotation database at ``path``; one connection per thread.

    Args:
        path: the SQLite file (created with the schema when missing).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self.connection().executescript(SCHEMA)  # CREATE ... IF NOT EXISTS: safe to race with another process
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {row[0]}, this gaze reads version {SCHEMA_VERSION}")

    # ----------------------------------------------------------------- connections
    def connection(self) -> sqlite3.Connection:
        """This thread's connection (WAL, foreign keys on, synchronous FULL)."""
        db = getattr(self._local, "db", None)
        if db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=True)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            self._local.db = db
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error)."""
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # ----------------------------------------------------------------- setup
    def meta(self) -> dict[str, str]:
        """The ``meta`` table as a dict."""
        return dict(self.connection().execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, values: Mapping[str, str]) -> None:
        """Write ``meta`` entries (``schema_version`` excepted)."""
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           [(key, str(value)) for key, value in values.items() if key != "schema_version"])

    def add_methods(self, methods: Sequence[tuple[str, str]]) -> None:
        """Register ``(method name, run folder)`` pairs, in order; existing ones are kept."""
        with self.transaction() as db:
            start = db.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM methods").fetchone()[0]
            for offset, (method, run) in enumerate(methods):
                db.execute("INSERT OR IGNORE INTO methods VALUES (?, ?, ?)", (method, start + offset, run))

    def add_items(self, items: Sequence[Item], predictions: Sequence[tuple[str, str, int, str]]) -> None:
        """Register items and ``(item, method, predicted class, overlay path)`` rows (idempotent)."""
        with self.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(i.item, i.position, i.label, i.image, i.gaze, i.width, i.height) for i in items])
            db.executemany("INSERT OR IGNORE INTO predictions VALUES (?, ?, ?, ?)", predictions)

    def methods(self) -> list[str]:
        """Method names in their registered order."""
        return [row[0] for row in self.connection().execute("SELECT method FROM methods ORDER BY position")]

    def items(self) -> list[Item]:
        """Every item in position order."""
        rows = self.connection().execute(f"SELECT {ITEM_COLUMNS} FROM items ORDER BY position")
        return [Item(*row) for row in rows]

    def item_at(self, position: int) -> Item:
        """The item at a 0-based position; StoreError when there is none."""
        row = self.connection().execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE position = ?", (position,)).fetchone()
        if row is None:
            raise StoreError(f"no item at position {position}")
        return Item(*row)

    def count(self) -> int:
        """Number of items."""
        return self.connection().execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def item(self, item: str) -> Item:
        """One item; StoreError for an unknown id."""
        row = self.connection().execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE item = ?", (item,)).fetchone()
        if row is None:
            raise StoreError(f"no item {item!r}")
        return Item(*row)

    def predictions(self, item: str) -> dict[str, tuple[int, str]]:
        """{method: (predicted class, overlay path)} of an item."""
        rows = self.connection().execute("SELECT method, predicted, overlay FROM predictions WHERE item = ?", (item,))
        return {method: (predicted, overlay) for method, predicted, overlay in rows}

    # ----------------------------------------------------------------- annotators
    def add_annotator(self, name: str, token: str | None = None) -> None:
        """Register an annotator (a name; with a token its SHA-256 is kept); existing names are kept."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO annotators VALUES (?, ?, ?)",
                       (name, token_digest(token) if token else None, _now()))

    def annotators(self) -> list[str]:
        """Annotator names, sorted."""
        return [row[0] for row in self.connection().execute("SELECT name FROM annotators ORDER BY name")]

    def check_token(self, name: str, token: str) -> bool:
        """Whether ``token`` is the annotator's (False for an unknown name or one without a token)."""
        row = self.connection().execute("SELECT token_sha256 FROM annotators WHERE name = ?", (name,)).fetchone()
        return row is not None and row[0] is not None and row[0] == token_digest(token)

    # ----------------------------------------------------------------- answers
    def submit_ratings(self, annotator: str, item: str, ratings: Mapping[str, Rating], shown_order: Sequence[str]) -> None:
        """Store one page of answers (every method of the item) in ONE transaction.

        Raises:
            StoreError: unknown annotator or item, a method missing or unknown, an answer out of range.
        """
        methods = self.methods()
        if sorted(ratings) != sorted(methods):
            raise StoreError(f"item {item!r}: answers for {sorted(ratings)}, expected one per method {methods}")
        if sorted(shown_order) != sorted(methods):
            raise StoreError(f"item {item!r}: shown order {list(shown_order)} is not a permutation of {methods}")
        for method, rating in ratings.items():
            if not QUALITY_RANGE[0] <= rating.quality <= QUALITY_RANGE[1]:
                raise StoreError(f"item {item!r}, {method}: quality {rating.quality} outside 1-5")
        self._check_annotator_and_item(annotator, item)
        stamp, order = _now(), json.dumps(list(shown_order))
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO ratings (annotator, item, method, necessary, unnecessary, quality, shown_order, submitted) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(annotator, item, method, int(r.necessary), int(r.unnecessary), int(r.quality), order, stamp)
                 for method, r in ratings.items()])

    def submit_mask(self, annotator: str, item: str, png: bytes, width: int, height: int, start: str) -> None:
        """Store one drawn mask (PNG bytes of the image's size) in one transaction."""
        if start not in MASK_STARTS:
            raise StoreError(f"mask start {start!r}: expected one of {', '.join(MASK_STARTS)}")
        self._check_annotator_and_item(annotator, item)
        with self.transaction() as db:
            db.execute("INSERT INTO masks (annotator, item, png, width, height, start, submitted) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", (annotator, item, png, width, height, start, _now()))

    def _check_annotator_and_item(self, annotator: str, item: str) -> None:
        db = self.connection()
        if db.execute("SELECT 1 FROM annotators WHERE name = ?", (annotator,)).fetchone() is None:
            raise StoreError(f"no annotator {annotator!r}")
        if db.execute("SELECT 1 FROM items WHERE item = ?", (item,)).fetchone() is None:
            raise StoreError(f"no item {item!r}")

    def latest_ratings(self, annotator: str | None = None) -> list[dict]:
        """The current answer of every (annotator, item, method): its latest row."""
        query = ("SELECT r.annotator, r.item, r.method, r.necessary, r.unnecessary, r.quality, r.shown_order, r.submitted "
                 "FROM ratings r JOIN (SELECT MAX(id) AS id FROM ratings GROUP BY annotator, item, method) last "
                 "ON r.id = last.id")
        rows = self.connection().execute(query + (" WHERE r.annotator = ?" if annotator else "") + " ORDER BY r.id",
                                         (annotator,) if annotator else ())
        keys = ("annotator", "item", "method", "necessary", "unnecessary", "quality", "shown_order", "submitted")
        return [dict(zip(keys, row)) for row in rows]

    def latest_masks(self, annotator: str | None = None) -> list[dict]:
        """The current mask of every (annotator, item): its latest row."""
        query = ("SELECT m.annotator, m.item, m.png, m.width, m.height, m.start, m.submitted FROM masks m "
                 "JOIN (SELECT MAX(id) AS id FROM masks GROUP BY annotator, item) last ON m.id = last.id")
        rows = self.connection().execute(query + (" WHERE m.annotator = ?" if annotator else "") + " ORDER BY m.id",
                                         (annotator,) if annotator else ())
        keys = ("annotator", "item", "png", "width", "height", "start", "submitted")
        return [dict(zip(keys, row)) for row in rows]

    def rated_items(self, annotator: str) -> set[str]:
        """Items the annotator has answered."""
        rows = self.connection().execute("SELECT DISTINCT item FROM ratings WHERE annotator = ?", (annotator,))
        return {row[0] for row in rows}

    def next_position(self, annotator: str) -> int:
        """Position of the first item the annotator has not rated (= the item count when done)."""
        done = self.rated_items(annotator)
        for item in self.items():
            if item.item not in done:
                return item.position
        return len(self.items())

    def integrity(self) -> str:
        """``PRAGMA integrity_check``: 'ok' for a sound file."""
        return self.connection().execute("PRAGMA integrity_check").fetchone()[0]
