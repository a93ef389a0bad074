"""guard_server: which PostgreSQL versions pg_index refuses, and what it tells the operator.

Pure function, no database: versions are server_version_num values (14.4 = 140004).
"""

from __future__ import annotations

import pytest

from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError
from ansible_collections.indexops.core.plugins.module_utils.safety import guard_server

ACCEPTED = [
    # (version, concurrent, nulls_not_distinct)
    pytest.param(140004, True, False, id="14.4-concurrent"),
    pytest.param(140010, True, False, id="14.10-concurrent"),
    pytest.param(140000, False, False, id="14.0-not-concurrent"),
    pytest.param(140003, False, False, id="14.3-not-concurrent"),
    pytest.param(150000, True, True, id="15.0-nulls-not-distinct"),
    pytest.param(150020, True, True, id="15.20-nulls-not-distinct"),
    pytest.param(180001, True, True, id="18.1-nulls-not-distinct"),
    pytest.param(190000, True, False, id="19.0-concurrent"),
]

REFUSED = [
    # (version, concurrent, nulls_not_distinct, fragments the message must contain)
    pytest.param(130010, True, False, ["130010", "older than 14", "Expected: PostgreSQL 14.4 or newer",
                                       "Nothing was changed"], id="13.10-concurrent"),
    pytest.param(130010, False, False, ["130010", "older than 14", "Expected: PostgreSQL 14.4 or newer"],
                 id="13.10-not-concurrent"),
    pytest.param(90624, False, False, ["90624", "older than 14"], id="9.6"),
    pytest.param(140000, True, False, ["140000", "corrupt", "CONCURRENTLY", "Expected: PostgreSQL 14.4 or newer",
                                       "Nothing was changed"], id="14.0-concurrent"),
    pytest.param(140001, True, False, ["140001", "corrupt", "CONCURRENTLY"], id="14.1-concurrent"),
    pytest.param(140002, True, False, ["140002", "corrupt", "CONCURRENTLY"], id="14.2-concurrent"),
    pytest.param(140003, True, False, ["140003", "14.0-14.3", "corrupt", "upgrade the minor version"],
                 id="14.3-concurrent"),
    pytest.param(140010, True, True, ["nulls_not_distinct", "PostgreSQL 15 or newer", "140010",
                                      "Expected: nulls_not_distinct: false on PostgreSQL 14"],
                 id="14.10-nulls-not-distinct"),
    pytest.param(140004, False, True, ["nulls_not_distinct", "PostgreSQL 15 or newer", "140004"],
                 id="14.4-not-concurrent-nulls-not-distinct"),
]


@pytest.mark.parametrize("version, concurrent, nulls_not_distinct", ACCEPTED)
def test_supported_servers_pass(version, concurrent, nulls_not_distinct):
    assert guard_server(version, concurrent=concurrent, nulls_not_distinct=nulls_not_distinct) is None


@pytest.mark.parametrize("version, concurrent, nulls_not_distinct, fragments", REFUSED)
def test_unsafe_or_unsupported_servers_are_refused(version, concurrent, nulls_not_distinct, fragments):
    with pytest.raises(IndexOpsError) as refused:
        guard_server(version, concurrent=concurrent, nulls_not_distinct=nulls_not_distinct)
    message = refused.value.msg
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert refused.value.expected  # every refusal says what would have been right
    # Upgrading or changing the options is needed: a plain rerun would be refused again.
    assert refused.value.retry_safe is False


def test_concurrent_corruption_window_is_exactly_14_0_to_14_3():
    refused = []
    for version in range(139999, 140006):
        try:
            guard_server(version, concurrent=True)
        except IndexOpsError:
            refused.append(version)
    # 139999 is below 14 (refused for age); 140000..140003 for the corruption bug; 140004+ pass.
    assert refused == [139999, 140000, 140001, 140002, 140003]


def test_old_server_is_refused_for_age_before_anything_else():
    with pytest.raises(IndexOpsError) as refused:
        guard_server(130010, concurrent=True, nulls_not_distinct=True)
    assert "older than 14" in refused.value.msg
    assert "nulls_not_distinct" not in refused.value.msg


@pytest.mark.parametrize("version", [140004, 180006])
def test_a_hot_standby_is_refused_whatever_its_version(version):
    with pytest.raises(IndexOpsError) as refused:
        guard_server(version, concurrent=True, standby=True)
    assert "hot standby (a read-only replica in recovery)" in refused.value.msg
    assert "Nothing was changed; point login_host (indexops_login_host) at the primary" in refused.value.msg
    assert refused.value.retry_safe is False
