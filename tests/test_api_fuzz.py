"""schemathesis against the OpenAPI document: generated requests find no 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from certserver.accounts import Role
from certserver.config import Settings
from certserver.identity import DeploymentName
from certserver.service import CertServer, CreateRequest
from certserver.web import create_app

from .conftest import env_for

_TOKEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    home: Path = tmp_path_factory.mktemp("fuzz") / "home"
    config = Settings.from_env(env_for(home))
    service = CertServer(config)
    _, token = service.create_token("fuzz", Role.SYSADMIN)
    _TOKEN["value"] = token
    service.create_deployment(CreateRequest(name=DeploymentName("fuzzed")))
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(config, service=service))
    service.close()


def test_no_request_makes_a_server_error(api_schema: schemathesis.BaseSchema) -> None:
    headers = {"Authorization": f"Bearer {_TOKEN['value']}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: schemathesis.Case) -> None:
            response = case.call(headers=headers)
            case.validate_response(response, checks=[not_a_server_error])

        call()
