"""The dashboard's pure parts: its options, the chart's minutes, and output cut at a character."""

from __future__ import annotations

import pytest

from queuectl_client import protocol as p
from queuectl_client.dashboard.app import BadOption, loopback, parse_base, parse_listen, url
from queuectl_client.dashboard.follow import whole_utf8
from queuectl_client.dashboard.hub import minutes_of


def test_listen_addresses_and_base_paths() -> None:
    assert parse_listen("127.0.0.1:8470") == ("127.0.0.1", 8470)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("localhost:9000") == ("localhost", 9000)
    for bad in ("8470", "127.0.0.1", ":8470", "127.0.0.1:70000", "::1:8470", "host:port", ""):
        with pytest.raises(BadOption):
            parse_listen(bad)
    assert [loopback(h) for h in ("127.0.0.1", "127.8.9.1", "::1", "localhost", "0.0.0.0", "10.0.0.1", "example.com")] \
        == [True, True, True, True, False, False, False]
    assert [parse_base(b) for b in (None, "", "/", "/q", "/q/", "/a/b-c.d_e~f", "/a/.b/c..")] == \
        ["", "", "", "/q", "/q", "/a/b-c.d_e~f", "/a/.b/c.."]
    for bad in ("/a b", "/a//b", "/<script>", "/q?x=1", "/%2e%2e", "q", "/a/../b", "/./q", "/.."):
        with pytest.raises(BadOption):
            parse_base(bad)
    assert url("::1", 8470, "/q", "T") == "http://[::1]:8470/q/?token=T"


def test_the_chart_has_every_minute_of_the_hour_summed_over_the_groups() -> None:
    now = 7200.0 + 30
    reply = p.StatsReply(3600.0, now, [
        p.GroupStats("a", 3, 1, 0, 0.75, None, None, None, None, None,
                     [p.Minute(7200.0, 2, 1, 0), p.Minute(3600.0, 9, 9, 9)]),  # the second is out of the hour
        p.GroupStats("b", 1, 0, 1, 0.5, None, None, None, None, None, [p.Minute(7200.0, 1, 0, 1)]),
    ])
    minutes = minutes_of(reply, now)
    assert len(minutes) == 60 and [m["t"] for m in minutes] == [3660.0 + 60 * i for i in range(60)]
    assert minutes[-1] == {"t": 7200.0, "completed": 3, "failed": 1, "dead": 1}
    assert sum(m["completed"] for m in minutes) == 3
    assert minutes_of(None, now) == [{"t": m["t"], "completed": 0, "failed": 0, "dead": 0} for m in minutes]


def test_output_is_cut_before_a_character_split_by_a_read() -> None:
    euro = "€".encode()  # 3 bytes
    assert whole_utf8(b"ab" + euro) == b"ab" + euro
    assert whole_utf8(b"ab" + euro[:2]) == b"ab"
    assert whole_utf8(b"ab" + euro[:1]) == b"ab"
    assert whole_utf8(b"ab" + "😀".encode()[:3]) == b"ab"
    assert whole_utf8(b"\xff\xfe") == b"\xff\xfe"  # not UTF-8: left as it is, for replacement
    assert whole_utf8(b"") == b""
