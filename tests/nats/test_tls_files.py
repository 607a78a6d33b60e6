"""Bad TLS files fail up front, before any server is dialed, with a MemphisConnectError that
names the option, the path and what is wrong, in the NATS layer (``TlsOptions``) and the
Memphis layer (``connect(cert_file=, key_file=, ca_file=)``). Good files still connect (the
tests in test_connection_security.py and a self-signed anchor here)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fake_peers import FakePeer, fake_peer, silent

import memphis_sync
from memphis_sync import TlsOptions
from memphis_sync.broker.config import TlsFiles
from memphis_sync.errors import ConnectTimeout, MemphisConnectError
from memphis_sync.nats.connection import Connection, ReconnectPolicy

pytestmark = pytest.mark.integration


def _self_signed(tmp: Path, name: str, ca: bool) -> Tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (basic constraints CA:``ca``) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def files(tls_certs, tmp_path: Path) -> Dict[str, str]:
    """Good and bad TLS files, by name."""
    d = tmp_path / "bad"
    d.mkdir()

    def write(name: str, data: bytes) -> str:
        (d / name).write_bytes(data)
        return str(d / name)

    ca_pem = tls_certs.ca_pem.read_bytes()
    ca_key = tls_certs.ca.private_key_pem.bytes()
    client_cert = tls_certs.client_cert.read_bytes()
    client_key = tls_certs.client_key.read_bytes()
    other_key = trustme.CA().issue_cert("other.test").private_key_pem.bytes()
    key_obj = serialization.load_pem_private_key(client_key, password=None)
    encrypted = key_obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pass phrase")
    )
    os.mkfifo(d / "fifo")
    return {
        "ca": str(tls_certs.ca_pem), "cert": str(tls_certs.client_cert), "key": str(tls_certs.client_key),
        "missing": str(d / "missing.pem"),
        "directory": str(d),
        "fifo": str(d / "fifo"),
        "empty": write("empty.pem", b""),
        "text": write("notes.txt", b"this is not a certificate\n"),
        "der": write("ca.der", ssl.PEM_cert_to_DER_cert(ca_pem.decode())),
        "ca_key": write("ca.key", ca_key),
        "ca_cert_and_key": write("ca-bundle.pem", ca_pem + ca_key),
        "leaf_as_ca": write("leaf.pem", tls_certs.ca.issue_cert("leaf.test").cert_chain_pems[0].bytes()),
        "other_key": write("other.key", other_key),
        "encrypted_key": write("encrypted.key", encrypted),
        "bad_base64": write("bad64.pem", b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
        "corrupt_cert": write("corrupt.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        "cert_and_other_key": write("combined-bad.pem", client_cert + other_key),
        "ca_key_file": write("ca-own.key", ca_key),
        "client_cert_copy": write("client-copy.pem", client_cert),
    }


#: name -> (TlsOptions fields, as names of ``files``; the option the error names; what it says)
BAD: Dict[str, Tuple[Dict[str, str], str, str]] = {
    "ca missing": ({"ca_file": "missing"}, "ca_file", "does not exist"),
    "ca is a directory": ({"ca_file": "directory"}, "ca_file", "is a directory"),
    "ca is a fifo": ({"ca_file": "fifo"}, "ca_file", "is not a regular file"),
    "ca empty": ({"ca_file": "empty"}, "ca_file", "is not a PEM file"),
    "ca not PEM": ({"ca_file": "text"}, "ca_file", "is not a PEM file"),
    "ca in DER": ({"ca_file": "der"}, "ca_file", "it looks like DER"),
    "ca is a key": ({"ca_file": "ca_key"}, "ca_file", "holds a private key"),
    "ca is cert+key": ({"ca_file": "ca_cert_and_key"}, "ca_file", "holds a private key"),
    "cert file as ca": ({"ca_file": "leaf_as_ca"}, "ca_file", "holds no CA certificate"),
    "client cert as ca": ({"ca_file": "client_cert_copy"}, "ca_file", "holds no CA certificate"),
    "ca bad base64": ({"ca_file": "bad_base64"}, "ca_file", "not valid base64"),
    "ca corrupt": ({"ca_file": "corrupt_cert"}, "ca_file", "is not a valid certificate bundle"),
    "cert missing": ({"ca_file": "ca", "cert_file": "missing", "key_file": "key"}, "cert_file", "does not exist"),
    "key missing": ({"ca_file": "ca", "cert_file": "cert", "key_file": "missing"}, "key_file", "does not exist"),
    "cert not PEM": ({"ca_file": "ca", "cert_file": "text", "key_file": "key"}, "cert_file", "is not a PEM file"),
    "key not PEM": ({"ca_file": "ca", "cert_file": "cert", "key_file": "text"}, "key_file", "is not a PEM file"),
    "key as cert": ({"ca_file": "ca", "cert_file": "key", "key_file": "key"}, "cert_file", "holds no certificate"),
    "cert as key": ({"ca_file": "ca", "cert_file": "cert", "key_file": "cert"}, "key_file", "holds no private key"),
    "key mismatch": ({"ca_file": "ca", "cert_file": "cert", "key_file": "other_key"}, "key_file", "does not match"),
    "combined mismatch": ({"ca_file": "ca", "cert_file": "cert_and_other_key"}, "cert_file", "does not match"),
    "cert without key": ({"ca_file": "ca", "cert_file": "cert"}, "cert_file", "holds no private key"),
    "encrypted key": ({"ca_file": "ca", "cert_file": "cert", "key_file": "encrypted_key"}, "key_file", "encrypted"),
    "ca as cert+key": ({"ca_file": "ca", "cert_file": "ca", "key_file": "ca_key_file"}, "cert_file", "is the CA certificate"),
}


@pytest.fixture
def listener() -> Iterator[FakePeer]:
    """Where a dial would land: counts the connections it accepts."""
    with fake_peer(silent) as peer:
        yield peer


def _message_checks(exc: BaseException, option: str, path: str, problem: str) -> None:
    message = str(exc)
    assert f"TLS {option} {path!r}" in message, message
    assert problem in message, message
    assert "Errno" not in message and "_ssl.c" not in message, message


@pytest.mark.parametrize("case", sorted(BAD))
def test_nats_layer_checks_tls_files_before_dialing(case, files, listener):
    fields, option, problem = BAD[case]
    options = {name: files[key] for name, key in fields.items()}
    t0 = time.monotonic()
    with pytest.raises(MemphisConnectError) as info:
        memphis_sync.nats_connect(listener.url, tls=TlsOptions(**options), connect_timeout=5)
    assert time.monotonic() - t0 < 1
    _message_checks(info.value, option, options[option], problem)
    assert listener.accepted == 0  # nothing was dialed
    with pytest.raises(MemphisConnectError):  # the constructor alone already refuses
        Connection(listener.url, tls=TlsOptions(**options))


@pytest.mark.parametrize("case", sorted(BAD))
def test_memphis_layer_checks_tls_files_before_dialing(case, files, listener):
    fields, option, problem = BAD[case]
    given = {"ca_file": files["ca"], "cert_file": files["cert"], "key_file": files["key"]}
    given.update({name: files[key] for name, key in fields.items()})
    if "key_file" not in fields and "cert_file" in fields:  # the SDK needs all three: the same file as key
        given["key_file"] = given["cert_file"]
        option = "key_file"
    t0 = time.monotonic()
    with pytest.raises(MemphisConnectError) as info:
        memphis_sync.connect("127.0.0.1", "root", connection_token="t", port=listener.port, timeout_ms=5000, **given)
    assert time.monotonic() - t0 < 1
    _message_checks(info.value, option, given[option], problem)
    assert listener.accepted == 0


def test_good_files_are_dialed(files, listener):
    # positive control of ``accepted == 0`` above: good files reach the (silent) listener
    opts = TlsOptions(ca_file=files["ca"], cert_file=files["cert"], key_file=files["key"])
    with pytest.raises(ConnectTimeout):
        memphis_sync.nats_connect(listener.url, tls=opts, connect_timeout=0.2, reconnect=ReconnectPolicy(enabled=False))
    assert listener.accepted == 1
    with pytest.raises(MemphisConnectError):
        memphis_sync.connect("127.0.0.1", "root", connection_token="t", port=listener.port, timeout_ms=200,
                             ca_file=files["ca"], cert_file=files["cert"], key_file=files["key"])
    assert listener.accepted == 2


def test_an_unreadable_file_is_named(files, monkeypatch):
    # root reads any file, so chmod cannot make one unreadable here: the open() fails instead
    real_open = open

    def refusing_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        if str(path) == files["ca"]:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refusing_open)
    with pytest.raises(MemphisConnectError, match="cannot be read: Permission denied") as info:
        TlsOptions(ca_file=files["ca"]).build_context()
    assert files["ca"] in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a mode 000 file (covered by the test above)")
def test_a_mode_000_file_is_named(files, tmp_path):
    path = tmp_path / "locked.pem"
    path.write_bytes(Path(files["ca"]).read_bytes())
    path.chmod(0)
    with pytest.raises(MemphisConnectError, match="cannot be read"):
        TlsOptions(ca_file=str(path)).build_context()


@pytest.mark.parametrize("value", [123, b"/etc/ssl/ca.pem", ["ca.pem"]])
def test_a_path_of_the_wrong_type_is_refused(value):
    with pytest.raises(MemphisConnectError, match="TLS ca_file must be a path"):
        TlsOptions(ca_file=value).build_context()


def test_tls_must_be_tls_options():
    with pytest.raises(memphis_sync.LocalProtocolError, match="tls must be TlsOptions"):
        Connection("nats://127.0.0.1:4222", tls=ssl.create_default_context())  # type: ignore[arg-type]


def test_the_sdk_rule_all_three_files_or_none_is_kept(files, listener):
    for missing, text in (("cert_file", "cert"), ("key_file", "key"), ("ca_file", "ca")):
        given = {"ca_file": files["ca"], "cert_file": files["cert"], "key_file": files["key"], missing: ""}
        with pytest.raises(MemphisConnectError, match=f"Must provide a TLS {text} file"):
            memphis_sync.connect("127.0.0.1", "root", connection_token="t", port=listener.port, **given)
    assert listener.accepted == 0


def test_pathlike_and_a_ready_context_are_accepted(files):
    assert isinstance(TlsOptions(ca_file=Path(files["ca"])).build_context(), ssl.SSLContext)  # type: ignore[arg-type]
    ctx = ssl.create_default_context()
    assert TlsOptions(context=ctx, ca_file=files["missing"]).build_context() is ctx  # the context wins, as documented


def test_a_self_signed_end_entity_certificate_is_a_valid_anchor(nats_server_factory, tmp_path):
    # a self-signed server certificate without CA:TRUE, trusted directly, verifies with
    # OpenSSL: the "no CA certificate" check must not refuse it (only certificates issued by
    # someone else are useless as an anchor)
    cert, key = _self_signed(tmp_path, "selfsigned", ca=False)
    server = nats_server_factory(tls=TlsFiles(cert_file=cert, key_file=key))
    with memphis_sync.nats_connect(server.url, tls=TlsOptions(ca_file=str(cert))) as conn:
        sub = conn.subscribe("anchor")
        conn.publish("anchor", b"ok")
        assert sub.next_msg(timeout=2).payload == b"ok"


def test_a_key_needing_a_pass_phrase_never_prompts(files):
    # past the text check (as for a key format it does not know), OpenSSL asks for the pass
    # phrase through our callback, which refuses instead of reading the terminal
    from memphis_sync.nats import tlsfiles

    ctx = ssl.create_default_context()
    with pytest.raises(MemphisConnectError, match="holds an encrypted private key") as info:
        tlsfiles._load_chain(ctx, files["cert"], files["encrypted_key"])
    assert files["encrypted_key"] in str(info.value)
