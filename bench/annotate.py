"""Benchmark: the annotation app's store and pages against the published CSV front end.

    python bench/annotate.py [--items 1000] [--writers 4] [--submits 200] [--pages 300]

(a) store: ``--writers`` processes each submit ``--submits`` pages (two methods' answers a
page) into one ``gaze.annotate.store.Store`` at the same time (one committed SQLite
transaction per page, synchronous=FULL, WAL); the baseline is a faithful re-implementation of
the published ``app.py`` submit (gradia_cal.md A10): read ``output/results.csv`` with pandas,
set the row's answers, write ``results.csv`` and ``current.csv`` back; ONE writer, since two
would overwrite each other's files. Printed: pages/s of each and the ratio (ours with all
writers together / published), and ours with one writer.

(b) pages: the Flask test client, one signed-in annotator, ``--pages`` rating pages of a
``--items`` store: GET ``/rate/k`` and POST its answers; median and p95 milliseconds of each.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from gaze.annotate.store import Item, Rating, Store

METHODS = ("phase1", "phase2")
PAGE = {"phase1": Rating(True, False, 4), "phase2": Rating(False, True, 2)}


def make_store(path: Path, items: int) -> Store:
    store = Store(path)
    store.set_meta({"split": "val"})
    store.add_methods([(method, method) for method in METHODS])
    store.add_items([Item(str(k), k, 0, "images/0.jpg", None, 8, 6) for k in range(items)],
                    [(str(k), method, 0, f"overlays/{method}/0.png") for k in range(items) for method in METHODS])
    return store


def writer(path: str, name: str, submits: int, items: int, start, done) -> None:
    store = Store(path)
    start.wait()
    for k in range(submits):
        store.submit_ratings(name, str(k % items), PAGE, list(METHODS))
    done.put(time.perf_counter())


def ours(folder: Path, writers: int, submits: int, items: int) -> float:
    """Pages/s of ``writers`` processes submitting together."""
    path = folder / f"ours_{writers}.sqlite"
    store = make_store(path, items)
    names = [f"w{k}" for k in range(writers)]
    for name in names:
        store.add_annotator(name)
    context = multiprocessing.get_context("spawn")
    start, done = context.Barrier(writers + 1), context.Queue()
    processes = [context.Process(target=writer, args=(str(path), name, submits, items, start, done)) for name in names]
    for process in processes:
        process.start()
    start.wait()
    began = time.perf_counter()
    ends = [done.get() for _ in processes]
    for process in processes:
        process.join()
    assert len(store.latest_ratings()) == writers * min(submits, items) * len(METHODS)
    return writers * submits / (max(ends) - began)


def published(folder: Path, submits: int, items: int) -> float:
    """Pages/s of the published submit: read results.csv, set the row, write results.csv and current.csv."""
    output = folder / "output"
    output.mkdir()
    columns = ["img_idx", *(f"{p}_{k}" for p in "abc" for k in range(1, 5)), "rnd_order"]
    frame = pd.DataFrame({"img_idx": [str(k) for k in range(items)]}).reindex(columns=columns)
    frame.to_csv(output / "results.csv")
    pd.DataFrame({"current": [0]}).to_csv(output / "current.csv")
    began = time.perf_counter()
    for k in range(submits):
        results = pd.read_csv(output / "results.csv", index_col=0, dtype=object)  # pandas 3 will not upcast NaN columns
        row = k % items
        order = [0, 2, 1]
        for j, method in enumerate(METHODS, start=1):
            answer = PAGE[method]
            results.loc[row, f"a_{j}"], results.loc[row, f"b_{j}"] = str(answer.necessary), str(answer.unnecessary)
            results.loc[row, f"c_{j}"] = answer.quality
        results.loc[row, "rnd_order"] = str(order)
        results.to_csv(output / "results.csv")
        pd.DataFrame({"current": [row + 1]}).to_csv(output / "current.csv")
    return submits / (time.perf_counter() - began)


def page_times(folder: Path, items: int, pages: int) -> dict[str, list[float]]:
    """Milliseconds of GET /rate/k and POST /rate/k through the Flask test client."""
    from gaze.annotate.app import create_app

    path = folder / "pages.sqlite"
    make_store(path, items)
    files = folder / "files"
    for relative in ("images/0.jpg", *(f"overlays/{m}/0.png" for m in METHODS)):
        (files / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((6, 8, 3), 90, np.uint8)).save(files / relative)
    client = create_app(path, files).test_client()
    token = re.search(rb'name="csrf-token" content="([^"]+)"', client.get("/login").data).group(1).decode()
    client.post("/login", data={"name": "bench", "csrf_token": token})
    answers = {"csrf_token": token, "order": "0,1", "q1_0": "yes", "q2_0": "no", "q3_0": "4", "q1_1": "no",
               "q2_1": "yes", "q3_1": "2"}
    times: dict[str, list[float]] = {"GET /rate/k": [], "POST /rate/k": []}
    for k in range(pages):
        began = time.perf_counter()
        assert client.get(f"/rate/{k}").status_code == 200
        middle = time.perf_counter()
        assert client.post(f"/rate/{k}", data=answers).status_code == 302
        end = time.perf_counter()
        times["GET /rate/k"].append((middle - began) * 1000)
        times["POST /rate/k"].append((end - middle) * 1000)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--submits", type=int, default=200, help="pages per writer")
    parser.add_argument("--pages", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        baseline = published(folder, args.submits, args.items)
        single = ours(folder, 1, args.submits, args.items)
        together = ours(folder, args.writers, args.submits, args.items)
        print(f"(a) store, {args.items} items, {args.submits} pages per writer")
        print(f"    published CSV submit, 1 writer : {baseline:8.1f} pages/s")
        print(f"    ours SQLite, 1 writer          : {single:8.1f} pages/s  (ratio {single / baseline:.2f}x)")
        print(f"    ours SQLite, {args.writers} writers together : {together:8.1f} pages/s  "
              f"(ratio {together / baseline:.2f}x; the published files cannot take concurrent writers)")
        times = page_times(folder, args.items, args.pages)
        print(f"(b) pages, {args.items} items, {args.pages} pages (Flask test client)")
        for name, values in times.items():
            p95 = float(np.percentile(values, 95))
            print(f"    {name:13s} median {statistics.median(values):6.2f} ms, p95 {p95:6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
