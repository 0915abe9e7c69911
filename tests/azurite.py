"""A real Azurite process (Microsoft's storage emulator, frontend's devDependency) for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from shared.storage import DEV_ACCOUNT, DEV_KEY

ROOT = Path(__file__).resolve().parents[1]
AZURITE = ROOT / "frontend" / "node_modules" / ".bin" / "azurite"
START_TIMEOUT = 30


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Azurite:
    """Azurite's blob, queue and table services on free ports, its data under `location`
    (so a stop and start keeps what was stored, as a real account does). With `tls` (a
    certificate and key file) it speaks HTTPS, and with `oauth` it also accepts Microsoft Entra
    bearer tokens (checking their audience, issuer and lifetime, not their signature), as
    Azure Storage does for a managed identity."""

    def __init__(self, location: Path, tls: tuple[Path, Path] | None = None, oauth: bool = False):
        if oauth and tls is None:
            raise ValueError("Azurite accepts bearer tokens over HTTPS only: pass tls too")
        self.location = location
        self.blob_port, self.queue_port, self.table_port = free_ports(3)
        self.log = location / "azurite.log"
        self.proc: subprocess.Popen | None = None
        self.tls, self.oauth = tls, oauth
        self.scheme = "https" if tls else "http"

    @property
    def blob_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.blob_port}/{DEV_ACCOUNT}"

    @property
    def table_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.table_port}/{DEV_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        base = f"{self.scheme}://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={DEV_ACCOUNT};"
            f"AccountKey={DEV_KEY};"
            f"BlobEndpoint={base}:{self.blob_port}/{DEV_ACCOUNT};"
            f"QueueEndpoint={base}:{self.queue_port}/{DEV_ACCOUNT};"
            f"TableEndpoint={base}:{self.table_port}/{DEV_ACCOUNT};"
        )

    def _closed(self) -> bool:
        text = self.log.read_text(errors="replace")[self._log_start :]
        return all(f"{kind} service successfully closed" in text for kind in ("Blob", "Table"))

    def start(self) -> Azurite:
        self.location.mkdir(parents=True, exist_ok=True)
        self._log_start = len(self.log.read_text(errors="replace")) if self.log.exists() else 0
        command = [
            str(AZURITE),
            "--silent",
            "--location",
            str(self.location),
            "--blobHost",
            "127.0.0.1",
            "--queueHost",
            "127.0.0.1",
            "--tableHost",
            "127.0.0.1",
            "--blobPort",
            str(self.blob_port),
            "--queuePort",
            str(self.queue_port),
            "--tablePort",
            str(self.table_port),
            # The Python SDKs send API versions newer than Azurite knows.
            "--skipApiVersionCheck",
            "--loose",
            "--disableProductStyleUrl",
        ]
        if self.tls:
            command += ["--cert", str(self.tls[0]), "--key", str(self.tls[1])]
        if self.oauth:
            command += ["--oauth", "basic"]
        self.proc = subprocess.Popen(
            command,
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "AZURITE_ACCEPT_EULA": "true"},
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        ports = (self.blob_port, self.table_port)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Azurite exited: {self.log.read_text()[-2000:]}")
            if all(_listening(p) for p in ports):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Azurite did not listen in {START_TIMEOUT} s: {self.log.read_text()}")

    def stop(self) -> None:
        """Ends the process; its ports refuse connections once this returns."""
        if self.proc is None:
            return
        self.proc.terminate()
        # Azurite closes its services (saving its metadata) at once, but node then waits for
        # clients' keep-alive connections: once both services say closed, it may be killed.
        deadline = time.monotonic() + 10
        while self.proc.poll() is None and time.monotonic() < deadline:
            if self._closed():
                break
            time.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        self.proc = None
        deadline = time.monotonic() + 10
        while any(_listening(p) for p in (self.blob_port, self.table_port)):
            if time.monotonic() > deadline:
                raise RuntimeError("Azurite's ports still answer after it was stopped")
            time.sleep(0.05)


def start_azurite(
    location: Path, tls: tuple[Path, Path] | None = None, oauth: bool = False
) -> Azurite:
    """A running Azurite storing under `location`; `.connection_string`, `.stop()`, `.start()`."""
    if not AZURITE.exists():
        raise FileNotFoundError(
            f"{AZURITE} is missing: run `cd frontend && npm ci` (azurite is a devDependency)."
        )
    return Azurite(location, tls, oauth).start()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, made now, and its key (PEM files in
    `folder`): Azurite serves HTTPS with it and the SDKs trust it through REQUESTS_CA_BUNDLE."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
