"""Property-based: requests generated from the OpenAPI description (valid and invalid ones)
against a live daemon find no 5xx, no status the description does not list, no answer
that breaks its schema, and no invalid request accepted (a missing token included). The
daemon runs in a thread of its own (schemathesis' client blocks), on SQLite, with the test
providers and a token."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from rps_service.api.openapi import document
from rps_service.config import load_settings
from tests.conftest import free_port, write_ini
from tests.console import in_thread

TOKEN = "s3cret-token"
# Every check schemathesis has (no 5xx, statuses, content types, schemas, headers, invalid
# data refused, undeclared methods, auth) but one: a request the description allows may
# still be refused, since which providers are enabled is known only at run time.
EXCLUDED = [positive_data_acceptance]

# The token through the description's security scheme, so that requests made without it
# (to check that they are refused) are known to be.
STATUSES: defaultdict[str, Counter[int]] = defaultdict(Counter)

schema = schemathesis.openapi.from_dict(document(), config=schemathesis.Config.from_dict(
    {"auth": {"openapi": {"bearer": {"bearer": TOKEN}}}}))


@schema.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    """Most generated provider names become the daemon's ("fake", "other"): a random name
    is never enabled, and a run that only ever met 404s would test little."""
    if isinstance(case.path_parameters, dict) and "provider" in case.path_parameters:
        case.path_parameters["provider"] = _enabled(case.path_parameters["provider"])
    events = case.body if isinstance(case.body, list) else [case.body]
    for event in events:
        if isinstance(event, dict) and "provider" in event:
            event["provider"] = _enabled(event["provider"])
    return case


def _enabled(name: object) -> object:
    if not isinstance(name, str) or not 1 <= len(name) <= 32 or sum(map(ord, name)) % 4 == 0:
        return name  # invalid ones stay invalid; a quarter of the valid ones stay unknown
    return ("fake", "other")[len(name) % 2]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("openapi-live")
    general = {"port": free_port(), "database": f"sqlite:///{folder}/rps.db",
               "log_file": str(folder / "rps.log"), "api_token": TOKEN,
               "poll_interval": 0.2, "retry_base": 0.01, "retry_cap": 0.05}
    settings_ = load_settings(write_ini(folder / "rps.ini", general), env={})
    with in_thread(settings_) as service:
        yield f"http://{service.address}"


@schema.parametrize()
@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@pytest.mark.timeout(60)
def test_answers_follow_the_description(case: schemathesis.Case, base_url: str) -> None:
    response = case.call_and_validate(base_url=base_url, excluded_checks=EXCLUDED, timeout=10)
    if case.method.upper() == case.operation.method.upper():  # not a probe of another method
        STATUSES[case.operation.label][response.status_code] += 1


def test_the_run_reached_every_handler() -> None:
    """Guards the run above: every operation got past the token, and all but a few got past
    validation to a 2xx at least once (no event fails with the test providers, so none can
    be retried; a random MAC is no device, a random id no job)."""
    if not STATUSES:
        pytest.skip("runs after test_answers_follow_the_description")
    assert len(STATUSES) == sum(len(ops) for ops in schema.raw_schema["paths"].values())
    assert [op for op, seen in STATUSES.items() if set(seen) <= {401}] == []
    never_2xx = {op for op, seen in STATUSES.items()
                 if not any(200 <= status < 300 for status in seen)}
    assert never_2xx <= {"POST /events/{id}/retry", "GET /devices/{provider}/{mac}",
                         "GET /devices/{provider}/{mac}/access",
                         "GET /devices/{provider}/{mac}/timeline",
                         "POST /devices/{provider}/{mac}/replace", "GET /jobs/{id}"}
