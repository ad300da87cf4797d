"""Self-signed OPC-UA application certificates (asyncua's generator) for the bridge and simulator."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

SUBJECT = {"countryName": "DE", "organizationName": "twinflow"}


def generate(key: Path, cert: Path, app_uri: str, host: str, server: bool) -> None:
    """Key (PEM) and certificate (DER) whose SubjectAltName carries ``app_uri`` and ``host``."""
    use = [ExtendedKeyUsageOID.SERVER_AUTH] if server else [ExtendedKeyUsageOID.CLIENT_AUTH]
    key.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(setup_self_signed_certificate(key, cert, app_uri, host, use, SUBJECT))


def generate_pair(out: Path, host: str = "localhost", client_uri: str = "urn:twinflow:bridge") -> dict[str, Path]:
    """Server and client certificates; the client's is copied into ``trusted/`` for the simulator."""
    files = {
        "server_certificate": out / "server-cert.der",
        "server_private_key": out / "server-key.pem",
        "certificate": out / "client-cert.der",
        "private_key": out / "client-key.pem",
        "trusted_certificates": out / "trusted",
    }
    generate(files["server_private_key"], files["server_certificate"], "urn:twinflow:simulator", host, True)
    generate(files["private_key"], files["certificate"], client_uri, host, False)
    files["trusted_certificates"].mkdir(exist_ok=True)
    shutil.copy(files["certificate"], files["trusted_certificates"] / "client-cert.der")
    return files
