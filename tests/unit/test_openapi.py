"""The OpenAPI description follows the code: every route described, the committed copy
current, a valid OpenAPI 3.1 document, answers as the handlers build them."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import schemathesis
from pydantic import ValidationError

from rps_service.api import answers
from rps_service.api.app import Api, create_app
from rps_service.api.openapi import ROUTES, document, render
from rps_service.config import load_settings
from rps_service.models import Device, Event
from rps_service.service import Service
from tests.conftest import write_ini
from tests.fakes import ScriptedProvider

ROOT = Path(__file__).resolve().parents[2]
#: Routes that are not the API: the console's static files.
UNDESCRIBED_PREFIXES = ("/ui",)


def _app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    settings = load_settings(write_ini(tmp_path / "rps.ini",
                                       {"database": f"sqlite:///{tmp_path}/rps.db"}), env={})
    service = Service(settings, providers={"fake": ScriptedProvider()})  # not started
    app = create_app(Api(settings, service.store, service.distributor, service.providers,
                         service.metrics))
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
        and not route.resource.canonical.startswith(UNDESCRIBED_PREFIXES)
    }


def test_every_route_of_the_listener_is_described(tmp_path: Path) -> None:
    described = {(r.method, r.path) for r in ROUTES}
    served = _app_routes(tmp_path)
    assert served - described == set(), "routes without a description in openapi.ROUTES"
    assert described - served == set(), "descriptions of routes the listener does not have"
    assert len(described) == len(ROUTES), "a route described twice"


def test_committed_copy_is_current() -> None:
    committed = (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert committed == render(), ("docs/openapi.json is stale: run "
                                   "python -m rps_service.api.openapi > docs/openapi.json")


def test_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(doc).validate()  # the OpenAPI 3.1 meta-schema
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        section, name = ref.removeprefix("#/components/").split("/")
        assert name in doc["components"][section], ref


def test_request_bodies_are_the_handlers_models() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    assert set(schemas["EventIn"]["required"]) == {"action", "provider", "mac"}
    assert schemas["EventIn"]["additionalProperties"] is False
    body = doc["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["oneOf"][1]["maxItems"] == 1000
    creds = doc["paths"]["/providers/{provider}/credentials/{server}"]["put"]["requestBody"]
    refs = [r["$ref"] for r in creds["content"]["application/json"]["schema"]["anyOf"]]
    assert "#/components/schemas/SnomSettingsCredentials" in refs  # one model per provider
    snom = schemas["SnomSettingsCredentials"]
    assert set(snom["required"]) == {"access_key_id", "access_key_secret"}
    assert snom["additionalProperties"] is False and "api_key" in schemas[
        "PolySettingsCredentials"]["properties"]


def test_only_health_is_described_as_needing_no_token() -> None:
    doc = document()
    public = {(path, method) for path, ops in doc["paths"].items()
              for method, op in ops.items() if op["security"] == []}
    assert public == {("/health", "get")}


NOW = datetime(2026, 11, 26, 10, 20, 41)


def test_event_and_device_answers_match_their_description() -> None:
    event = Event(id=7, action="add", provider="snom", server=8, mac="000413ABCDEF",
                  payload={"name": "Reception"}, state="failed", attempts=2, created_at=NOW,
                  updated_at=NOW, last_error="403: Forbidden", idempotency_key="gui-1")
    answers.Event.model_validate(event.to_json())
    device = Device(provider="snom", mac="000413ABCDEF", server=8, status="registered",
                    registered_at=NOW, http_username="ztp-1", http_password="x" * 24,
                    ztp_fetched_at=NOW, ztp_model="D717", ztp_firmware="10.1.33.33")
    answers.Device.model_validate(device.to_json())
    answers.Device.model_validate(Device(provider="snom", mac="000413ABCDEF", server=1,
                                         status="pending").to_json())


def test_an_undescribed_answer_field_is_refused() -> None:
    device = Device(provider="snom", mac="000413ABCDEF", server=8, status="registered")
    with pytest.raises(ValidationError, match="serial"):
        answers.Device.model_validate(device.to_json() | {"serial": "X"})
