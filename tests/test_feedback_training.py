"""`python -m training feedback review|pull|delete|purge` against a real Azurite: the maintainer
reviews what users sent, pulls the reviewed photos into the layout `prepare` reads, answers
deletion requests and applies retention; and once, end to end, feedback -> prepare -> train."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, free_port

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
for _name in (
    "AzureWebJobsStorage",
    "FAKEFACES_FEEDBACK_TABLE",
    "FAKEFACES_FEEDBACK_CONTAINER",
    "FAKEFACES_FEEDBACK_RETENTION_DAYS",
):
    ENV.pop(_name, None)  # the tests say which storage they mean
KAGGLE = ROOT.parent / "shared" / "data" / "real-vs-fake"
_seeded = iter(range(10**6))


class Place:
    """One test's own table and container on the shared Azurite, and a store on them."""

    def __init__(self, connection: str):
        from shared.storage import FeedbackStore

        self.connection = connection
        self.table = "fb" + uuid.uuid4().hex[:16]
        self.container = "fb-" + uuid.uuid4().hex[:16]
        self.store = FeedbackStore.connect(connection, self.table, self.container)

    def args(self) -> list[str]:
        return [
            "--connection",
            self.connection,
            "--table",
            self.table,
            "--container",
            self.container,
        ]

    def seed(
        self,
        user_label: str,
        photo: bytes | None = None,
        content_type: str = "image/jpeg",
        review: str = "pending",
        reviewer_label: str = "",
        created: datetime | None = None,
        face: int = 0,
    ) -> dict:
        """A stored feedback record as the app writes it (its own receipt, a later time than
        the one seeded before it, so the review order is the seeding order)."""
        n = next(_seeded)
        created = created or datetime.now(UTC) - timedelta(hours=2) + timedelta(seconds=n)
        record = {
            "receipt": uuid.uuid4().hex,
            "image_sha256": hashlib.sha256(photo or f"photo {n}".encode()).hexdigest(),
            "crop_phash": f"{n:016x}",
            "face": face,
            "model_name": "efficientnet_lite0-rgb160",
            "model_version": "2026.11.01-1200",
            "p_fake": round(0.1 + (n % 80) / 100, 4),
            "verdict": "fake" if n % 2 else "real",
            "user_label": user_label,
            "source": "upload",
            "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "review": review,
            "reviewer_label": reviewer_label,
            "reviewed_at": "",
        }
        self.store.save(record, photo, content_type if photo is not None else "")
        return record

    def get(self, receipt: str) -> dict | None:
        return next((r for r in self.store.records() if r["receipt"] == receipt), None)

    def blobs(self) -> set[str]:
        return {b.name for b in self.store.container.list_blobs()}


@pytest.fixture
def place(azurite) -> Place:
    return Place(azurite.connection_string)


def photo(i: int, fmt: str = "JPEG") -> bytes:
    """A distinct photo of a real face: scikit-image's astronaut, mirrored, cropped and lit
    a little differently for each `i`."""
    from PIL import Image, ImageEnhance, ImageOps
    from skimage import data

    img = Image.fromarray(data.astronaut())
    if i % 2:
        img = ImageOps.mirror(img)
    img = img.crop((3 * i, 2 * i, 512 - 2 * i, 512 - 3 * i))
    img = ImageEnhance.Brightness(img).enhance(1 + 0.04 * i)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def feedback(*args: str, stdin: str = "", env: dict | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "training", "feedback", *map(str, args)],
        cwd=ROOT,
        env={**ENV, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def table_lines(stdout: str) -> dict[str, list[str]]:
    """The agreement table's rows: user label -> its cells."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("user said"))
    return {
        cells[0]: cells[1:] for cells in (line.split() for line in lines[start + 1 : start + 4])
    }


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


# ---- review --------------------------------------------------------------------------------


def test_review_by_keys_sets_each_record_and_counts_agreement(place):
    a = place.seed("real", photo(1))
    b = place.seed("fake", photo(2))
    c = place.seed("fake", photo(3))
    d = place.seed("unsure")  # no photo kept
    e = place.seed("real", photo(4))
    earlier = place.seed("fake", photo(5), review="accepted", reviewer_label="fake")

    # a: accept; b: "?" and an unknown key are asked again, then relabelled real; c: rejected;
    # d: skipped; e: relabelled fake.
    proc = ok(feedback("review", *place.args(), stdin="a\n?\nz\nr\nx\ns\nf\n"))
    out = proc.stdout
    assert "5 pending feedback record(s)" in out and earlier["receipt"] not in out
    assert out.count("keys: a accept the user's label") == 2  # after "?" and after "z"
    assert "no photo kept" in out and "the largest face of a photo from upload" in out
    shown = re.findall(r"photo: (/\S+)", out)
    assert len(shown) == 4 and all(Path(p).name.split(".")[0] for p in shown)
    assert not any(Path(p).exists() for p in shown)  # no copy outlives the review

    want = {
        a["receipt"]: ("accepted", "real"),
        b["receipt"]: ("relabelled", "real"),
        c["receipt"]: ("rejected", ""),
        d["receipt"]: ("pending", ""),
        e["receipt"]: ("relabelled", "fake"),
        earlier["receipt"]: ("accepted", "fake"),
    }
    got = {k: place.get(k) for k in want}
    assert {k: (r["review"], r["reviewer_label"]) for k, r in got.items()} == want
    assert got[a["receipt"]]["reviewed_at"] and not got[d["receipt"]]["reviewed_at"]

    assert (
        "reviewed 4 now: 1 accepted, 2 relabelled, 1 rejected; 1 skipped; 1 still pending." in out
    )
    assert "over all 5 reviewed records" in out
    # user said: reviewed, rejected, -> real, -> fake, -> unsure, agreed
    assert table_lines(out) == {
        "real": ["2", "0", "1", "1", "0", "1", "of", "2", "(50%)"],
        "fake": ["3", "1", "1", "1", "0", "1", "of", "2", "(50%)"],
        "unsure": ["0", "0", "0", "0", "0", "0", "of", "0"],
    }

    # q (or the end of input) stops at once and changes nothing.
    again = ok(feedback("review", *place.args(), stdin="q\n"))
    assert "reviewed 0 now" in again.stdout and "1 skipped; 1 still pending" in again.stdout
    assert place.get(d["receipt"])["review"] == "pending"


def test_review_shows_the_exact_kept_photo_while_asking(place):
    from training.feedback.review import walk

    kept = photo(6, "PNG")
    record = place.seed("fake", kept, content_type="image/png")
    said, seen = [], []

    def ask(prompt: str) -> str:
        path = Path(re.findall(r"photo: (/\S+)", "\n".join(said))[-1])
        seen.append((path.suffix, path.read_bytes()))
        return "a"

    decided, skipped = walk(place.store, place.store.records("pending"), ask, said.append)
    assert seen == [(".png", kept)]
    assert [(r["receipt"], review) for r, review in decided] == [(record["receipt"], "accepted")]
    assert skipped == 0 and place.get(record["receipt"])["reviewer_label"] == "fake"


def test_sheet_then_apply(place, tmp_path):
    from PIL import Image

    recs = [place.seed("real", photo(7)), place.seed("fake", photo(8)), place.seed("fake")]
    recs.append(place.seed("real", photo(9, "PNG"), content_type="image/png"))
    sheet = tmp_path / "sheet"
    proc = ok(feedback("review", *place.args(), "--sheet", sheet))
    assert "4 pending record(s)" in proc.stdout and "--apply" in proc.stdout
    rows = read_csv(sheet / "review.csv")
    assert [r["receipt"] for r in rows] == [r["receipt"] for r in recs]
    assert [r["n"] for r in rows] == ["1", "2", "3", "4"]
    assert {r["decision"] for r in rows} == {""}
    assert rows[2]["photo"] == "" and rows[3]["photo"].endswith(".png")
    for row, n in ((rows[0], 7), (rows[1], 8)):
        assert (sheet / row["photo"]).read_bytes() == photo(n)
    with Image.open(sheet / "sheet.png") as img:
        assert img.size == (4 * 200, 220)
        # the record without a photo is a grey tile; the others show their photo
        assert img.getpixel((2 * 200 + 100, 150)) == (221, 221, 221)
        assert img.getpixel((100, 150)) != (255, 255, 255)
        assert img.getpixel((100, 150)) != (221, 221, 221)
    assert all(place.get(r["receipt"])["review"] == "pending" for r in recs)

    def apply(decisions: list[str], extra: list[dict] | None = None) -> subprocess.CompletedProcess:
        filled = tmp_path / "filled.csv"
        with filled.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, list(rows[0]))
            writer.writeheader()
            writer.writerows([{**r, "decision": d} for r, d in zip(rows, decisions, strict=True)])
            writer.writerows(extra or [])
        return feedback("review", *place.args(), "--apply", filled)

    # A bad row anywhere changes nothing, not even the good rows before it.
    bad = apply(["accept", "f", "", "maybe"])
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "line 5: decision 'maybe' is not one of accept" in bad.stderr
    unknown = apply(["accept", "f", "", "x"], [{**rows[0], "receipt": "0" * 32}])
    assert unknown.returncode == 2
    assert f"line 6: no feedback record has receipt '{'0' * 32}'" in unknown.stderr
    assert all(place.get(r["receipt"])["review"] == "pending" for r in recs)

    done = ok(apply(["accept", "r", "", "X"]))
    assert "reviewed 3 now: 1 accepted, 1 relabelled, 1 rejected; 1 skipped; 1 still pending." in (
        done.stdout
    )
    got = [place.get(r["receipt"]) for r in recs]
    assert [(g["review"], g["reviewer_label"]) for g in got] == [
        ("accepted", "real"),
        ("relabelled", "real"),
        ("pending", ""),
        ("rejected", ""),
    ]
    lines = table_lines(done.stdout)
    assert lines["real"] == ["2", "1", "1", "0", "0", "1", "of", "1", "(100%)"]
    assert lines["fake"] == ["1", "0", "1", "0", "0", "0", "of", "1", "(0%)"]


# ---- pull ----------------------------------------------------------------------------------


def test_pull_writes_only_reviewed_real_and_fake_photos(place, tmp_path):
    real = place.seed("fake", photo(10), review="relabelled", reviewer_label="real")
    fake = place.seed(
        "fake", photo(11, "PNG"), "image/png", review="accepted", reviewer_label="fake"
    )
    place.seed("unsure", photo(12), review="accepted", reviewer_label="unsure")
    place.seed("real", photo(13), review="rejected")
    place.seed("real", photo(14))  # pending
    place.seed("real", review="accepted", reviewer_label="real")  # no photo kept
    forged = place.seed("fake", photo(15), review="accepted", reviewer_label="fake")
    # A stored photo that is not the one the service analysed is never pulled.
    place.store.container.upload_blob(forged["receipt"], photo(16), overwrite=True)
    # Nor feedback on a smaller face of a group photo: prepare would align the largest.
    second = place.seed("fake", photo(17), review="accepted", reviewer_label="fake", face=1)

    out = tmp_path / "pulled"
    proc = ok(feedback("pull", "--out", out, *place.args()))
    assert "2 reviewed photo(s) (1 real, 1 fake): 2 written, 0 already there" in proc.stdout
    assert f"left out {forged['receipt']}: the stored photo's SHA-256" in proc.stderr
    assert f"left out {second['receipt']}: it is about another face" in proc.stderr
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(
        ["feedback.csv", f"real/{real['receipt']}.jpg", f"fake/{fake['receipt']}.png"]
    )
    assert (out / "real" / f"{real['receipt']}.jpg").read_bytes() == photo(10)
    assert (out / "fake" / f"{fake['receipt']}.png").read_bytes() == photo(11, "PNG")
    rows = {r["receipt"]: r for r in read_csv(out / "feedback.csv")}
    assert rows.keys() == {real["receipt"], fake["receipt"]}
    r = rows[real["receipt"]]
    assert (r["label"], r["user_label"], r["review"]) == ("real", "fake", "relabelled")
    assert r["sha256"] == hashlib.sha256(photo(10)).hexdigest()
    assert r["model_version"] == real["model_version"] and float(r["p_fake"]) == real["p_fake"]

    # The layout is the one prepare reads: the labels come from the folders.
    from training.data.datasets import read_source

    kind, recs = read_source(out)
    assert kind == "realfake"
    assert {(x.rel, x.label) for x in recs} == {
        (f"real/{real['receipt']}.jpg", "real"),
        (f"fake/{fake['receipt']}.png", "fake"),
    }

    # Again: nothing to fetch. A tampered local copy is fetched again.
    (out / "fake" / f"{fake['receipt']}.png").write_bytes(b"edited")
    again = ok(feedback("pull", "--out", out, *place.args(), "--quiet"))
    assert "1 written, 1 already there, 0 removed" in again.stdout
    assert (out / "fake" / f"{fake['receipt']}.png").read_bytes() == photo(11, "PNG")

    # Relabelled since, and deleted at the user's request: the copies follow.
    place.store.set_review(place.get(real["receipt"]), "relabelled", "fake")
    ok(feedback("delete", fake["receipt"], *place.args()))
    third = ok(feedback("pull", "--out", out, *place.args()))
    assert "1 reviewed photo(s) (0 real, 1 fake): 1 written, 0 already there, 2 removed" in (
        third.stdout
    )
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["fake/" + real["receipt"] + ".jpg", "feedback.csv"]
    assert [r["receipt"] for r in read_csv(out / "feedback.csv")] == [real["receipt"]]


# ---- delete, purge, settings, bad input ----------------------------------------------------


def test_delete_and_purge(place):
    now = datetime.now(UTC)
    fresh = place.seed("fake", photo(17))
    old = place.seed("real", photo(18), created=now - timedelta(days=400))
    mid = place.seed("real", created=now - timedelta(days=100))
    assert place.blobs() == {fresh["receipt"], old["receipt"]}

    proc = ok(feedback("delete", fresh["receipt"].upper(), *place.args()))
    assert f"deleted feedback {fresh['receipt']}" in proc.stdout
    assert place.get(fresh["receipt"]) is None and place.blobs() == {old["receipt"]}
    again = feedback("delete", fresh["receipt"], *place.args())
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert f"no feedback is stored under receipt {fresh['receipt']}" in again.stderr
    bad = feedback("delete", "1234", *place.args())
    assert bad.returncode == 2 and "'1234' is not a receipt" in bad.stderr

    # Default retention: 365 days.
    proc = ok(feedback("purge", *place.args()))
    assert "purged 1 feedback record(s) older than 365 days" in proc.stdout
    assert place.get(old["receipt"]) is None and place.get(mid["receipt"]) is not None
    assert place.blobs() == set()
    # FAKEFACES_FEEDBACK_RETENTION_DAYS, as the app reads it; --days over that.
    proc = ok(feedback("purge", *place.args(), env={"FAKEFACES_FEEDBACK_RETENTION_DAYS": "150"}))
    assert "purged 0 feedback record(s) older than 150 days" in proc.stdout
    proc = ok(feedback("purge", "--days", "30", *place.args()))
    assert "purged 1 feedback record(s) older than 30 days" in proc.stdout
    assert place.store.records() == []
    neg = feedback("purge", "--days", "-1", *place.args())
    assert neg.returncode == 2 and "cannot be negative" in neg.stderr


def test_settings_come_from_the_app_environment(place):
    record = place.seed("real", photo(19))
    env = {
        "AzureWebJobsStorage": place.connection,
        "FAKEFACES_FEEDBACK_TABLE": place.table,
        "FAKEFACES_FEEDBACK_CONTAINER": place.container,
    }
    proc = ok(feedback("review", stdin="r\n", env=env))
    assert "1 pending feedback record(s)" in proc.stdout and record["receipt"] in proc.stdout
    assert place.get(record["receipt"])["review"] == "accepted"


def test_no_storage_or_no_answer_is_one_sentence(place, tmp_path):
    for args in (["review"], ["pull", "--out", tmp_path / "o"], ["purge"], ["delete", "a" * 32]):
        proc = feedback(*args)
        assert proc.returncode == 2, args
        assert proc.stderr.strip() == (
            f"feedback {args[0]}: no feedback storage is configured: set AzureWebJobsStorage "
            "or pass --connection."
        )

    port = free_port()  # nothing listens there
    down = place.connection
    for service, _ in (("Blob", 0), ("Queue", 1), ("Table", 2)):
        down = re.sub(
            rf"{service}Endpoint=http://[^;]+",
            f"{service}Endpoint=http://127.0.0.1:{port}/devstoreaccount1",
            down,
        )
    assert str(port) in down
    t0 = time.monotonic()
    proc = feedback("pull", "--out", tmp_path / "o", "--connection", down)
    assert time.monotonic() - t0 < 60
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"feedback pull: the feedback storage at http://127.0.0.1:{port}/devstoreaccount1 did "
        "not answer (is it running, and is the connection string right?)."
    )
    assert not (tmp_path / "o").exists()


def test_help_explains_each_action():
    for action, words in (
        ("review", ["a accept", "--sheet", "--apply", "agreement"]),
        ("pull", ["real/<receipt>", "SHA-256", "prepare", "removes"]),
        ("delete", ["receipt"]),
        ("purge", ["FAKEFACES_FEEDBACK_RETENTION_DAYS", "365"]),
    ):
        text = ok(feedback(action, "--help")).stdout
        assert "AzureWebJobsStorage" in text
        for word in words:
            assert word in " ".join(text.split()), (action, word)


# ---- the loop, end to end ------------------------------------------------------------------


@pytest.mark.slow
def test_reviewed_feedback_is_prepared_and_trained_on(place, tmp_path):
    """A few feedback photos -> review -> pull -> prepare (real detection and alignment) ->
    train, beside a small prepared set of the usual kind; the run trained on them."""
    if not KAGGLE.exists():
        pytest.skip(f"needs {KAGGLE} (the shared data set beside the repository)")
    labels = ["real", "fake", "fake", "real", "unsure", "real", "fake", "fake"]
    recs = [place.seed(label, photo(20 + i)) for i, label in enumerate(labels)]
    # accept, accept, relabel real, accept, relabel fake, reject, accept, skip
    ok(feedback("review", *place.args(), stdin="a\na\nr\na\nf\nx\na\ns\n"))
    pulled = tmp_path / "feedback"
    ok(feedback("pull", "--out", pulled, *place.args(), "--quiet"))
    rows = read_csv(pulled / "feedback.csv")
    assert sorted((r["receipt"], r["label"]) for r in rows) == sorted(
        (recs[i]["receipt"], label)
        for i, label in (
            (0, "real"),
            (1, "fake"),
            (2, "real"),
            (3, "real"),
            (4, "fake"),
            (6, "fake"),
        )
    )

    def training(*args) -> subprocess.CompletedProcess:
        return ok(
            subprocess.run(
                [sys.executable, "-m", "training", *map(str, args)],
                cwd=ROOT,
                env=ENV,
                capture_output=True,
                text=True,
                timeout=600,
            )
        )

    aligned = tmp_path / "aligned-feedback"
    training("prepare", pulled, aligned, "--workers", "2")
    manifest = read_csv(aligned / "manifest.csv")
    assert len(manifest) == 6 and {r["status"] for r in manifest} == {"ok"}  # every face found
    assert {r["source"] for r in manifest} == {r["file"] for r in rows}
    assert all(r["label"] == r["source"].split("/")[0] for r in manifest)
    usual = tmp_path / "aligned-140k"
    training("prepare", KAGGLE, usual, "--limit", "16", "--workers", "2")

    run = tmp_path / "run"
    training(
        "train", "--data", usual, "--data", aligned, "--model", "baseline", "--size", "32",
        "--epochs", "1", "--batch-size", "8", "--no-augment", "--out", run, "--quiet",
    )  # fmt: skip
    cfg = json.loads((run / "config.json").read_text())
    assert str(aligned.resolve()) in cfg["data"]
    used = cfg["classes"]["by_folder"][str(aligned.resolve())]
    want = {
        s: {c: sum(r["split"] == s and r["label"] == c for r in manifest) for c in ("fake", "real")}
        for s in ("train", "valid")
    }
    assert used == want and sum(sum(v.values()) for v in used.values()) == 6
    history = read_csv(run / "history.csv")
    assert [h["epoch"] for h in history] == ["1"] and np.isfinite(float(history[0]["loss"]))

    # A person asks for their photo to be deleted: delete, pull and prepare again take it out
    # of the pulled and the aligned folder, so the next training run cannot see it.
    gone = recs[1]["receipt"]
    ok(feedback("delete", gone, *place.args()))
    ok(feedback("pull", "--out", pulled, *place.args(), "--quiet"))
    training("prepare", pulled, aligned, "--workers", "2")
    left = read_csv(aligned / "manifest.csv")
    assert len(left) == 5 and not any(gone in r["source"] for r in left)
    assert not list(aligned.rglob(f"{gone}*"))
