"""OPC-UA with Basic256Sha256 SignAndEncrypt, generated certificates and a login."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from asyncua import ua
from pydantic import SecretStr

from connectors.opcua.bridge import OpcuaBridge
from connectors.opcua.certs import generate, generate_pair
from connectors.opcua.client import make_client
from connectors.sim.runner import Simulator
from operators.records.envelope import decode

from .plant_helpers import consume, free_port, private_settings, wait_for, write_mapping

pytestmark = pytest.mark.integration


def secure_toml(uid: str, port: int, certs: dict[str, Path], mode: str) -> str:
    return f"""
[opcua]
endpoint = "opc.tcp://127.0.0.1:{port}/twinflow/"
security = "{mode}"
certificate = "{certs["certificate"]}"
private_key = "{certs["private_key"]}"
server_certificate = "{certs["server_certificate"]}"
server_private_key = "{certs["server_private_key"]}"
trusted_certificates = "{certs["trusted_certificates"]}"
username = "operator"
password = "s3cret-{uid}"

[[assets]]
twin_id = "pump-sec-{uid}"
type = "pump"
protocol = "opcua"
[assets.params]
speed_rpm = {{ node = "ns=2;s=sec-{uid}.speed_rpm" }}
flow_m3h = {{ node = "ns=2;s=sec-{uid}.flow_m3h" }}
"""


async def _connect(conn, resolve) -> None:
    client = await make_client(conn, resolve)
    await client.connect()
    await client.disconnect()


@pytest.mark.parametrize("mode", ["Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign"])
def test_secure_mode_with_trusted_certificate_and_untrusted_refused(tmp_path: Path, mode: str) -> None:
    uid = uuid.uuid4().hex[:8]
    settings = private_settings(tmp_path, uid)
    certs = generate_pair(tmp_path / "certs", "localhost")
    rogue_key, rogue_cert = tmp_path / "rogue-key.pem", tmp_path / "rogue-cert.der"
    generate(rogue_key, rogue_cert, "urn:twinflow:bridge", "localhost", server=False)
    mapping = write_mapping(tmp_path, secure_toml(uid, free_port(), certs, mode))
    sim = Simulator(settings, mapping, protocols=("opcua",)).start()
    bridge = OpcuaBridge(settings, mapping, commands=False)
    try:
        bridge.start()
        assert bridge.connected.wait(20), "bridge with the trusted certificate did not connect"
        wait_for(lambda: bridge.publisher.counters.delivered >= 5, 20, "encrypted values to reach Kafka")
        twin = f"pump-sec-{uid}".encode()
        msgs = consume(settings, settings.topics.raw, lambda ms: sum(m.key() == twin for m in ms) >= 5)
        envs = [decode(m.value(), key=m.key()) for m in msgs if m.key() == twin]
        assert len(envs) >= 5 and all(e.source == "opcua" and e.quality == "good" for e in envs)

        conn = mapping.opcua
        # A client certificate the server does not trust is refused.
        rogue = conn.model_copy(update={"certificate": rogue_cert, "private_key": rogue_key})
        with pytest.raises(ua.uaerrors.BadCertificateUntrusted):
            asyncio.run(asyncio.wait_for(_connect(rogue, mapping.path), 20))
        # The trusted certificate with a wrong password is refused too.
        wrong = conn.model_copy(update={"password": SecretStr("wrong")})
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            asyncio.run(asyncio.wait_for(_connect(wrong, mapping.path), 20))
        # And the server offers no unsecured endpoint.
        plain = conn.model_copy(update={"security": "None"})
        with pytest.raises((ua.UaError, ConnectionError, OSError, TimeoutError)):
            asyncio.run(asyncio.wait_for(_connect(plain, mapping.path), 20))
    finally:
        bridge.stop(10)
        sim.stop()
