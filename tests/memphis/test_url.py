"""Connection settings from a Memphis URL and from MEMPHIS_* variables (no sockets)."""

from __future__ import annotations

import pytest

from memphis_sync.errors import MemphisValueError
from memphis_sync.memphis.url import parse_url, settings_from_env

SECRET = "S3CRET"


def test_a_full_url():
    assert parse_url("memphis://app:t%40k@broker.example.com:7777?account_id=2&timeout_ms=500&reconnect=false"
                     "&max_reconnect=3&reconnect_interval_ms=100&ca_file=/ca.pem") == {
        "host": "broker.example.com", "port": 7777, "username": "app", "connection_token": "t@k", "account_id": 2,
        "timeout_ms": 500, "reconnect": False, "max_reconnect": 3, "reconnect_interval_ms": 100, "ca_file": "/ca.pem",
    }
    assert parse_url("memphis://root:pw@h?auth=password") == {"host": "h", "username": "root", "password": "pw"}
    assert parse_url("MEMPHIS://root@h/") == {"host": "h", "username": "root"}  # the secret may come separately
    assert parse_url("memphis://root@[::1]:6666")["host"] == "::1"


@pytest.mark.parametrize("url, text", [
    ("http://root:S3CRET@h", "starts with memphis://"),
    ("nats://root:S3CRET@h:6666", "starts with memphis://"),
    ("memphis://root:S3CRET@h:notaport", "bad port"),
    ("memphis://root:S3CRET@h:99999", "bad port"),
    ("memphis://root:S3CRET@", "no host"),
    ("memphis://:S3CRET@h", "no user name"),
    ("memphis://h", "no user name"),
    ("memphis://root:S3CRET@h/db", "no path"),
    ("memphis://root:S3CRET@h#frag", "no path or fragment"),
    ("memphis://root:S3CRET@h?account_id=x", "must be an integer"),
    ("memphis://root:S3CRET@h?account_id=-1", "must be >= 0"),
    ("memphis://root:S3CRET@h?reconnect=maybe", "true or false"),
    ("memphis://root:S3CRET@h?auth=kerberos", "auth must be token or password"),
    ("memphis://root:S3CRET@h?colour=blue", "unknown parameter 'colour'"),
    ("memphis://root:S3CRET@h?account_id=1&account_id=2", "given twice"),
    ("memphis://root:S3CRET@h?junk", "bad query"),
    ("memphis://root:S3CRET@h\r\nPUB x 0", "whitespace or control characters"),
    ("memphis://root:S3CRET@h x", "whitespace or control characters"),
])
def test_bad_urls_say_what_is_wrong_without_the_secret(url, text):
    with pytest.raises(MemphisValueError, match=text) as bad:
        parse_url(url)
    assert SECRET not in str(bad.value) and SECRET not in repr(bad.value)
    assert bad.value.__cause__ is None and (bad.value.__context__ is None or bad.value.__suppress_context__)


def test_not_a_str():
    with pytest.raises(MemphisValueError, match="url must be a str"):
        parse_url(b"memphis://root@h")  # type: ignore[arg-type]


def test_environment():
    assert settings_from_env({}) == {}
    env = {"MEMPHIS_HOST": "h", "MEMPHIS_PORT": "7000", "MEMPHIS_USERNAME": "app", "MEMPHIS_CONNECTION_TOKEN": "t",
           "MEMPHIS_ACCOUNT_ID": "5", "MEMPHIS_CERT_FILE": "c", "MEMPHIS_KEY_FILE": "k", "MEMPHIS_CA_FILE": "a",
           "MEMPHIS_PASSWORD": ""}
    assert settings_from_env(env) == {"host": "h", "port": 7000, "username": "app", "connection_token": "t",
                                      "account_id": 5, "cert_file": "c", "key_file": "k", "ca_file": "a"}
    # the single variables win over MEMPHIS_URL, a password replacing the URL's token
    both = {"MEMPHIS_URL": "memphis://u:tok@urlhost:1", "MEMPHIS_HOST": "h", "MEMPHIS_PASSWORD": "pw"}
    assert settings_from_env(both) == {"host": "h", "port": 1, "username": "u", "password": "pw"}


@pytest.mark.parametrize("env, text", [
    ({"MEMPHIS_PORT": "six"}, "MEMPHIS_PORT must be an integer"),
    ({"MEMPHIS_PORT": "0"}, "MEMPHIS_PORT must be >= 1"),
    ({"MEMPHIS_ACCOUNT_ID": "-2"}, "MEMPHIS_ACCOUNT_ID must be >= 0"),
    ({"MEMPHIS_URL": "memphis://u:S3CRET@h:x"}, "bad port"),
    ({"MEMPHIS_CONNECTION_TOKEN": "S3CRET", "MEMPHIS_PASSWORD": "S3CRET"}, "not both"),
])
def test_bad_environment(env, text):
    with pytest.raises(MemphisValueError, match=text) as bad:
        settings_from_env(env)
    assert SECRET not in str(bad.value)
