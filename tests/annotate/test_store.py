"""gaze.annotate.store: one transaction per submit, append-only answers, concurrent writers, kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from gaze.annotate.store import SCHEMA_VERSION, Rating, Store, StoreError
from tests.annotate.helpers import hand_store

GOOD = {"phase1": Rating(True, False, 4), "phase2": Rating(False, True, 2)}


def test_a_submit_is_one_transaction_and_the_latest_answer_wins_without_losing_the_first(tmp_path):
    store = hand_store(tmp_path / "a.sqlite")
    store.add_annotator("ann")
    store.submit_ratings("ann", "1", GOOD, ["phase2", "phase1"])
    store.submit_ratings("ann", "1", {**GOOD, "phase1": Rating(False, False, 1)}, ["phase1", "phase2"])
    latest = {row["method"]: row for row in store.latest_ratings("ann")}
    assert (latest["phase1"]["necessary"], latest["phase1"]["quality"]) == (0, 1)
    assert latest["phase2"]["quality"] == 2
    total = sqlite3.connect(tmp_path / "a.sqlite").execute("SELECT COUNT(*) FROM ratings").fetchone()[0]
    assert total == 4  # both pages kept: nothing submitted is overwritten
    assert store.next_position("ann") == 1 and store.rated_items("ann") == {"1"}


@pytest.mark.parametrize("ratings, order, message", [
    ({"phase1": Rating(True, False, 4)}, ["phase1", "phase2"], "expected one per method"),
    (GOOD, ["phase1", "phase1"], "not a permutation"),
    ({**GOOD, "phase2": Rating(True, True, 9)}, ["phase1", "phase2"], "quality 9 outside 1-5"),
])
def test_a_bad_page_is_refused_and_writes_nothing(tmp_path, ratings, order, message):
    store = hand_store(tmp_path / "a.sqlite")
    store.add_annotator("ann")
    with pytest.raises(StoreError, match=message):
        store.submit_ratings("ann", "1", ratings, order)
    with pytest.raises(StoreError, match="no item '99'"):
        store.submit_ratings("ann", "99", GOOD, ["phase1", "phase2"])
    with pytest.raises(StoreError, match="no annotator 'nobody'"):
        store.submit_ratings("nobody", "1", GOOD, ["phase1", "phase2"])
    assert store.latest_ratings() == []


def test_a_failing_transaction_rolls_back_every_row(tmp_path):
    store = hand_store(tmp_path / "a.sqlite")
    store.add_annotator("ann")
    with pytest.raises(sqlite3.IntegrityError):
        with store.transaction() as db:
            db.execute("INSERT INTO ratings (annotator, item, method, necessary, unnecessary, quality, shown_order, "
                       "submitted) VALUES ('ann', '1', 'phase1', 1, 0, 3, '[]', 'now')")
            db.execute("INSERT INTO ratings (annotator, item, method, necessary, unnecessary, quality, shown_order, "
                       "submitted) VALUES ('ann', '1', 'phase1', 1, 0, 7, '[]', 'now')")  # CHECK fails
    assert store.latest_ratings() == []


def test_the_file_is_wal_and_versioned(tmp_path):
    store = hand_store(tmp_path / "a.sqlite")
    assert store.connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.meta()["schema_version"] == str(SCHEMA_VERSION)
    store.connection().execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99"):
        Store(tmp_path / "a.sqlite")


def test_tokens_are_kept_as_digests(tmp_path):
    store = hand_store(tmp_path / "a.sqlite")
    store.add_annotator("ann", token="s3cret")
    assert store.check_token("ann", "s3cret") and not store.check_token("ann", "guess")
    assert not store.check_token("nobody", "s3cret")
    raw = sqlite3.connect(tmp_path / "a.sqlite").execute("SELECT token_sha256 FROM annotators").fetchone()[0]
    assert "s3cret" not in raw and len(raw) == 64


def test_concurrent_writers_in_threads_all_land(tmp_path):
    store = hand_store(tmp_path / "a.sqlite", items=10)
    names = [f"ann{k}" for k in range(4)]
    for name in names:
        store.add_annotator(name)

    def annotate(name):
        for item in range(1, 11):
            store.submit_ratings(name, str(item), GOOD, ["phase1", "phase2"])

    threads = [threading.Thread(target=annotate, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.latest_ratings()) == 4 * 10 * 2 and store.integrity() == "ok"


WRITER = """
import sys
from gaze.annotate.store import Rating, Store
store = Store(sys.argv[1])
name = sys.argv[2]
good = {"phase1": Rating(True, False, 4), "phase2": Rating(False, True, 2)}
for round in range(10_000):
    store.submit_ratings(name, str(round % 10 + 1), good, ["phase1", "phase2"])
    print(round + 1, flush=True)  # after the commit returned
"""


def test_writer_processes_killed_mid_run_lose_nothing_committed(tmp_path):
    path = tmp_path / "a.sqlite"
    store = hand_store(path, items=10)
    names = [f"p{k}" for k in range(3)]
    for name in names:
        store.add_annotator(name)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name], stdout=subprocess.PIPE, text=True,
                                env=env) for name in names]
    committed = {}
    deadline = time.time() + 60
    for name, writer in zip(names, writers):
        count = 0
        while count < 15 and time.time() < deadline:  # let each commit a few pages, then kill it mid-run
            count = int(writer.stdout.readline())
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        committed[name] = count
    reopened = Store(path)
    assert reopened.integrity() == "ok"
    counts = dict(reopened.connection().execute("SELECT annotator, COUNT(*) / 2 FROM ratings GROUP BY annotator"))
    for name in names:
        assert counts[name] >= committed[name] >= 15  # every page reported committed is there
