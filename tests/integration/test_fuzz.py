"""Property-based fuzzing of every documented operation: no input yields a 5xx.

Schemathesis generates requests from /openapi.json (valid and invalid ones) and sends them to
a real `assetd serve` on 127.0.0.1.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.server import RunningServer, run_server

pytestmark = pytest.mark.slow

# tus PATCH bodies: schemathesis knows no strategy for this media type of raw bytes.
schemathesis.openapi.media_type("application/offset+octet-stream", st.binary(max_size=256))

KEY = "assetd_fuzz-key-fuzz-key-fuzz-key"


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningServer, str]]:
    # Always its own SQLite file: the fuzzer writes freely and must not see other tests' rows.
    data_dir: Path = tmp_path_factory.mktemp("fuzz") / "data"
    with run_server(data_dir, api_key=KEY, tenant="fuzz") as server:
        with httpx.Client(base_url=server.url, headers=server.headers) as http:
            # Something to find, so generated ids and queries also hit real rows.
            seeded = http.post("/v1/assets", files={"file": ("seed.txt", b"seed")}).json()
        yield server, seeded["id"]


@pytest.fixture(scope="module")
def api_schema(live_server: tuple[RunningServer, str]) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_server[0].url}/openapi.json")


def test_no_input_produces_a_server_error(
    api_schema: schemathesis.BaseSchema, live_server: tuple[RunningServer, str]
) -> None:
    server, asset_id = live_server
    real = {"tenant": "fuzz", "asset_id": asset_id, "assetId": asset_id, "number": "1"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20  # the whole documented surface, native and compat

    statuses: collections.Counter[str] = collections.Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=int(os.environ.get("ASSETD_FUZZ_EXAMPLES", "25")),
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers=server.headers, checks=[not_a_server_error])
            statuses[f"{case.operation.label} {response.status_code}"] += 1
            if case.path_parameters:
                # Again with a real tenant and asset, to get past the 404s into the handlers.
                for name in case.path_parameters:
                    case.path_parameters[name] = real.get(name, case.path_parameters[name])
                response = case.call_and_validate(
                    headers=server.headers, checks=[not_a_server_error]
                )
                statuses[f"{case.operation.label} {response.status_code} (real ids)"] += 1

        fuzz()
    # Proof that the fuzzer reached the handlers, not only the 404s.
    assert any(key.endswith("(real ids)") and " 2" in key for key in statuses), statuses
