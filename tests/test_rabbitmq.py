"""The esb set installed by ``certserver install``, served by a real RabbitMQ broker.

The broker uses the installed files in place (owner rabbitmq, 0700/0600), with
``verify_peer`` and ``fail_if_no_peer_cert``. This deployment's cco publishes and consumes
over AMQPS; a client without a certificate, and the cco of another deployment, are refused.
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from certserver.identity import Component
from certserver.mtls import ComponentCredentials

from .conftest import Cli, Extracted, need
from .rabbitmq_tools import PASSWORD, USER, Broker, private_broker

pika = (
    pytest.importorskip("pika")
    if not os.environ.get("CERTSERVER_REQUIRE_INTEGRATION")
    else __import__("pika")
)


@pytest.fixture(scope="module")
def broker(alpha: Extracted) -> Iterator[Broker]:
    need(os.geteuid() == 0, "installs owned by rabbitmq need root")
    prefix = Path(tempfile.mkdtemp(prefix="certserver-esb-"))  # traversable by rabbitmq
    prefix.chmod(0o755)
    try:
        run = Cli({"CERTSERVER_HOME": str(prefix / "home")})
        done = run(
            "install", str(alpha.result.package_path), "--component", "esb", "--prefix", str(prefix)
        )
        assert done.exit_code == 0, done.stderr
        with private_broker(prefix / "etc/rabbitmq/certs") as running:
            yield running
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def _round_trip(port: int, context: ssl.SSLContext) -> bytes | None:
    parameters = pika.ConnectionParameters(
        host="127.0.0.1",
        port=port,
        credentials=pika.PlainCredentials(USER, PASSWORD),
        ssl_options=pika.SSLOptions(context, server_hostname="localhost"),
        connection_attempts=1,
        socket_timeout=10,
        blocked_connection_timeout=10,
    )
    connection = pika.BlockingConnection(parameters)
    try:
        channel = connection.channel()
        channel.queue_declare(queue="certserver-test")
        channel.basic_publish(exchange="", routing_key="certserver-test", body=b"hello esb")
        for _ in range(50):
            _, _, body = channel.basic_get(queue="certserver-test", auto_ack=True)
            if body is not None:
                return bytes(body)
            connection.sleep(0.1)
        return None
    finally:
        connection.close()


def _refused(broker: Broker, context: ssl.SSLContext) -> str:
    """The error of a connection the broker must refuse (pika raises either kind)."""
    with pytest.raises((pika.exceptions.AMQPError, ssl.SSLError)) as refused:
        _round_trip(broker.port, context)
    return str(refused.value)


def _client(folder: Path, component: Component, tls: ssl.TLSVersion) -> ssl.SSLContext:
    context = ComponentCredentials.from_folder(folder, component).client_context()
    context.minimum_version = context.maximum_version = tls
    return context


TLS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


@pytest.mark.parametrize("tls", TLS, ids=["tls1.2", "tls1.3"])
def test_this_deployments_cco_publishes_and_consumes(
    broker: Broker, alpha: Extracted, tls: ssl.TLSVersion
) -> None:
    context = _client(alpha.folder(Component.CCO), Component.CCO, tls)
    assert _round_trip(broker.port, context) == b"hello esb"


@pytest.mark.parametrize("tls", TLS, ids=["tls1.2", "tls1.3"])
def test_a_client_without_certificate_is_refused(
    broker: Broker, alpha: Extracted, tls: ssl.TLSVersion
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(alpha.ca(Component.CCO)))
    context.minimum_version = context.maximum_version = tls
    mark = broker.mark()
    refused = _refused(broker, context)
    if tls is ssl.TLSVersion.TLSv1_2:
        assert "handshake failure" in refused
    else:  # under TLS 1.3 the client only sees a lost stream: the broker says why
        assert broker.logged("Fatal - Certificate required", since=mark)


@pytest.mark.parametrize("tls", TLS, ids=["tls1.2", "tls1.3"])
def test_the_cco_of_another_deployment_is_refused(
    broker: Broker, alpha: Extracted, bravo: Extracted, tls: ssl.TLSVersion
) -> None:
    foreign = ComponentCredentials.from_folder(bravo.folder(Component.CCO), Component.CCO)
    # trust alpha's broker, so that only the broker's check of the client is under test
    foreign = ComponentCredentials(
        foreign.identity, foreign.cert_file, foreign.key_file, alpha.ca(Component.CCO), None
    )
    context = foreign.client_context()
    context.minimum_version = context.maximum_version = tls
    mark = broker.mark()
    refused = _refused(broker, context)
    if tls is ssl.TLSVersion.TLSv1_2:
        assert "unknown ca" in refused.lower()
    # under TLS 1.3 the client may see the alert or only a lost stream: the broker says why
    assert broker.logged("Fatal - Unknown CA", since=mark)
