"""``python -m gaze annotate``: prepare a study from trained runs and serve it; export; annotators.

    python -m gaze annotate --run runs/cub/gradia_demo                   # prepare once, then serve at 127.0.0.1:5000
    python -m gaze annotate --run runs/cub/gradia_demo --methods runs/cub/gradia_demo/phase1,runs/cub/gat_demo
    python -m gaze annotate --run runs/folder/gradia --host 0.0.0.0 --server waitress   # several annotators (tokens)
    python -m gaze annotate add-annotator --db runs/cub/gradia_demo/annotations/annotations.sqlite --name alice
    python -m gaze annotate export --db runs/cub/gradia_demo/annotations/annotations.sqlite --out export

The store defaults to ``<run>/annotations/annotations.sqlite`` with its image files beside it
(``annotations_files/``); a study already prepared there is served as it is. Served beyond
127.0.0.1, annotators sign in with a token from ``add-annotator``.
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import sys
from pathlib import Path

from gaze.annotate.export import COMBINE_RULES, VERDICT_RULES, export, summary_line
from gaze.annotate.store import Store

DEFAULT_PORT = 5000
SERVERS = ("flask", "waitress")


def files_folder(db: Path) -> Path:
    """The image folder of a store: ``<db stem>_files`` beside it."""
    return db.with_name(f"{db.stem}_files")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gaze annotate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--run", required=True, type=Path, help="the run whose model is explained (cub, cxr or folder tree)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated run folders or checkpoints to explain, up to 4 (default: --run)")
    parser.add_argument("--split", default="val", help="the split whose images are rated (default: val, GRADIA's phase 2 input)")
    parser.add_argument("--fold", type=int, default=0, help="cross-validation fold of CXR runs (default 0)")
    parser.add_argument("--limit", type=int, default=None, help="rate only the first N images of the split")
    parser.add_argument("--db", type=Path, default=None, help="the SQLite store (default <run>/annotations/annotations.sqlite)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--server", choices=SERVERS, default="flask",
                        help="'flask' (its threaded development server) | 'waitress' (a production WSGI server)")
    parser.add_argument("--prepare-only", action="store_true", help="prepare the items and stop")
    return parser


def serve_main(argv: list[str]) -> int:
    args = serve_parser().parse_args(argv)
    db = args.db or args.run / "annotations" / "annotations.sqlite"
    store = Store(db)
    if store.count() == 0:
        from gaze.annotate.prepare import prepare  # torch and the trees: only when preparing

        methods = [Path(m) for m in args.methods.split(",")] if args.methods else [args.run]
        count = prepare(store, files_folder(db), methods, args.split, args.fold, limit=args.limit)
        print(f"prepared {count} {args.split} images explained by {len(methods)} method(s) -> {db}")
    else:
        asked = [str(Path(m).as_posix()).rstrip("/") for m in args.methods.split(",")] if args.methods else None
        if asked is not None and asked != store.methods():
            print(f"{db} was prepared for methods {store.methods()}, not {asked}: give another --db for a new study",
                  file=sys.stderr)
            return 2
        print(f"{db}: {store.count()} images prepared earlier (methods {', '.join(store.methods())})")
    if args.prepare_only:
        return 0
    from gaze.annotate.app import create_app

    require_token = not is_loopback(args.host)
    if require_token and not store.annotators():
        print(f"--host {args.host} serves beyond this machine: annotators sign in with tokens; add them first with "
              f"python -m gaze annotate add-annotator --db {db} --name <name>", file=sys.stderr)
        return 2
    app = create_app(db, files_folder(db), require_token=require_token)
    print(f"serving http://{args.host}:{args.port}/ ({args.server}); overview at /overview; Ctrl-C stops")
    if args.server == "waitress":
        from waitress import serve

        serve(app, host=args.host, port=args.port, threads=8)
    else:
        app.run(host=args.host, port=args.port, debug=False, threaded=True)
    return 0


def export_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gaze annotate export",
                                     description="Write the store's answers as the files GRADIA's phase 2 reads.")
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--method", default=None, help="the method whose ratings become reasonablity_<split>.json (default: the first)")
    parser.add_argument("--verdict_rule", choices=list(VERDICT_RULES), default="necessary_only",
                        help="; ".join(f"{k}: {v}" for k, v in VERDICT_RULES.items()))
    parser.add_argument("--combine", choices=list(COMBINE_RULES), default="majority",
                        help="; ".join(f"{k}: {v}" for k, v in COMBINE_RULES.items()))
    args = parser.parse_args(argv)
    if not args.db.is_file():
        parser.error(f"--db {args.db}: no such store")
    store = Store(args.db)
    print(summary_line(export(store, args.out, args.method, args.verdict_rule, args.combine), store))
    return 0


def add_annotator_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gaze annotate add-annotator",
                                     description="Register an annotator with a new sign-in token (printed once).")
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--name", required=True)
    args = parser.parse_args(argv)
    from gaze.annotate.app import NAME_PATTERN

    if not NAME_PATTERN.match(args.name):
        parser.error(f"--name {args.name!r}: 1-64 letters, digits, '_', '-' or '.'")
    store = Store(args.db)
    if args.name in store.annotators():
        parser.error(f"{args.name!r} is already registered in {args.db}")
    token = secrets.token_urlsafe(16)
    store.add_annotator(args.name, token)
    print(f"{args.name}: token {token}")
    return 0


SUBCOMMANDS = {"export": export_main, "add-annotator": add_annotator_main}


def main(argv: list[str] | None = None) -> int:
    """``annotate [export | add-annotator] ...``; without a subcommand: prepare and serve."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    return serve_main(argv)


if __name__ == "__main__":
    sys.exit(main())
