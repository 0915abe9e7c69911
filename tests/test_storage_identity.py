"""Feedback storage by identity, as infra/ deploys it (the account's shared keys off): the
settings Azure writes, azure-identity's real ManagedIdentityCredential asking the worker's
identity endpoint, and a real Azurite over HTTPS checking each bearer token (`--oauth basic`).
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
import requests

from shared import settings as settingslib
from shared.settings import Settings, StorageTarget
from shared.storage import FeedbackStore, StorageUnavailable
from tests.azurite import AZURITE, free_ports, self_signed_certificate, start_azurite
from tests.conftest import LocalHost
from tests.identity import IdentityEndpoint
from tests.test_feedback import SECRET, unique

CLIENT_ID = "5f0c1d2e-0000-4000-8000-00000000c11d"  # the user-assigned identity's client id
STORAGE_AUDIENCE = "https://storage.azure.com"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def oauth_azurite(tls, tmp_path_factory):
    """Azurite on HTTPS that accepts Entra bearer tokens (and still its account key)."""
    if not AZURITE.exists():
        message = f"needs Azurite ({AZURITE}): cd frontend && npm ci"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    server = start_azurite(tmp_path_factory.mktemp("azurite-oauth"), tls, oauth=True)
    yield server
    server.stop()


@pytest.fixture
def identity(tls, monkeypatch):
    """The worker's managed identity endpoint, and the test certificate trusted by the SDKs."""
    endpoint = IdentityEndpoint()
    for key, value in {**endpoint.env, "REQUESTS_CA_BUNDLE": str(tls[0])}.items():
        monkeypatch.setenv(key, value)
    yield endpoint
    endpoint.stop()


def target(azurite, client_id: str = CLIENT_ID) -> StorageTarget:
    return StorageTarget(
        blob_uri=azurite.blob_url,
        table_uri=azurite.table_url,
        credential="managedidentity",
        client_id=client_id,
    )


def names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:12]
    return f"id{tag}", f"id-{tag}"


def record(**extra) -> dict:
    return {
        "receipt": uuid.uuid4().hex,
        "p_fake": 0.25,
        "verdict": "real",
        "user_label": "fake",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "review": "pending",
        **extra,
    }


def test_a_managed_identity_stores_and_reads_back_with_no_key(oauth_azurite, identity):
    store = FeedbackStore.connect(target(oauth_azurite), *names(), timeout=2)
    rec = record()
    store.save(rec, b"\xff\xd8 kept photo", "image/jpeg")
    [got] = store.records()
    assert got["receipt"] == rec["receipt"] and store.photo(got) == b"\xff\xd8 kept photo"
    assert store.delete(rec["receipt"]) is True and store.records() == []
    # The user-assigned identity was asked for, for storage, with the worker's secret header.
    assert identity.asked and all(
        q == {"api-version": "2019-08-01", "resource": STORAGE_AUDIENCE, "client_id": CLIENT_ID}
        for q in identity.asked
    )


def test_a_token_storage_refuses_is_unavailable_not_a_crash(oauth_azurite, identity):
    """A token for another audience (a role or audience mistake in the deployment): Azurite
    refuses it, and the app answers 503 storage_unavailable."""
    identity.audience = "https://vault.azure.net"
    with pytest.raises(StorageUnavailable) as err:
        FeedbackStore.connect(target(oauth_azurite, "another-identity"), *names(), timeout=2)
    assert err.value.status == 503 and err.value.code == "storage_unavailable"


def test_an_identity_endpoint_that_is_down_answers_in_seconds(oauth_azurite, identity, monkeypatch):
    (dead,) = free_ports(1)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{dead}/msi/token")
    start = time.monotonic()
    with pytest.raises(StorageUnavailable):
        FeedbackStore.connect(target(oauth_azurite, "unreachable"), *names(), timeout=2)
    assert time.monotonic() - start < 5  # one retry, not the SDK default of several


STORAGE_ENV = [k for k in settingslib.APP_SETTINGS if k.startswith("AzureWebJobsStorage")]


@pytest.fixture
def clean_env(monkeypatch):
    for key in STORAGE_ENV:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_settings_read_the_identity_form_azure_writes(clean_env):
    clean_env.setenv("AzureWebJobsStorage__blobServiceUri", "https://acct.blob.core.windows.net")
    clean_env.setenv("AzureWebJobsStorage__tableServiceUri", "https://acct.table.core.windows.net")
    clean_env.setenv("AzureWebJobsStorage__credential", "managedidentity")
    clean_env.setenv("AzureWebJobsStorage__clientId", CLIENT_ID)
    cfg = Settings.from_env()
    assert cfg.feedback_enabled and cfg.storage == ""
    assert cfg.storage_target == StorageTarget(
        blob_uri="https://acct.blob.core.windows.net",
        table_uri="https://acct.table.core.windows.net",
        credential="managedidentity",
        client_id=CLIENT_ID,
    )
    assert cfg.storage_target.mode == "managed identity"
    # A connection string, where both are set, wins (as the Functions host reads them).
    clean_env.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    assert Settings.from_env().storage_target.mode == "connection string"


def test_settings_say_why_feedback_is_off(clean_env):
    assert "AzureWebJobsStorage is not set" in Settings.from_env().storage_target.problem
    # What the Functions host alone needs (blob, queue) is not enough for feedback's records.
    clean_env.setenv("AzureWebJobsStorage__blobServiceUri", "https://acct.blob.core.windows.net")
    clean_env.setenv("AzureWebJobsStorage__credential", "managedidentity")
    cfg = Settings.from_env()
    assert not cfg.feedback_enabled and cfg.storage_target.mode == "off"
    assert "AzureWebJobsStorage__tableServiceUri" in cfg.storage_target.problem
    clean_env.setenv("AzureWebJobsStorage__tableServiceUri", "https://acct.table.core.windows.net")
    clean_env.setenv("AzureWebJobsStorage__credential", "clientsecret")
    assert "must be managedidentity" in Settings.from_env().storage_target.problem
    with pytest.raises(StorageUnavailable):
        FeedbackStore.connect(Settings.from_env().storage_target)


def test_settings_take_an_account_name_for_the_public_cloud(clean_env):
    clean_env.setenv("AzureWebJobsStorage__accountName", "fakefacesdata")
    got = Settings.from_env().storage_target
    assert (got.blob_uri, got.table_uri, got.mode) == (
        "https://fakefacesdata.blob.core.windows.net",
        "https://fakefacesdata.table.core.windows.net",
        "developer identity",
    )


def test_only_listed_settings_can_be_read():
    with pytest.raises(KeyError, match="APP_SETTINGS"):
        settingslib.app_setting("FAKEFACES_NOT_A_SETTING")


def test_the_local_host_gives_feedback_by_identity(
    oauth_azurite, identity, tiny_model_dir, images, tmp_path
):
    """The app as Azure runs it with infra/'s settings: health says which mode, predict signs,
    feedback is stored through the identity, and nothing holds an account key."""
    table, container = names()
    host = LocalHost(
        tiny_model_dir,
        tmp_path / "host.log",
        AzureWebJobsStorage__blobServiceUri=oauth_azurite.blob_url,
        AzureWebJobsStorage__tableServiceUri=oauth_azurite.table_url,
        AzureWebJobsStorage__credential="managedidentity",
        AzureWebJobsStorage__clientId=CLIENT_ID,
        FAKEFACES_FEEDBACK_TABLE=table,
        FAKEFACES_FEEDBACK_CONTAINER=container,
        FAKEFACES_FEEDBACK_SECRET=SECRET,
        **identity.env,
        REQUESTS_CA_BUNDLE=os.environ["REQUESTS_CA_BUNDLE"],
    )
    try:
        health = requests.get(host.url + "/api/health", timeout=10).json()
        assert health["feedback"] == {
            "enabled": True,
            "storage": "managed identity",
            "retention_days": 365,
        }
        photo = unique(images["astronaut"])
        answer = requests.post(
            host.url + "/api/predict",
            files={"image": ("a.jpg", photo, "image/jpeg")},
            timeout=60,
        ).json()
        token = answer["faces"][0]["feedback_token"]
        resp = requests.post(
            host.url + "/api/feedback",
            data={"token": token, "label": "fake", "keep": "1"},
            files={"image": ("a.jpg", photo, "image/jpeg")},
            timeout=30,
        )
        assert resp.status_code == 201, resp.text
        receipt = resp.json()["receipt"]
    finally:
        host.stop()
    store = FeedbackStore.connect(target(oauth_azurite), table, container, timeout=2)
    [rec] = store.records()
    assert rec["receipt"] == receipt and store.photo(rec) == photo
    assert any(q.get("client_id") == CLIENT_ID for q in identity.asked)
