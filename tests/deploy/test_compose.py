"""docker-compose.yml against the compose specification's schema, and the stack's wiring."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# The compose specification's JSON Schema, as check-jsonschema (a dev dependency, locked) vendors it.
SCHEMA = files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_file_is_valid_against_the_compose_spec(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(compose, schema, cls=jsonschema.Draft7Validator)


def test_check_jsonschema_accepts_the_compose_file() -> None:
    """The same check through check-jsonschema's own command line, as a CI job would run it."""
    check = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    result = subprocess.run([*check, str(REPO / "docker-compose.yml")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_rejects_a_broken_compose_file(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    broken = {**compose, "services": {**compose["services"], "kafka": {**compose["services"]["kafka"], "ports": 9092}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft7Validator)


def test_stack_runs_official_images_our_worker_and_the_demo(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:4.0")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    assert "grafana-clickhouse-datasource" in services["grafana"]["environment"]["GF_PLUGINS_PREINSTALL"]
    assert services["migrate"]["build"]["dockerfile"] == "Dockerfile"
    assert (REPO / services["migrate"]["build"]["dockerfile"]).exists()
    assert services["migrate"]["command"] == ["migrate"]
    assert services["worker"]["command"] == ["worker"]
    assert services["worker"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert services["demo"]["command"] == ["demo"]
    for name in ("migrate", "worker", "demo"):
        env = services[name]["environment"]
        assert env["RUNSTREAM_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["RUNSTREAM_CLICKHOUSE_URL"] == "http://clickhouse:8123"
    mounts = services["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    for mount in mounts:
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (REPO / source).is_dir(), source


def test_no_secret_is_written_in_the_stack() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    for key, value in re.findall(r"(\w*PASSWORD\w*):\s*(\S+)", text):
        assert value.startswith("${") and ":?" in value, f"{key} must come from the environment, got {value}"


def test_grafana_provisioning_files_are_well_formed() -> None:
    root = REPO / "deploy" / "grafana" / "provisioning"
    datasource = yaml.safe_load((root / "datasources" / "clickhouse.yaml").read_text())
    (ds,) = datasource["datasources"]
    assert ds["type"] == "grafana-clickhouse-datasource"
    assert ds["uid"] == "runstream-clickhouse"
    assert ds["jsonData"]["protocol"] == "http" and ds["jsonData"]["defaultDatabase"] == "runstream"
    assert ds["secureJsonData"]["password"].startswith("${")
    providers = yaml.safe_load((root / "dashboards" / "runstream.yaml").read_text())["providers"]
    assert [(p["orgId"], p["options"]["path"]) for p in providers] == [
        (1, "/var/lib/grafana/dashboards/team"),
        (1, "/var/lib/grafana/dashboards/admin"),
    ]


def test_the_stack_syncs_teams_on_the_server(compose: dict[str, Any]) -> None:
    """The teams service runs `runstream teams sync` against the server and Grafana, after the
    migrations and once Grafana answers, with every password from the environment."""
    teams = compose["services"]["teams"]
    assert teams["command"][:3] == ["teams", "sync", "/etc/runstream/teams.yaml"]
    env = teams["environment"]
    assert env["RUNSTREAM_CLICKHOUSE_URL"] == "http://clickhouse:8123"
    assert env["RUNSTREAM_GRAFANA_URL"] == "http://grafana:3000"
    assert env["RUNSTREAM_GRAFANA_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert teams["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "grafana": {"condition": "service_healthy"},
    }
    assert teams["volumes"][0] == "${RUNSTREAM_TEAMS_FILE:-./deploy/teams.example.yaml}:/etc/runstream/teams.yaml:ro"
    assert (REPO / "deploy" / "teams.example.yaml").exists()
    example = (REPO / ".env.example").read_text()
    for team in ("VISION", "NLP", "SPEECH"):
        assert f"RUNSTREAM_TEAM_{team}_CLICKHOUSE_PASSWORD=\n" in example
