"""Where a node finds its database and its password; the `heartbeat` setting."""

from __future__ import annotations

import os

import pytest

from queuectld.config import Config, ConfigError
from queuectld.pg import connect
from queuectld.store import StoreError


def test_a_password_in_the_store_argument_is_refused_with_the_alternatives() -> None:
    with pytest.raises(StoreError) as e:
        connect.resolve("postgresql://u:secret@db/q", None, {})
    assert "secret" not in str(e.value) and "\n" not in str(e.value)
    assert "QUEUECTL_STORE" in str(e.value) and "--store-password-file" in str(e.value) and ".pgpass" in str(e.value)
    with pytest.raises(StoreError):
        connect.resolve("postgresql://u@db/q?password=secret", None, {})


def test_the_environment_may_carry_the_password_and_argv_wins_over_it() -> None:
    assert connect.resolve(None, None, {"QUEUECTL_STORE": "postgresql://u:pw@db/q"}) == ("postgresql://u:pw@db/q", {})
    assert connect.resolve("postgresql://a@db/q", None, {"QUEUECTL_STORE": "postgresql://b@db/q"})[0] == \
        "postgresql://a@db/q"
    assert connect.resolve(None, None, {}) == (None, {})


def test_not_a_postgresql_url_is_refused_without_its_password() -> None:
    with pytest.raises(StoreError) as e:
        connect.resolve(None, None, {"QUEUECTL_STORE": "mysql://u:pw@db/q"})
    assert "pw" not in str(e.value)


def test_the_password_file_gives_its_first_line(tmp_path: os.PathLike[str]) -> None:
    f = os.path.join(tmp_path, "pw")
    with open(f, "w") as out:
        out.write("s3cret\r\nignored\n")
    os.chmod(f, 0o600)
    assert connect.resolve("postgresql://u@db/q", f, {}) == ("postgresql://u@db/q", {"password": "s3cret"})
    assert connect.resolve("postgresql://u@db/q", None, {"QUEUECTL_STORE_PASSWORD_FILE": f})[1] == \
        {"password": "s3cret"}
    with pytest.raises(StoreError, match="cannot read the password file"):
        connect.resolve("postgresql://u@db/q", f + ".missing", {})
    open(f, "w").close()
    with pytest.raises(StoreError, match="is empty"):
        connect.resolve("postgresql://u@db/q", f, {})


def test_redact_drops_only_the_password() -> None:
    assert connect.redact("postgresql://u:pw@db:5433/q?sslmode=require") == "postgresql://u@db:5433/q?sslmode=require"
    assert connect.redact("postgresql://db/q") == "postgresql://db/q"


def test_backoff_doubles_up_to_five_seconds() -> None:
    delays = [connect.BACKOFF_FIRST]
    for _ in range(8):
        delays.append(connect.next_delay(delays[-1]))
    assert delays[:3] == [0.1, 0.2, 0.4] and delays[-1] == connect.BACKOFF_MAX == 5.0


def test_heartbeat_setting_takes_seconds_from_a_fifth_to_a_minute() -> None:
    c = Config()
    assert c.heartbeat == 2.0 and c.show("heartbeat") == "2"
    assert c.parse("heartbeat", "0.2") == ("heartbeat", "0.2")
    assert c.parse("heartbeat", "60") == ("heartbeat", "60")
    for bad in ("0.1", "61", "nan", "inf", "-1", "two", ""):
        with pytest.raises(ConfigError) as e:
            c.parse("heartbeat", bad)
        assert str(e.value).startswith("bad value for heartbeat") and "\n" not in str(e.value)
