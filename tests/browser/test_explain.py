"""Grad-CAM heat maps and the model card link, in real Chromium against the real local host.

The heat map is checked on the shipped `models/default` (an untrained model's Grad-CAM can be
flat); the card link and the page without either feature on small exports made here, the card
rendered by `training report`. Screenshots go to each test's test-output folder.
"""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import ROOT, LocalHost, tiny_cnn

from .test_page import upload, wait_for_answer

pytestmark = pytest.mark.browser

DEFAULT_MODEL = ROOT / "models" / "default"


@pytest.fixture(scope="module")
def default_host(tmp_path_factory):
    """The local host serving the shipped model, as `make serve` does."""
    if not (DEFAULT_MODEL / "model.json").exists():
        pytest.skip(f"no shipped model at {DEFAULT_MODEL}")
    host = LocalHost(DEFAULT_MODEL, tmp_path_factory.mktemp("host-default") / "host.log")
    yield host.url
    host.stop()


@pytest.fixture(scope="module")
def tiny_exports(tmp_path_factory) -> dict[str, Path]:
    """One small untrained CNN exported twice through the production exporter: `carded` with the
    explain signature and the card `training report` renders, `plain` with neither."""
    from shared.model import ModelSpec
    from training.export import export_keras

    model = tiny_cnn(seed=11)
    root = tmp_path_factory.mktemp("tiny-exports")
    spec = ModelSpec(name="tiny-card", version="0.0.2", size=64, color="gray", trained_on="nothing")
    assert export_keras(model, root / "carded", spec).can_explain
    subprocess.run(
        [sys.executable, "-m", "training", "report", str(root / "carded")],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    assert (root / "carded" / "MODEL_CARD.html").is_file()
    plain = export_keras(model, root / "plain", replace(spec, name="tiny-plain"), explain=False)
    assert not plain.can_explain
    return {"carded": root / "carded", "plain": root / "plain"}


@pytest.fixture(scope="module")
def host_of(tiny_exports, tmp_path_factory):
    """host_of("carded" | "plain") -> base URL of a local host serving that export."""
    hosts: dict[str, LocalHost] = {}

    def _url(name: str) -> str:
        if name not in hosts:
            log = tmp_path_factory.mktemp(f"host-{name}") / "host.log"
            hosts[name] = LocalHost(tiny_exports[name], log)
        return hosts[name].url

    yield _url
    for host in hosts.values():
        host.stop()


def health_model(base_url: str) -> dict:
    return requests.get(base_url + "/api/health", timeout=10).json()["model"]


def decode_data_url(url: str) -> Image.Image:
    head, _, payload = url.partition(",")
    assert head.startswith("data:image/") and head.endswith(";base64"), head[:40]
    return Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB")


def shown(img) -> dict:
    return img.evaluate(
        "img => ({src: img.getAttribute('src'), alt: img.alt, ok: img.complete,"
        " w: img.naturalWidth, h: img.naturalHeight})"
    )


def test_heat_map_switch_swaps_the_crop_for_the_overlay(
    open_page, default_host, astronaut_jpeg, test_output
):
    model = requests.get(default_host + "/api/health", timeout=10).json()["model"]
    assert model.get("explain") is True, (
        f"{DEFAULT_MODEL} cannot make heat maps: re-export it with the explain signature"
    )
    page = open_page(default_host)
    with page.expect_response(lambda r: "/api/predict" in r.url) as answer:
        upload(page, "astronaut.jpg", astronaut_jpeg)
    wait_for_answer(page)
    response = answer.value
    # The page asked for the overlays because health said the model can make them.
    assert "explain=1" in response.url and "crops=1" in response.url, response.url
    assert response.ok, response.status
    face = response.json()["faces"][0]
    crop, explanation = face["crop"], face["explanation"]
    assert explanation["method"] == "grad-cam"
    assert explanation["explains"] == face["label"]
    overlay = explanation["overlay"]

    # The overlay is the crop's picture, same size, with something blended over it.
    crop_px, overlay_px = decode_data_url(crop), decode_data_url(overlay)
    assert crop_px.size == overlay_px.size
    diff = np.abs(np.asarray(crop_px, float) - np.asarray(overlay_px, float)).mean()
    assert diff > 2.0, f"the overlay barely differs from the crop (mean |Δ| {diff:.2f})"

    card = page.locator(".face-card")
    img = card.locator("img.face-crop")
    switch = card.get_by_role("switch", name="Heat map")
    before = shown(img)
    assert before["src"] == crop and before["ok"] and before["w"] > 0
    assert "heat map" not in before["alt"]
    assert not switch.is_checked()
    note = card.locator(".heatmap-note")
    assert f"towards “{explanation['explains']}”" in note.inner_text()
    assert "not proof" in note.inner_text()

    # Keyboard only: reach the switch with Tab from the card and flip it with Space.
    card.focus()
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.getAttribute('role')") == "switch"
    page.keyboard.press("Space")
    assert switch.is_checked()
    page.wait_for_function(
        "src => document.querySelector('.face-card img.face-crop').getAttribute('src') === src",
        arg=overlay,
    )
    after = shown(img)
    # Decoded under the page's CSP, and the same pixel size as the crop it replaces.
    assert after["ok"] and (after["w"], after["h"]) == (before["w"], before["h"]) != (0, 0)
    warm = f"heat map over it: warmer areas pushed the model most towards “{face['label']}”"
    assert warm in after["alt"]
    page.screenshot(path=test_output / "heat-map.png", full_page=True)

    # And back: the crop the model saw.
    switch.click()
    assert shown(img)["src"] == crop


def test_no_heat_map_switch_nor_card_link_when_the_model_has_neither(
    open_page, host_of, astronaut_jpeg, test_output
):
    base = host_of("plain")
    model = health_model(base)
    assert model["explain"] is False and model["model_card"] is None, model
    page = open_page(base)
    assert page.locator("footer").get_by_role("link", name="Model card").count() == 0
    with page.expect_response(lambda r: "/api/predict" in r.url) as answer:
        upload(page, "astronaut.jpg", astronaut_jpeg)
    wait_for_answer(page)
    # Not asked for, so the server had no reason to answer 501.
    assert "explain" not in answer.value.url and answer.value.ok
    assert page.locator(".face-card").count() == 1
    assert page.get_by_role("switch").count() == 0
    assert page.locator(".heatmap-note").count() == 0
    page.screenshot(path=test_output / "no-heat-map.png", full_page=True)


def test_model_card_link_opens_the_card_in_a_new_tab(open_page, host_of, test_output):
    base = host_of("carded")
    assert health_model(base)["model_card"] == "/api/model-card"
    page = open_page(base)
    link = page.locator("footer").get_by_role("link", name="Model card")
    link.wait_for()  # the footer gains it when /api/health answers
    assert link.count() == 1
    assert link.get_attribute("href") == "/api/model-card"
    assert link.get_attribute("target") == "_blank"
    assert "noopener" in (link.get_attribute("rel") or "")
    page.screenshot(path=test_output / "model-line.png", full_page=True)

    with page.context.expect_page() as opened:
        link.click()
    card = opened.value
    card.wait_for_load_state()
    assert card.url == base + "/api/model-card"
    assert card.evaluate("() => document.contentType") == "text/html"
    # The card `training report` rendered for this very model.
    assert "tiny-card" in card.locator("body").inner_text()
    # noopener: the card cannot reach back into the page that opened it.
    assert card.evaluate("() => window.opener") is None
    card.screenshot(path=test_output / "model-card.png", full_page=True)


def test_shipped_model_links_its_card_when_it_ships_one(open_page, default_host):
    shipped = (DEFAULT_MODEL / "MODEL_CARD.html").is_file()
    assert health_model(default_host)["model_card"] == ("/api/model-card" if shipped else None)
    page = open_page(default_host)
    link = page.locator("footer").get_by_role("link", name="Model card")
    if shipped:
        link.wait_for()  # the footer gains it when /api/health answers, slower on a busy machine
    assert link.count() == (1 if shipped else 0)


def test_shipped_model_shows_each_view_beside_the_answer(
    open_page, default_host, astronaut_jpeg, test_output
):
    """The shipped model looks at a face two ways: the page names both, shows each one's chance
    beside the combined answer, and says when they disagree (the server's own flag)."""
    model = health_model(default_host)
    if not model.get("views"):
        pytest.skip(f"{DEFAULT_MODEL} has one view (its model.json names no CLIP view)")
    page = open_page(default_host)
    note = page.locator(".model-views")
    note.wait_for()
    assert "two ways" in note.inner_text() and "CLIP" in note.inner_text()
    with page.expect_response(lambda r: "/api/predict" in r.url) as answer:
        upload(page, "astronaut.jpg", astronaut_jpeg)
    wait_for_answer(page)
    face = answer.value.json()["faces"][0]
    scores = page.locator(".face-card .view-scores")
    text = scores.inner_text()
    for view in model["views"]:
        said = re.search(rf"{re.escape(view['title'])}: ([\d.]+)%", text)
        assert said, text
        assert float(said.group(1)) == pytest.approx(100 * face["views"][view["name"]], abs=0.51)
    assert (page.locator(".views-disagree").count() == 1) == face["views_disagree"]
    page.screenshot(path=test_output / "two-views.png", full_page=True)


def test_an_adapted_model_names_its_engine_on_the_page(open_page, adapted, tmp_path, test_output):
    """A model taught an engine by `training adapt` serves like any other, and the page lists
    the engine among those the model learned from, with how many faces taught it."""
    host = LocalHost(adapted, tmp_path / "host.log")
    try:
        page = open_page(host.url)
        learned = page.locator(".model-learned")
        learned.wait_for()
        assert "Tint 1 (taught later with 14 faces" in learned.inner_text()
        page.screenshot(path=test_output / "adapted.png", full_page=True)
    finally:
        host.stop()
