"""The page in real Chromium against the real local host and a real (small) model.

Each test saves a screenshot in its test-output folder: look at them when a test fails.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from .conftest import PHONE, jpeg

pytestmark = pytest.mark.browser

VERDICTS = ("Likely real", "Likely fake")
# The first request loads dlib and the model; later ones take well under a second.
ANSWER_MS = 60_000


def upload(page, name: str, body: bytes, mime: str = "image/jpeg") -> None:
    page.locator("#file-input").set_input_files(
        files=[{"name": name, "mimeType": mime, "buffer": body}]
    )


# What Ctrl+V delivers: a paste event on the focused element (here the page) with clipboard data.
PASTE_JS = """([text, bytes]) => {
    const data = new DataTransfer()
    if (text) data.setData('text/plain', text)
    if (bytes) data.items.add(new File([new Uint8Array(bytes)], 'clip.jpg', {type: 'image/jpeg'}))
    const event = new ClipboardEvent('paste', {clipboardData: data, bubbles: true})
    document.body.dispatchEvent(event)
}"""


def paste(page, text: str | None = None, image: bytes | None = None) -> None:
    page.evaluate(PASTE_JS, [text, list(image) if image else None])


def wait_for_answer(page) -> None:
    page.locator(".face-card, .notice").first.wait_for(timeout=ANSWER_MS)


def status_text(page) -> str:
    return page.get_by_role("status").inner_text().strip()


def check_one_face(page) -> None:
    cards = page.locator(".face-card")
    assert cards.count() == 1
    verdict = cards.locator(".face-verdict").inner_text()
    assert verdict in VERDICTS
    assert page.locator(".result-heading").inner_text() == verdict
    # The bar and its number agree with the model's answer; the threshold is marked on the bar.
    value = cards.locator('[role="meter"]').get_attribute("aria-valuenow")
    assert value is not None and 0 <= int(value) <= 100
    assert cards.locator(".pbar-threshold").is_visible()
    # The aligned crop the model saw came back and decoded.
    crop = cards.locator("img.face-crop")
    assert crop.evaluate("img => img.complete && img.naturalWidth > 0")
    # The announcement a screen reader hears names the verdict.
    assert status_text(page).startswith(verdict)


def test_upload_astronaut_shows_one_face_card_with_box(
    open_page, live_host, astronaut_jpeg, test_output
):
    page = open_page(live_host)
    upload(page, "astronaut.jpg", astronaut_jpeg)
    # The preview is up before the answer: it comes from the file, not the server.
    page.locator(".photo-img").wait_for()
    wait_for_answer(page)
    check_one_face(page)

    # The box sits on the face: astronaut() is 512x512 and her face is in the upper middle.
    photo = page.locator(".photo-img").bounding_box()
    box = page.locator(".face-box").bounding_box()
    cx = (box["x"] + box["width"] / 2 - photo["x"]) / photo["width"]
    cy = (box["y"] + box["height"] / 2 - photo["y"]) / photo["height"]
    assert 0.3 < cx < 0.7 and 0.1 < cy < 0.45, (cx, cy)

    # Hovering the card highlights its box.
    page.locator(".face-card").hover()
    assert "is-active" in page.locator(".face-box").get_attribute("class")
    page.screenshot(path=test_output / "astronaut.png", full_page=True)


def test_url_is_fetched_by_the_server(
    open_page, live_host_loopback, image_server, astronaut_jpeg, test_output
):
    image_server.add("/faces/astronaut.jpg", astronaut_jpeg, "image/jpeg")
    page = open_page(live_host_loopback)
    page.get_by_label("Or check an image on the web").fill(image_server.url("/faces/astronaut.jpg"))
    page.get_by_role("button", name="Check link").click()
    wait_for_answer(page)
    check_one_face(page)
    page.screenshot(path=test_output / "url.png", full_page=True)


def test_pasting_a_link_anywhere_checks_it(
    open_page, live_host_loopback, image_server, astronaut_jpeg, test_output
):
    image_server.add("/faces/pasted.jpg", astronaut_jpeg, "image/jpeg")
    page = open_page(live_host_loopback)
    paste(page, text=image_server.url("/faces/pasted.jpg"))
    wait_for_answer(page)
    check_one_face(page)
    assert (
        page.get_by_label("Or check an image on the web")
        .input_value()
        .endswith("/faces/pasted.jpg")
    )
    page.screenshot(path=test_output / "pasted-url.png", full_page=True)


def test_loopback_link_refused_in_plain_words(
    open_page, live_host, image_server, astronaut_jpeg, test_output
):
    image_server.add("/faces/local.jpg", astronaut_jpeg, "image/jpeg")
    page = open_page(live_host)
    page.get_by_label("Or check an image on the web").fill(image_server.url("/faces/local.jpg"))
    page.get_by_label("Or check an image on the web").press("Enter")
    wait_for_answer(page)
    notice = page.locator(".notice")
    assert notice.get_attribute("data-code") == "url_not_allowed"
    assert "That link cannot be used." in notice.inner_text()
    assert "{" not in page.locator("main").inner_text()
    page.screenshot(path=test_output / "refused.png", full_page=True)


def test_cat_says_no_face_then_another_photo_works(
    open_page, live_host, cat_jpeg, astronaut_jpeg, test_output
):
    page = open_page(live_host)
    upload(page, "chelsea.jpg", cat_jpeg)
    wait_for_answer(page)
    notice = page.locator(".notice")
    assert notice.get_attribute("data-code") == "no_face"
    text = notice.inner_text()
    assert "No face was found in this image." in text
    assert "frontal face" in text and "good light" in text
    assert status_text(page).startswith("No face was found")
    page.screenshot(path=test_output / "no-face.png", full_page=True)

    # Another photo, no reload: the error goes and the verdict comes.
    upload(page, "astronaut.jpg", astronaut_jpeg)
    page.locator(".face-card").wait_for(timeout=ANSWER_MS)
    assert page.locator(".notice").count() == 0
    check_one_face(page)


def test_random_bytes_say_not_an_image(open_page, live_host, test_output):
    page = open_page(live_host)
    upload(page, "noise.jpg", os.urandom(4096))
    wait_for_answer(page)
    notice = page.locator(".notice")
    assert notice.get_attribute("data-code") == "not_an_image"
    assert "This file is not an image the server can read." in notice.inner_text()
    assert "{" not in page.locator("main").inner_text()
    page.screenshot(path=test_output / "not-an-image.png", full_page=True)


def test_pasted_image_is_uploaded(open_page, live_host, astronaut_jpeg, test_output):
    page = open_page(live_host)
    paste(page, image=astronaut_jpeg)
    wait_for_answer(page)
    check_one_face(page)
    page.screenshot(path=test_output / "pasted-image.png", full_page=True)


def test_file_over_the_limit_is_refused_before_upload(open_page, live_host, test_output):
    page = open_page(live_host)
    limit = page.evaluate(
        "() => fetch('/api/health').then(r => r.json()).then(h => h.limits.max_bytes)"
    )
    uploads = []
    page.on("request", lambda r: "/api/predict" in r.url and uploads.append(r.url))
    upload(page, "huge.jpg", os.urandom(limit + 1))
    wait_for_answer(page)
    notice = page.locator(".notice")
    assert notice.get_attribute("data-code") == "too_large"
    mb = limit / 2**20
    assert f"This image is too large (limit {mb:.0f} MB" in notice.inner_text()
    assert uploads == []
    page.screenshot(path=test_output / "too-large.png", full_page=True)


def test_phone_width_has_no_horizontal_scroll(open_page, live_host, astronaut_jpeg, test_output):
    page = open_page(live_host, viewport=PHONE)
    upload(
        page, "a-photo-with-a-rather-long-file-name-that-must-wrap-on-a-phone.jpg", astronaut_jpeg
    )
    wait_for_answer(page)
    check_one_face(page)
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1] == PHONE["width"], widths
    page.screenshot(path=test_output / "phone.png", full_page=True)


def test_keyboard_reaches_every_control_in_order(open_page, live_host, test_output):
    page = open_page(live_host)
    reached = []
    for _ in range(4):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate(
                "() => document.activeElement.id || document.activeElement.textContent.trim()"
            )
        )
    assert reached[:2] == ["file-input", "url-input"], reached
    page.get_by_label("Or check an image on the web").fill("https://example.org/x.jpg")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent.trim()") == "Check link"
    # The file input is hidden visually but labelled; its label is the visible button.
    assert page.get_by_label("Choose a photo").get_attribute("type") == "file"
    page.screenshot(path=test_output / "keyboard.png", full_page=True)


def two_faces_jpeg() -> bytes:
    """astronaut() twice, full size and 3/4 size, side by side: a big face and a smaller one.

    (At half size her face is under dlib's ~80 px HOG window and is not found.)"""
    from PIL import Image
    from skimage import data

    big = Image.fromarray(data.astronaut())
    small = big.resize((384, 384), Image.LANCZOS)
    canvas = Image.new("RGB", (896, 512), (200, 200, 200))
    canvas.paste(big, (0, 0))
    canvas.paste(small, (512, 128))
    return jpeg(np.asarray(canvas))


def test_dropped_photo_with_two_faces_gets_two_cards_largest_first(
    open_page, live_host, test_output
):
    page = open_page(live_host)
    page.locator(".dropzone").evaluate(
        """(zone, bytes) => {
            const data = new DataTransfer()
            data.items.add(new File([new Uint8Array(bytes)], 'two.jpg', {type: 'image/jpeg'}))
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true}))
        }""",
        list(two_faces_jpeg()),
    )
    wait_for_answer(page)
    cards = page.locator(".face-card")
    assert cards.count() == 2
    boxes = [page.locator(".face-box").nth(i).bounding_box() for i in range(2)]
    assert boxes[0]["width"] > boxes[1]["width"], boxes
    assert boxes[0]["x"] < boxes[1]["x"]  # the big face is on the left
    # Each card lights up its own box, and only that one.
    cards.nth(1).hover()
    assert page.locator(".face-box.is-active").count() == 1
    assert "is-active" in page.locator(".face-box").nth(1).get_attribute("class")
    assert status_text(page).startswith(page.locator(".result-heading").inner_text())
    assert "2 faces found" in status_text(page)
    page.screenshot(path=test_output / "two-faces.png", full_page=True)
