"""'Is this right?' in real Chromium, into a real Azurite through the real local host.

What the page promises is checked in storage itself: a ticked box keeps the uploaded bytes as a
blob beside the record; an unticked one keeps the record and no pixels; storage that stops
between the verdict and the answer leaves nothing, the page says it could not save, and "Try
again" sends it once storage is back.
"""

from __future__ import annotations

import pytest

from tests.azurite import start_azurite
from tests.test_feedback import FeedbackHost

from .test_page import upload, wait_for_answer

pytestmark = pytest.mark.browser

KEEP = "Let the maintainers keep this photo to improve the model"


@pytest.fixture(scope="module")
def feedback_host(tiny_model_dir, tmp_path_factory, azurite):
    server = FeedbackHost(tiny_model_dir, tmp_path_factory.mktemp("fb-page") / "host.log", azurite)
    yield server
    server.host.stop()


def answer(page, label: str, keep: bool):
    """Answers the first face's question; returns its status region once it has settled."""
    question = page.get_by_role("group", name="Is this right?").first
    box = question.get_by_role("checkbox", name=KEEP)
    assert not box.is_checked()  # unticked unless the person ticks it
    if keep:
        box.check()
    question.get_by_role("button", name=label, exact=True).click()
    status = question.get_by_role("status")
    status.filter(has_not_text="Sending").filter(has_text=" ").wait_for(timeout=30_000)
    return status


def ask(page, photo: bytes) -> None:
    upload(page, "astronaut.jpg", photo)
    wait_for_answer(page)


def test_generated_with_the_box_ticked_keeps_record_and_photo(
    open_page, feedback_host, astronaut_jpeg, test_output
):
    page = open_page(feedback_host.url)
    ask(page, astronaut_jpeg)
    status = answer(page, "Generated", keep=True)
    page.screenshot(path=str(test_output / "kept.png"), full_page=True)
    text = status.inner_text()
    assert "Thank you" in text
    records = feedback_host.store().records()
    assert len(records) == 1
    record = records[0]
    assert record["receipt"] in text  # the receipt a person quotes to have it deleted
    assert (record["user_label"], record["kept"], record["review"]) == ("fake", True, "pending")
    assert feedback_host.store().photo(record) == astronaut_jpeg  # the very bytes uploaded


def test_real_photo_unticked_keeps_the_record_and_no_pixels(
    open_page, feedback_host, astronaut_jpeg, test_output
):
    before = {r["receipt"] for r in feedback_host.store().records()}
    page = open_page(feedback_host.url)
    ask(page, astronaut_jpeg)
    status = answer(page, "Real photo", keep=False)
    page.screenshot(path=str(test_output / "record-only.png"), full_page=True)
    assert "Thank you" in status.inner_text()
    new = [r for r in feedback_host.store().records() if r["receipt"] not in before]
    assert len(new) == 1
    assert (new[0]["user_label"], new[0]["kept"], new[0]["blob"]) == ("real", False, "")
    assert feedback_host.store().photo(new[0]) is None
    container = feedback_host.store().container
    assert new[0]["receipt"] not in {b.name for b in container.list_blobs()}


def test_storage_down_after_the_verdict_says_could_not_save(
    open_page, tiny_model_dir, tmp_path, astronaut_jpeg, test_output
):
    storage = start_azurite(tmp_path / "azurite")
    server = FeedbackHost(tiny_model_dir, tmp_path / "host.log", storage)
    try:
        page = open_page(server.url)
        ask(page, astronaut_jpeg)
        storage.stop()
        status = answer(page, "Generated", keep=True)
        page.screenshot(path=str(test_output / "could-not-save.png"), full_page=True)
        assert "Could not save" in status.inner_text()
        question = page.get_by_role("group", name="Is this right?").first
        assert question.get_by_role("button", name="Try again").is_visible()
        storage.start()
        store = server.store()
        assert store.records() == []
        assert list(store.container.list_blobs()) == []  # nothing half-written
        # The answer was not lost with the storage: one click sends it once storage is back.
        question.get_by_role("button", name="Try again").click()
        question.get_by_role("status").filter(has_text="Thank you").wait_for(timeout=30_000)
        [record] = store.records()
        assert (record["user_label"], record["kept"]) == ("fake", True)
        assert store.photo(record) == astronaut_jpeg
    finally:
        server.host.stop()
        storage.stop()
