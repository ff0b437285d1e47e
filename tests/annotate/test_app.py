"""gaze.annotate.app through Flask's test client: every page, every error path, CSRF, traversal, resume."""

from __future__ import annotations

import base64
import html
import io
import re

import numpy as np
import pytest
from PIL import Image

from gaze.annotate.app import create_app, shown_order
from gaze.annotate.store import Store
from tests.annotate.helpers import METHODS, hand_store


def write_files(files, items: int = 4) -> None:
    """The images and overlays a hand store names (8x6 px images shown at 8x6)."""
    for k in range(1, items + 1):
        for relative in [f"images/{k}.jpg", *(f"overlays/{m}/{k}.png" for m, _ in METHODS),
                         *(f"cams/{i}/{k - 1}.png" for i in range(len(METHODS)))]:
            path = files / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((6, 8, 3), 90, np.uint8)).save(path)


@pytest.fixture()
def study(tmp_path):
    hand_store(tmp_path / "a.sqlite")
    write_files(tmp_path / "files")
    app = create_app(tmp_path / "a.sqlite", tmp_path / "files")
    return app, Store(tmp_path / "a.sqlite")


def token_of(page: bytes) -> str:
    return re.search(rb'name="csrf-token" content="([^"]+)"', page).group(1).decode()


def signed_in(app, name: str = "ann"):
    client = app.test_client()
    token = token_of(client.get("/login").data)
    response = client.post("/login", data={"name": name, "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/")
    return client, token


def page_answers(store, k: int = 0, token: str = "") -> dict:
    data = {"csrf_token": token, "order": ",".join(str(i) for i in range(len(store.methods())))}
    for i in range(len(store.methods())):
        data.update({f"q1_{i}": "yes", f"q2_{i}": "no", f"q3_{i}": str(4 - i)})
    return data


def png_url(mask: np.ndarray) -> str:
    buffer = io.BytesIO()
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[mask] = 255
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_the_rating_page_preselects_nothing_and_a_submit_lands_before_the_next_page(study):
    app, store = study
    client, token = signed_in(app)
    assert client.get("/").headers["Location"].endswith("/rate/0")
    page = client.get("/rate/0").data.decode()
    assert "Image 1 of 4" in page and "checked" not in page and 'id="submit" disabled' in page
    assert page.count("<fieldset") == 2
    response = client.post("/rate/0", data=page_answers(store, token=token))
    assert response.status_code == 302 and response.headers["Location"].endswith("/rate/1")
    rows = {r["method"]: r for r in store.latest_ratings("ann")}
    assert (rows["phase1"]["necessary"], rows["phase1"]["unnecessary"], rows["phase1"]["quality"]) == (1, 0, 4)
    assert rows["phase2"]["quality"] == 3
    again = client.get("/rate/0").data.decode()
    assert again.count("checked") == 2 * 3  # the annotator's own answers, when going back


def test_each_annotator_resumes_where_they_stopped_and_orders_are_recorded(study):
    app, store = study
    client, token = signed_in(app, "ann")
    for k in range(2):
        client.post(f"/rate/{k}", data=page_answers(store, token=token))
    other, _ = signed_in(app, "bob")
    assert other.get("/").headers["Location"].endswith("/rate/0")  # answers kept apart
    again, _ = signed_in(app, "ann")
    assert again.get("/").headers["Location"].endswith("/rate/2")
    assert shown_order(store.methods(), "ann", 0) == shown_order(store.methods(), "ann", 0)
    assert {tuple(shown_order(store.methods(), "ann", k)) for k in range(20)} == {("phase1", "phase2"), ("phase2", "phase1")}


@pytest.mark.parametrize("change, message", [
    ({"q1_0": None}, "answer both yes/no questions"),
    ({"q3_1": "7"}, "rate the quality 1-5"),
    ({"order": "0,9"}, "'order' must list"),
    ({"order": "0,0"}, "not a permutation"),
])
def test_an_incomplete_or_malformed_page_is_a_400_with_a_message_and_writes_nothing(study, change, message):
    app, store = study
    client, token = signed_in(app)
    data = {key: value for key, value in {**page_answers(store, token=token), **change}.items() if value is not None}
    response = client.post("/rate/0", data=data)
    assert response.status_code == 400 and message in html.unescape(response.data.decode())
    assert store.latest_ratings() == []


def test_every_post_needs_the_csrf_token(study):
    app, store = study
    client, token = signed_in(app)
    response = client.post("/rate/0", data={**page_answers(store), "csrf_token": "forged"})
    assert response.status_code == 400 and "CSRF" in response.data.decode()
    response = client.post("/mask/0", json={"png": png_url(np.ones((6, 8), bool)), "start": "empty"})
    assert response.status_code == 400 and "CSRF" in response.data.decode()
    assert app.test_client().post("/login", data={"name": "eve"}).status_code == 400
    assert store.latest_ratings() == [] and store.latest_masks() == [] and "eve" not in store.annotators()


def test_a_mask_is_saved_at_the_image_size_and_bad_uploads_are_refused(study):
    app, store = study
    client, token = signed_in(app)
    assert client.get("/mask/0").status_code == 200
    assert client.get("/mask/0/current.png").status_code == 404
    mask = np.zeros((6, 8), bool)
    mask[:3] = True
    headers = {"X-CSRFToken": token}
    response = client.post("/mask/0", json={"png": png_url(mask), "start": "cam"}, headers=headers)
    assert response.status_code == 200 and response.get_json()["saved"]
    stored = store.latest_masks("ann")[0]
    assert (stored["width"], stored["height"], stored["start"]) == (8, 6, "cam")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(stored["png"]))) > 0, mask)
    assert client.get("/mask/0/current.png").data == stored["png"]
    for payload, message in [({"png": png_url(mask), "start": "guess"}, "'start' must be one of"),
                             ({"png": "data:image/gif;base64,AAAA", "start": "empty"}, "data:image/png;base64"),
                             ({"png": "data:image/png;base64,!!!", "start": "empty"}, "cannot be read"),
                             ({"png": png_url(np.ones((5, 5), bool)), "start": "empty"}, "expected the canvas 8x6")]:
        response = client.post("/mask/0", json=payload, headers=headers)
        assert response.status_code == 400 and message in response.get_json()["error"], message
    response = client.post("/mask/0", data="x" * (9 * 1024 * 1024), headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert len(store.latest_masks()) == 1


def test_unknown_pages_and_path_traversal_are_404(study):
    app, _ = study
    client, _ = signed_in(app)
    assert client.get("/rate/99").status_code == 404 and "the study has 4 images" in client.get("/rate/99").data.decode()
    assert client.get("/mask/99").status_code == 404
    assert client.get("/files/images/1.jpg").status_code == 200
    for path in ("/files/../a.sqlite", "/files/%2e%2e/a.sqlite", "/files//etc/passwd", "/files/images/../../a.sqlite"):
        assert client.get(path, follow_redirects=True).status_code == 404, path  # // is merged, then refused
    assert client.get("/rate/abc").status_code == 404
    assert client.put("/rate/0").status_code == 405


def test_signing_in_checks_names_and_tokens(tmp_path):
    store = hand_store(tmp_path / "a.sqlite")
    write_files(tmp_path / "files")
    store.add_annotator("alice", token="t0k3n")
    app = create_app(tmp_path / "a.sqlite", tmp_path / "files", require_token=True)
    client = app.test_client()
    token = token_of(client.get("/login").data)
    assert client.post("/login", data={"name": "alice", "token": "bad", "csrf_token": token}).status_code == 403
    assert client.post("/login", data={"name": "../x", "csrf_token": token}).status_code == 400
    assert client.get("/rate/0").status_code == 302  # not signed in: to the login page
    assert client.post("/login", data={"name": "alice", "token": "t0k3n", "csrf_token": token}).status_code == 302
    assert client.get("/rate/0").status_code == 200


def test_the_overview_shows_progress_and_agreement(study):
    app, store = study
    for name in ("ann", "bob"):
        client, token = signed_in(app, name)
        for k in range(3):
            client.post(f"/rate/{k}", data=page_answers(store, token=token))
    page = app.test_client().get("/overview").data.decode()
    assert "ann &amp; bob" in page and "3 / 4" in page and "1.000" in page
