"""shared.telemetry: an analysis traced stage by stage into an in-memory exporter (the spans
exist, nest under the request, carry nothing of the photo or the person); nothing configured
or recorded without APPLICATIONINSIGHTS_CONNECTION_STRING; and, with it, the Azure Monitor
distro really exporting the spans to an ingestion endpoint (a local one)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import api, telemetry
from shared.model import Model
from shared.settings import Settings
from tests.conftest import ROOT

MODEL = ROOT / "models" / "default"
STAGES = {"decode", "detect", "landmarks", "align", "predict", "explain"}
REQUEST = "POST /api/predict"


@pytest.fixture(scope="module")
def two_view_model() -> Model:
    if not (MODEL / "model.json").is_file():
        pytest.skip("needs models/default")
    model = Model(MODEL)
    if model.clip is None or not model.can_explain:
        pytest.skip("needs the shipped two-view model with Grad-CAM")
    return model


@pytest.fixture
def spans(monkeypatch, two_view_model):
    """Telemetry on, into memory; the app's model is the shipped one, its settings defaults."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(api, "model", lambda: two_view_model)
    monkeypatch.setattr(api, "settings", lambda: Settings.from_env())
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    telemetry.use(provider)
    yield exporter
    telemetry.use(None)


def attribute_values(span) -> list:
    values = list(span.attributes.values())
    for event in span.events:
        values += list(event.attributes.values())
    return values


def test_an_analysis_is_traced_stage_by_stage_under_its_request(spans, images):
    photo = images["astronaut"]
    status, answer = api.predict("image/jpeg", photo, crops=True, explain=True)
    assert status == 200
    done = spans.get_finished_spans()
    by_name = {s.name: s for s in done}
    assert set(by_name) == {REQUEST, "view.cnn", "view.clip", *STAGES}, sorted(by_name)
    request = by_name[REQUEST]
    assert request.parent is None
    assert request.attributes["fakefaces.faces"] == len(answer["faces"]) == 1
    assert request.attributes["fakefaces.verdict"] == answer["verdict"]
    assert request.attributes["fakefaces.bytes"] == len(photo)
    for span in done:
        if span is request:
            continue
        # Each stage and view is the request's child, in the same trace, within its time.
        assert span.parent.span_id == request.context.span_id, span.name
        assert span.context.trace_id == request.context.trace_id
        assert request.start_time <= span.start_time <= span.end_time <= request.end_time
    # The stages are the answer's own timings: the same laps, not a second clock.
    for stage in STAGES:
        traced_ms = (by_name[stage].end_time - by_name[stage].start_time) / 1e6
        assert traced_ms == pytest.approx(answer["timings_ms"][stage], abs=1.0), stage
    # The views ran inside the predict stage.
    predict = by_name["predict"]
    for view in ("view.cnn", "view.clip"):
        assert predict.start_time <= by_name[view].start_time <= by_name[view].end_time
        assert by_name[view].end_time <= predict.end_time


def test_spans_carry_nothing_of_the_photo_or_the_person(spans, images):
    photo = images["astronaut"]
    digest = hashlib.sha256(photo).hexdigest()
    api.predict("image/jpeg", photo, crops=True, explain=True)
    url = "http://192.0.2.10/private/holiday-photo.jpg"
    api.predict("application/json", json.dumps({"url": url}).encode())
    api.feedback("application/x-www-form-urlencoded", b"token=x&label=fake", "203.0.113.7")
    done = spans.get_finished_spans()
    assert {REQUEST, "POST /api/feedback"} <= {s.name for s in done}
    for span in done:
        for value in attribute_values(span):
            assert isinstance(value, bool | int | float | str), (span.name, value)
            text = str(value)
            assert len(text) <= telemetry.MAX_TEXT, (span.name, text)
            for secret in (digest, "192.0.2.10", "holiday", "203.0.113.7", "data:image"):
                assert secret not in text, (span.name, text)
    # Refusals are traced by their status and code, without the input that caused them.
    refused = {
        (s.name, s.attributes["fakefaces.status"], s.attributes["fakefaces.error"])
        for s in done
        if "fakefaces.error" in s.attributes
    }
    assert refused == {
        (REQUEST, 400, "url_not_allowed"),
        ("POST /api/feedback", 503, "feedback_unavailable"),
    }


def test_without_the_connection_string_nothing_is_configured_or_recorded(
    monkeypatch, two_view_model, images
):
    from opentelemetry import trace

    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    monkeypatch.setattr(telemetry, "_configured", False)
    telemetry.use(None)
    assert telemetry.setup() is False and not telemetry.enabled()
    # No SDK provider was installed: the API's proxy still stands, recording nothing.
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    with telemetry.span("anything", n=1) as current:
        assert current is None
    assert telemetry.current_context() is None
    monkeypatch.setattr(api, "model", lambda: two_view_model)
    monkeypatch.setattr(api, "settings", lambda: Settings.from_env())
    assert api.predict("image/jpeg", images["astronaut"])[0] == 200


def test_attributes_that_are_not_short_words_are_refused():
    with pytest.raises(TypeError, match="short word"):
        telemetry._clean({"photo": b"\xff\xd8"})
    with pytest.raises(TypeError):
        telemetry._clean({"url": "https://example.org/" + "x" * telemetry.MAX_TEXT})


class Ingestion:
    """Application Insights' ingestion API (POST /v2.1/track) on loopback: what the distro
    sends, decoded, in `envelopes`."""

    def __init__(self):
        self.envelopes: list[dict] = []
        ingestion = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                items = json.loads(body)
                ingestion.envelopes += items
                out = json.dumps(
                    {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.connection_string = (
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
            f"IngestionEndpoint=http://127.0.0.1:{self.server.server_port}/"
        )


CHILD = """
from shared import telemetry
assert telemetry.setup(), "telemetry did not switch on"
with telemetry.span("POST /api/predict", bytes=3):
    with telemetry.span("view.cnn", faces=1):
        pass
"""


def test_with_the_connection_string_the_distro_exports_the_spans():
    """A fresh process configured as function_app does it: the spans reach the ingestion
    endpoint at exit (the distro flushes), named as traced."""
    ingestion = Ingestion()
    env = {
        **os.environ,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string,
        # The SDK's own usage reports go to Microsoft's endpoint, not the app's: off here.
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        # The distro's default rate-limited sampler may drop a process's very first trace.
        "OTEL_TRACES_SAMPLER": "always_on",
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True
    )
    ingestion.server.shutdown()
    assert done.returncode == 0, done.stderr[-2000:]
    names = {e["data"]["baseData"].get("name") for e in ingestion.envelopes}
    assert {"POST /api/predict", "view.cnn"} <= names, names
