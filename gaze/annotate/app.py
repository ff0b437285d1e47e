"""The annotation web app (Flask): rating page, mask page, overview; answers go to the store.

The published GRADIA front end (gradia_cal.md A10), fixed: nothing is pre-selected (submit
stays disabled until every question is answered), the overlays' shuffled order is recorded
with the answers, each annotator's answers are kept apart and resume where they stopped,
masks can be drawn, and every submit is one committed SQLite transaction before the next
page is served. Every POST carries a CSRF token (Flask-WTF); a malformed request gets a 4xx
page with a message, never a 500 or a half-written row.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import random
import re
import secrets
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, abort, jsonify, redirect, render_template, request, send_from_directory, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from PIL import Image, UnidentifiedImageError
from werkzeug.exceptions import HTTPException

from gaze.annotate.agreement import agreement_summary
from gaze.annotate.store import MASK_STARTS, QUALITY_RANGE, Rating, Store, StoreError

#: Largest request body (a mask PNG as a data URL): 8 MiB.
MAX_REQUEST_BYTES = 8 * 1024 * 1024
#: Largest mask side accepted, px.
MAX_MASK_SIDE = 8192
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
YES_NO = {"yes": True, "no": False}


def shown_order(methods: list[str], annotator: str, position: int) -> list[str]:
    """The methods in the order one annotator sees them on one item (seeded, so a reload shows the same)."""
    order = list(methods)
    random.Random(f"{annotator}\x00{position}").shuffle(order)
    return order


def decode_mask_upload(data_url: Any, width: int, height: int, shown: tuple[int, int]) -> bytes:
    """A canvas PNG data URL -> the binary mask PNG at the image's own size (``width`` x ``height``).

    The canvas is the displayed size ``shown`` (W, H) or the image's; a pixel is in the mask
    where its alpha (or, without alpha, its grey level) is at least 128.

    Raises:
        ValueError: not a PNG data URL, an unreadable image, or a size that is neither.
    """
    prefix = "data:image/png;base64,"
    if not isinstance(data_url, str) or not data_url.startswith(prefix):
        raise ValueError("'png' must be a data:image/png;base64 URL")
    try:
        raw = base64.b64decode(data_url[len(prefix):], validate=True)
        with Image.open(io.BytesIO(raw)) as picture:
            if picture.format != "PNG":
                raise ValueError("'png' is not a PNG image")
            if max(picture.size) > MAX_MASK_SIDE:
                raise ValueError(f"mask of {picture.size[0]}x{picture.size[1]} px: larger than {MAX_MASK_SIDE} px")
            picture.load()
            channels = picture.convert("RGBA") if "A" in picture.getbands() else picture.convert("L")
    except (binascii.Error, UnidentifiedImageError, OSError) as error:
        raise ValueError(f"'png' cannot be read as an image ({error})") from None
    if channels.size not in (tuple(shown), (width, height)):
        raise ValueError(f"mask of {channels.size[0]}x{channels.size[1]} px: expected the canvas "
                         f"{shown[0]}x{shown[1]} or the image {width}x{height}")
    plane = np.asarray(channels)[..., 3] if channels.mode == "RGBA" else np.asarray(channels)
    mask = Image.fromarray(((plane >= 128) * 255).astype(np.uint8)).resize((width, height), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def create_app(db: str | os.PathLike, files: str | os.PathLike, require_token: bool = False) -> Flask:
    """The app over the store ``db`` and its prepared ``files`` folder.

    Args:
        db: the SQLite store (``gaze.annotate.store``), prepared.
        files: its image folder (``gaze.annotate.prepare``).
        require_token: annotators must be registered with a token and give it to sign in
            (set when the app is served beyond 127.0.0.1).
    """
    store = Store(db)
    app = Flask(__name__)
    secret = store.meta().get("secret_key")
    if secret is None:  # kept in the store: sessions survive a restart
        secret = secrets.token_hex(32)
        store.set_meta({"secret_key": secret})
    app.config.update(SECRET_KEY=secret, MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES, WTF_CSRF_TIME_LIMIT=None,
                      SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_HTTPONLY=True)
    CSRFProtect(app)
    files = Path(files).resolve()
    app.extensions["gaze_store"] = store

    def current_annotator() -> str:
        name = session.get("annotator")
        if name is None or name not in store.annotators():
            abort(redirect(url_for("login")))
        return name

    def shown_size(item) -> tuple[int, int]:
        """(W, H) of the image file shown for an item."""
        try:
            with Image.open(files / item.image) as shown:
                return shown.size
        except OSError:
            abort(404, f"the image file of item {item.item!r} is missing from {files}: prepare the study again")

    def item_or_404(position: int):
        try:
            return store.item_at(position)
        except StoreError:
            abort(404, f"no image {position + 1}: the study has {store.count()} images")

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return render_template("error.html", code=400, message=f"Request refused: {error.description} "
                               "Reload the page and submit again."), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if request.is_json or request.path.endswith(".json"):
            return jsonify(error=error.description), error.code
        return render_template("error.html", code=error.code, message=error.description), error.code

    @app.route("/", methods=["GET"])
    def index():
        if session.get("annotator") in store.annotators():
            position = store.next_position(session["annotator"])
            return redirect(url_for("rate", position=position) if position < store.count() else url_for("done"))
        return redirect(url_for("login"))

    @app.route("/login", methods=["GET", "POST"])
    def login():
        if request.method == "GET":
            return render_template("login.html", require_token=require_token, meta=store.meta())
        name = request.form.get("name", "").strip()
        if not NAME_PATTERN.match(name):
            abort(400, "Your name: 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit.")
        if require_token:
            if not store.check_token(name, request.form.get("token", "")):
                abort(403, "Unknown name or wrong token: ask the researcher for yours.")
        else:
            store.add_annotator(name)
        session["annotator"] = name
        return redirect(url_for("index"))

    @app.route("/logout", methods=["POST"])
    def logout():
        session.pop("annotator", None)
        return redirect(url_for("login"))

    @app.route("/rate/<int:position>", methods=["GET"])
    def rate(position: int):
        annotator = current_annotator()
        item = item_or_404(position)
        methods = store.methods()
        order = shown_order(methods, annotator, position)
        predictions = store.predictions(item.item)
        previous = {row["method"]: row for row in store.latest_ratings(annotator) if row["item"] == item.item}
        overlays = [{"index": methods.index(method), "overlay": predictions[method][1], "previous": previous.get(method)}
                    for method in order]
        return render_template("rate.html", item=item, position=position, count=store.count(), overlays=overlays,
                               order=",".join(str(methods.index(m)) for m in order), annotator=annotator,
                               done=len(store.rated_items(annotator)), quality=range(QUALITY_RANGE[1], QUALITY_RANGE[0] - 1, -1),
                               gaze_overlay=f"overlays/gaze/{position}.jpg" if item.gaze else None)

    @app.route("/rate/<int:position>", methods=["POST"])
    def submit_rating(position: int):
        annotator = current_annotator()
        item = item_or_404(position)
        methods = store.methods()
        try:
            order = [methods[int(k)] for k in request.form.get("order", "").split(",")]
        except (ValueError, IndexError):
            abort(400, "'order' must list the shown methods by index")
        answers = {}
        for method in methods:
            k = methods.index(method)
            q1, q2, q3 = (request.form.get(f"{q}_{k}") for q in ("q1", "q2", "q3"))
            if q1 not in YES_NO or q2 not in YES_NO:
                abort(400, f"Overlay {order.index(method) + 1 if method in order else k + 1}: answer both yes/no questions.")
            if q3 not in {str(v) for v in range(QUALITY_RANGE[0], QUALITY_RANGE[1] + 1)}:
                abort(400, f"Overlay {order.index(method) + 1 if method in order else k + 1}: rate the quality 1-5.")
            answers[method] = Rating(YES_NO[q1], YES_NO[q2], int(q3))
        try:
            store.submit_ratings(annotator, item.item, answers, order)
        except StoreError as error:
            abort(400, str(error))
        following = position + 1
        return redirect(url_for("rate", position=following) if following < store.count() else url_for("done"))

    @app.route("/mask/<int:position>", methods=["GET"])
    def mask(position: int):
        annotator = current_annotator()
        item = item_or_404(position)
        methods = store.methods()
        has_mask = any(row["item"] == item.item for row in store.latest_masks(annotator))
        width, height = shown_size(item)
        return render_template("mask.html", item=item, position=position, count=store.count(), width=width,
                               height=height, cams=[(m, f"cams/{k}/{position}.png") for k, m in enumerate(methods)],
                               gaze=item.gaze, has_mask=has_mask, annotator=annotator)

    @app.route("/mask/<int:position>/current.png", methods=["GET"])
    def current_mask(position: int):
        annotator = current_annotator()
        item = item_or_404(position)
        rows = [row for row in store.latest_masks(annotator) if row["item"] == item.item]
        if not rows:
            abort(404, "no mask drawn yet")
        return app.response_class(rows[-1]["png"], mimetype="image/png")

    @app.route("/mask/<int:position>", methods=["POST"])
    def submit_mask(position: int):
        annotator = current_annotator()
        item = item_or_404(position)
        payload = request.get_json(silent=True)
        if not isinstance(payload, dict):
            abort(400, "expected a JSON object {'png': data URL, 'start': 'empty' | 'cam' | 'gaze'}")
        start = payload.get("start")
        if start not in MASK_STARTS:
            abort(400, f"'start' must be one of {', '.join(MASK_STARTS)}")
        try:
            png = decode_mask_upload(payload.get("png"), item.width, item.height, shown_size(item))
        except ValueError as error:
            abort(400, str(error))
        store.submit_mask(annotator, item.item, png, item.width, item.height, start)
        following = position + 1
        return jsonify(saved=True, next=url_for("mask", position=following) if following < store.count() else None)

    @app.route("/overview", methods=["GET"])
    def overview():
        return render_template("overview.html", summary=agreement_summary(store), count=store.count(),
                               methods=store.methods(), meta=store.meta())

    @app.route("/done", methods=["GET"])
    def done():
        annotator = current_annotator()
        return render_template("done.html", annotator=annotator, done=len(store.rated_items(annotator)),
                               count=store.count())

    @app.route("/files/<path:name>", methods=["GET"])
    def file(name: str):
        return send_from_directory(files, name)  # safe_join: a path outside the folder is a 404

    return app
