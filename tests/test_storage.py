"""shared.storage against a real Azurite: records, kept photos, replays, failures, retention."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableClient

from shared import storage
from shared.records import iso_utc
from shared.storage import AlreadyStored, FeedbackStore, StorageUnavailable, connection_string
from tests.azurite import free_ports


def names() -> tuple[str, str]:
    """A table and a container of one test's own (tables: letters and digits only)."""
    tag = uuid.uuid4().hex[:12]
    return f"t{tag}", f"c-{tag}"


@pytest.fixture
def store(azurite) -> FeedbackStore:
    return FeedbackStore.connect(azurite.connection_string, *names(), timeout=2)


def record(receipt: str | None = None, created: str | None = None, **extra) -> dict:
    return {
        "receipt": receipt or uuid.uuid4().hex,
        "image_sha256": "ab" * 32,
        "crop_phash": "0123456789abcdef",
        "face": 0,
        "model_name": "tiny-test",
        "model_version": "0.0.1",
        "p_fake": 0.25,
        "verdict": "real",
        "user_label": "fake",
        "source": "upload",
        "created": created or iso_utc(),
        "review": "pending",
        "reviewer_label": "",
        "reviewed_at": "",
        **extra,
    }


def blob_names(store: FeedbackStore) -> list[str]:
    return [b.name for b in store.container.list_blobs()]


def dead_connection_string() -> str:
    """An account whose every endpoint refuses connections (ports just freed)."""
    blob, queue, table = free_ports(3)
    key = storage.DEV_KEY
    return (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};"
        f"BlobEndpoint=http://127.0.0.1:{blob}/devstoreaccount1;"
        f"QueueEndpoint=http://127.0.0.1:{queue}/devstoreaccount1;"
        f"TableEndpoint=http://127.0.0.1:{table}/devstoreaccount1;"
    )


def test_development_storage_shorthand_is_azurites_account():
    full = connection_string("UseDevelopmentStorage=true")
    assert "AccountName=devstoreaccount1" in full
    assert "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1" in full
    assert "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1" in full
    assert connection_string(" UseDevelopmentStorage=True ") == full
    other = "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=eA==;EndpointSuffix=core"
    assert connection_string(other) == other


def test_record_and_kept_photo_round_trip(store):
    rec = record()
    store.save(rec, b"\xff\xd8 the photo", "image/jpeg")
    [got] = store.records()
    assert got == {
        **rec,
        "kept": True,
        "blob": rec["receipt"],
        "content_type": "image/jpeg",
    }
    assert set(got) == {*storage.COLUMNS, "receipt"}  # no client address, nothing extra
    assert store.photo(got) == b"\xff\xd8 the photo"
    props = store.container.get_blob_client(rec["receipt"]).get_blob_properties()
    assert props.content_settings.content_type == "image/jpeg"
    entity = store.table.get_entity(rec["created"][:7], rec["receipt"])
    assert entity["PartitionKey"] == datetime.now(UTC).strftime("%Y-%m")


def test_record_only_writes_no_blob(store):
    rec = record()
    store.save(rec)
    [got] = store.records()
    assert (got["kept"], got["blob"], got["content_type"]) == (False, "", "")
    assert store.photo(got) is None and blob_names(store) == []


def test_a_replayed_receipt_is_refused_and_the_first_photo_stays(store):
    first = record()
    store.save(first, b"first", "image/png")
    with pytest.raises(AlreadyStored):
        store.save(record(first["receipt"]), b"second", "image/png")
    assert len(store.records()) == 1 and store.photo(store.records()[0]) == b"first"
    # Answered without a photo first, then replayed with one: the photo is not kept.
    bare = record()
    store.save(bare)
    with pytest.raises(AlreadyStored) as err:
        store.save(record(bare["receipt"]), b"later", "image/png")
    assert err.value.status == 409 and err.value.code == "already_received"
    assert blob_names(store) == [first["receipt"]]


def test_a_failed_record_write_deletes_the_photo(store):
    """Blob written, then the table fails: the blob must not stay behind."""
    dead_table = TableClient.from_connection_string(
        dead_connection_string(), store.table.table_name, retry_total=0, connection_timeout=1
    )
    broken = FeedbackStore(dead_table, store.container)
    with pytest.raises(StorageUnavailable) as err:
        broken.save(record(), b"pixels", "image/jpeg")
    assert err.value.status == 503 and err.value.code == "storage_unavailable"
    assert blob_names(store) == [] and store.records() == []


def test_dead_storage_answers_within_a_second():
    start = time.monotonic()
    with pytest.raises(StorageUnavailable):
        FeedbackStore.connect(dead_connection_string(), *names(), timeout=2)
    took = time.monotonic() - start
    assert took < 1.5, took


def test_silent_storage_answers_within_the_timeout():
    """A storage that accepts connections but never answers: bounded by the timeout (one
    retry), not the SDKs' default minute."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except (TimeoutError, OSError):
                continue

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    dead = dead_connection_string()
    table = next(p for p in dead.split(";") if p.startswith("TableEndpoint"))
    conn = dead.replace(table, f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1")
    start = time.monotonic()
    try:
        with pytest.raises(StorageUnavailable):
            FeedbackStore.connect(conn, *names(), timeout=1)
        took = time.monotonic() - start
    finally:
        stop.set()
        for sock in held:
            sock.close()
        listener.close()
    assert 1 <= took < 4, took


def test_records_oldest_first_filtered_by_review(store):
    now = datetime.now(UTC)
    older = record(created=(now - timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    newer = record(created=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    store.save(newer)
    store.save(older)
    assert [r["receipt"] for r in store.records()] == [older["receipt"], newer["receipt"]]
    store.set_review(older, "relabelled", "real")
    [done] = store.records("relabelled")
    assert (done["receipt"], done["reviewer_label"]) == (older["receipt"], "real")
    assert done["reviewed_at"].startswith(now.strftime("%Y-%m-%d"))
    assert [r["receipt"] for r in store.records("pending")] == [newer["receipt"]]
    with pytest.raises(ValueError):
        store.set_review(newer, "approved", "real")
    with pytest.raises(ValueError):
        store.set_review(newer, "accepted", "cat")


def test_delete_removes_the_record_and_its_photo(store):
    rec = record()
    store.save(rec, b"photo", "image/jpeg")
    kept = record()
    store.save(kept, b"other", "image/jpeg")
    assert store.delete(rec["receipt"]) is True
    assert [r["receipt"] for r in store.records()] == [kept["receipt"]]
    assert blob_names(store) == [kept["receipt"]]
    assert store.delete(rec["receipt"]) is False


def test_purge_deletes_old_records_and_orphaned_photos(store, monkeypatch):
    old_time = (datetime.now(UTC) - timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%SZ")
    old, new = record(created=old_time), record()
    store.save(old, b"old", "image/jpeg")
    store.save(new, b"new", "image/jpeg")
    store.container.upload_blob("orphan", b"left by a broken save")
    assert store.purge(365) == 1
    assert [r["receipt"] for r in store.records()] == [new["receipt"]]
    assert sorted(blob_names(store)) == sorted([new["receipt"], "orphan"])  # orphan too young
    monkeypatch.setattr(storage, "ORPHAN_AGE", timedelta(0))
    assert store.purge(365) == 0
    assert blob_names(store) == [new["receipt"]]


def test_an_orphaned_photo_is_taken_over_only_once_stale(store, monkeypatch):
    """A blob without a record: a save of the same token in flight (refused), or left by a
    broken-off save (replaced, so the user's retry stores)."""
    rec = record()
    store.container.upload_blob(rec["receipt"], b"half-written")
    with pytest.raises(AlreadyStored):
        store.save(rec, b"retry", "image/jpeg")
    assert store.records() == []
    monkeypatch.setattr(storage, "IN_FLIGHT", timedelta(0))
    store.save(rec, b"retry", "image/jpeg")
    assert store.photo(store.records()[0]) == b"retry"


def test_the_daily_timer_keeps_the_retention_promise(azurite, monkeypatch):
    """function_app's timer, as the Functions host would call it, deletes what is older than
    FAKEFACES_FEEDBACK_RETENTION_DAYS from the app's own table and container, and nothing else."""
    import function_app
    from shared import api
    from shared.localhost import indexed

    table, container = names()
    for name, value in {
        "AzureWebJobsStorage": azurite.connection_string,
        "FAKEFACES_FEEDBACK_TABLE": table,
        "FAKEFACES_FEEDBACK_CONTAINER": container,
        "FAKEFACES_FEEDBACK_RETENTION_DAYS": "30",
    }.items():
        monkeypatch.setenv(name, value)
    api.settings.cache_clear()
    monkeypatch.setattr(api, "_store", None)
    try:
        store = FeedbackStore.connect(azurite.connection_string, table, container)
        stale = (datetime.now(UTC) - timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%SZ")
        old, new = record(created=stale), record()
        store.save(old, b"old", "image/jpeg")
        store.save(new, b"new", "image/jpeg")
        [timer] = [
            f for f in indexed(function_app.app) if f.get_function_name() == "purge_feedback"
        ]
        timer.get_user_function()(None)
        assert [r["receipt"] for r in store.records()] == [new["receipt"]]
        assert blob_names(store) == [new["receipt"]]
    finally:
        api.settings.cache_clear()


def test_the_timer_does_nothing_without_storage(monkeypatch):
    from shared import api

    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    api.settings.cache_clear()
    try:
        assert api.purge_feedback() == 0
    finally:
        api.settings.cache_clear()
