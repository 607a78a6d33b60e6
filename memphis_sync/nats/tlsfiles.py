"""Load the TLS files of :class:`~memphis_sync.nats.servers.TlsOptions` once, before dialing.

Left to ``ssl``, a bad file fails late (only once a server has answered: an unreachable
broker masks it) and with a raw ``FileNotFoundError`` or an OpenSSL code. Here every file is
read and checked up front, and each problem becomes a
:class:`~memphis_sync.errors.MemphisConnectError` naming the option, the path and what is
wrong with it:

- the path is missing, a directory, not a regular file (a FIFO would block the read) or
  unreadable;
- the file is not PEM (a DER file, a random file), or holds the wrong kind of PEM block (a
  key given as a certificate, a certificate given as a key);
- ``ca_file`` holds a private key (the CA's key never belongs on a client), or only
  certificates that cannot anchor a chain (an end-entity certificate issued by someone else:
  a client or server certificate given as the CA; a self-signed one is a valid anchor);
- ``cert_file`` is the CA certificate of ``ca_file`` (a CA given as the client's cert + key);
- ``key_file`` does not match ``cert_file``, or is encrypted (``ssl`` would prompt on the
  terminal for its pass phrase).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import ssl
import stat
from typing import Final, List, NoReturn, Optional, Tuple, Union

from ..errors import MemphisConnectError

__all__ = ["build_tls_context", "MAX_TLS_FILE"]

#: Largest TLS file read: system CA bundles are a few hundred KiB; more is not a PEM file.
MAX_TLS_FILE: Final = 16 * 1024 * 1024

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_CERT_LABELS: Final = (b"CERTIFICATE", b"TRUSTED CERTIFICATE", b"X509 CERTIFICATE")
PathLike = Union[str, "os.PathLike[str]"]
_ENCRYPTED: Final = (
    "holds an encrypted private key: give an unencrypted key, or a ready ssl.SSLContext as TlsOptions(context=...)"
)


def build_tls_context(
    ca_file: Optional[PathLike], cert_file: Optional[PathLike], key_file: Optional[PathLike], verify: bool
) -> ssl.SSLContext:
    """Check the files, then build the client ``SSLContext`` (server verification on unless
    ``verify`` is False; ``ca_file`` replaces the system trust store).

    Raises:
        MemphisConnectError: a file is missing, unreadable or holds the wrong thing (the
            message names the option and the path).
    """
    ca_path = _path(ca_file, "ca_file")
    cert_path = _path(cert_file, "cert_file")
    key_path = _path(key_file, "key_file")
    if key_path is not None and cert_path is None:
        raise MemphisConnectError(f"TLS key_file {key_path!r} given without a cert_file")
    ca_certs: List[bytes] = []
    if ca_path is not None:
        ca_certs = _check_ca(ca_path)
    if cert_path is not None:
        _check_cert(cert_path, key_path, ca_certs, ca_path)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_path)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_path is not None:
        _load_chain(ctx, cert_path, key_path)
    return ctx


def _path(value: Optional[PathLike], option: str) -> Optional[str]:
    if value is None or value == "":
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise MemphisConnectError(f"TLS {option} must be a path (str), got {type(value).__name__}")
    return value


def _fail(option: str, path: str, problem: str, cause: Optional[BaseException] = None) -> NoReturn:
    raise MemphisConnectError(f"TLS {option} {path!r} {problem}") from cause


def _read(path: str, option: str) -> bytes:
    try:
        info = os.stat(path)
    except FileNotFoundError as exc:
        _fail(option, path, "does not exist", exc)
    except OSError as exc:
        _fail(option, path, f"cannot be read: {exc.strerror or exc}", exc)
    if stat.S_ISDIR(info.st_mode):
        _fail(option, path, "is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        _fail(option, path, "is not a regular file")
    if info.st_size > MAX_TLS_FILE:
        _fail(option, path, f"is {info.st_size} bytes: too large for a PEM file (limit {MAX_TLS_FILE})")
    try:
        with open(path, "rb") as f:
            return f.read(MAX_TLS_FILE + 1)
    except OSError as exc:
        _fail(option, path, f"cannot be read: {exc.strerror or exc}", exc)


def _blocks(path: str, option: str) -> List[Tuple[bytes, bytes]]:
    """The PEM blocks of a file as ``(label, body)``; fails when there is none."""
    data = _read(path, option)
    blocks = [(m.group(1), m.group(2)) for m in _PEM_BLOCK.finditer(data)]
    if not blocks:
        hint = " (it looks like DER: convert it with `openssl x509 -inform der`)" if data[:1] == b"\x30" else ""
        _fail(option, path, f"is not a PEM file: no '-----BEGIN ...-----' block{hint}")
    return blocks


def _labels(blocks: List[Tuple[bytes, bytes]]) -> str:
    return ", ".join(sorted({label.decode("ascii") for label, _ in blocks}))


def _der(body: bytes, option: str, path: str) -> bytes:
    lines = [line for line in body.strip().splitlines() if b":" not in line]  # drop PEM headers
    try:
        return base64.b64decode(b"".join(lines), validate=True)
    except (binascii.Error, ValueError):
        _fail(option, path, "holds a PEM certificate block that is not valid base64")


def _check_ca(path: str) -> List[bytes]:
    """Return the DER of the CA file's certificates, after checking it can anchor a chain."""
    blocks = _blocks(path, "ca_file")
    if any(label.endswith(b"PRIVATE KEY") for label, _ in blocks):
        _fail("ca_file", path, "holds a private key: a CA file holds only certificates (keep the CA's key off clients)")
    certs = [_der(body, "ca_file", path) for label, body in blocks if label in _CERT_LABELS]
    if not certs:
        _fail("ca_file", path, f"holds no certificate (it holds: {_labels(blocks)})")
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        _fail("ca_file", path, f"is not a valid certificate bundle: OpenSSL says {_ssl_reason(exc)}", exc)
    if probe.cert_store_stats().get("x509_ca", 0) == 0 and not any(_self_signed(der) for der in certs):
        _fail(
            "ca_file", path,
            "holds no CA certificate, only end-entity certificates issued by another CA (a client or server "
            "certificate?): give the CA that signed the server's certificate",
        )
    return certs


def _check_cert(cert_path: str, key_path: Optional[str], ca_certs: List[bytes], ca_path: Optional[str]) -> None:
    blocks = _blocks(cert_path, "cert_file")
    certs = [_der(body, "cert_file", cert_path) for label, body in blocks if label in _CERT_LABELS]
    if not certs:
        _fail("cert_file", cert_path, f"holds no certificate (it holds: {_labels(blocks)})")
    if certs[0] in ca_certs:
        _fail(
            "cert_file", cert_path,
            f"is the CA certificate of ca_file {ca_path!r}: mutual TLS needs a client certificate issued by that "
            "CA, with its own key",
        )
    key_blocks = blocks if key_path is None else _blocks(key_path, "key_file")
    key_option, key_where = ("cert_file", cert_path) if key_path is None else ("key_file", key_path)
    keys = [(label, body) for label, body in key_blocks if label.endswith(b"PRIVATE KEY")]
    if not keys:
        if key_path is None:
            _fail("cert_file", cert_path, "holds no private key and no key_file was given")
        _fail("key_file", key_path, f"holds no private key (it holds: {_labels(key_blocks)})")
    label, body = keys[0]
    if label.startswith(b"ENCRYPTED") or b"Proc-Type: 4,ENCRYPTED" in body:
        _fail(key_option, key_where, _ENCRYPTED)


def _ssl_reason(exc: ssl.SSLError) -> str:
    """OpenSSL's words without the ``(_ssl.c:NNNN)`` source location."""
    text = exc.reason or (exc.args[1] if len(exc.args) > 1 else str(exc))
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", str(text))


class _NeedsPassPhrase(Exception):
    pass


def _refuse_password() -> bytes:
    # A key that still needs a pass phrase: fail instead of letting OpenSSL prompt on the tty.
    raise _NeedsPassPhrase


def _load_chain(ctx: ssl.SSLContext, cert_path: str, key_path: Optional[str]) -> None:
    try:
        ctx.load_cert_chain(cert_path, key_path, password=_refuse_password)
    except _NeedsPassPhrase:
        _fail("cert_file" if key_path is None else "key_file", key_path or cert_path, _ENCRYPTED)
    except ssl.SSLError as exc:
        reason = exc.reason or ""
        if "KEY_VALUES_MISMATCH" in reason or "key values mismatch" in str(exc):
            if key_path is None:
                _fail("cert_file", cert_path, "holds a private key that does not match its certificate", exc)
            _fail("key_file", key_path, f"does not match the certificate of cert_file {cert_path!r}", exc)
        where = cert_path if key_path is None else f"{cert_path!r} / key_file {key_path!r}"
        raise MemphisConnectError(
            f"TLS cert_file {where}: cannot load the certificate and key: OpenSSL says {_ssl_reason(exc)}"
        ) from exc


# -- the two names of a certificate (enough DER to tell a self-signed one) ----------------


def _tlv(der: bytes, pos: int) -> Tuple[int, int, int]:
    """``(tag, content start, content end)`` of the DER element at ``pos``."""
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    if pos + length > len(der):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _self_signed(der: bytes) -> bool:
    """True when the certificate's issuer and subject names are the same (a possible anchor)."""
    try:
        _, cert_start, _ = _tlv(der, 0)
        _, pos, tbs_end = _tlv(der, cert_start)
        fields: List[Tuple[int, bytes]] = []
        while pos < tbs_end and len(fields) < 6:
            tag, _, end = _tlv(der, pos)
            fields.append((tag, der[pos:end]))
            pos = end
        if fields and fields[0][0] == 0xA0:  # explicit version
            fields = fields[1:]
        # serialNumber, signature, issuer, validity, subject
        return len(fields) >= 5 and fields[2][1] == fields[4][1]
    except (IndexError, ValueError):
        return True  # OpenSSL loaded it; do not refuse what we cannot read
