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


# -- profile "cluster" ------------------------------------------------------------------------------------

CLUSTER_SERVICES = {"keeper", "clickhouse-01", "clickhouse-02", "migrate-cluster", "worker-cluster"}
CLUSTER_DIR = REPO / "deploy" / "clickhouse" / "cluster"


def mounted(service: dict[str, Any]) -> dict[str, Path]:
    """Where each file of the repository is mounted in the service: {target: source}."""
    found = {}
    for mount in service.get("volumes", []):
        source, target, *_ = mount.split(":")
        if source.startswith("./"):
            found[target] = REPO / source
    return found


def test_the_cluster_profile_adds_keeper_two_shards_and_their_pipeline_only(compose: dict[str, Any]) -> None:
    services = compose["services"]
    in_profile = {name for name, service in services.items() if "profiles" in service}
    assert in_profile == CLUSTER_SERVICES
    assert all(services[name]["profiles"] == ["cluster"] for name in CLUSTER_SERVICES)
    # Nothing outside the profile depends on it: `docker compose up` runs the one-server stack as before.
    for name, service in services.items():
        if name not in CLUSTER_SERVICES:
            assert not set(service.get("depends_on", {})) & CLUSTER_SERVICES, name
    for name in CLUSTER_SERVICES:
        for source in mounted(services[name]).values():
            assert source.exists(), (name, source)
    assert {"keeper-data", "clickhouse-01-data", "clickhouse-02-data"} <= set(compose["volumes"])


def test_each_shard_has_the_cluster_and_its_own_macros(compose: dict[str, Any]) -> None:
    from xml.etree import ElementTree

    from runstream_core.cluster import check_cluster_name
    from tests.fixtures.cluster import CLUSTER

    remote = ElementTree.parse(CLUSTER_DIR / "remote_servers.xml").getroot()
    servers = remote.find("remote_servers")
    assert servers is not None
    (cluster,) = list(servers)
    assert check_cluster_name(cluster.tag) == CLUSTER
    hosts = [replica.findtext("host") for replica in cluster.iter("replica")]
    assert hosts == ["clickhouse-01", "clickhouse-02"]
    assert all(shard.findtext("internal_replication") == "true" for shard in cluster.iter("shard"))
    secret = cluster.find("secret")
    assert secret is not None and secret.get("from_env") == "CLICKHOUSE_CLUSTER_SECRET"
    keeper = ElementTree.parse(CLUSTER_DIR / "keeper.xml").getroot()
    node = remote.find("zookeeper/node")
    assert node is not None
    assert (node.findtext("host"), node.findtext("port")) == ("keeper", keeper.findtext("keeper_server/tcp_port"))
    assert keeper.findtext("keeper_server/raft_configuration/server/hostname") == "keeper"

    services = compose["services"]
    for number, host in enumerate(hosts, start=1):
        shard = services[host]
        assert shard["hostname"] == host
        assert shard["image"] == services["clickhouse"]["image"]
        files = mounted(shard)
        assert files["/etc/clickhouse-server/config.d/remote_servers.xml"] == CLUSTER_DIR / "remote_servers.xml"
        macros = ElementTree.parse(files["/etc/clickhouse-server/config.d/macros.xml"]).getroot()
        assert (macros.findtext("macros/shard"), macros.findtext("macros/replica")) == (f"{number:02d}", host)
        assert shard["environment"]["CLICKHOUSE_CLUSTER_SECRET"] == "${CLICKHOUSE_CLUSTER_SECRET:-}"
        assert shard["environment"]["CLICKHOUSE_PASSWORD"].startswith("${CLICKHOUSE_PASSWORD:?")
    assert mounted(services["keeper"])["/etc/clickhouse-keeper/keeper_config.xml"] == CLUSTER_DIR / "keeper.xml"
    assert "CLICKHOUSE_CLUSTER_SECRET=\n" in (REPO / ".env.example").read_text()


@pytest.mark.parametrize(("secret", "started"), [("", False), ("s3cret", True)])
def test_a_shard_refuses_to_start_without_the_cluster_secret(
    compose: dict[str, Any], tmp_path: Path, secret: str, started: bool
) -> None:
    """The shard's entrypoint, run by sh as the container runs it (compose turns $$ into $)."""
    shell, flag, script = compose["services"]["clickhouse-02"]["entrypoint"]
    fake = tmp_path / "entrypoint.sh"
    fake.write_text("#!/bin/sh\necho server started\n")
    fake.chmod(0o755)
    script = script.replace("$$", "$").replace("/entrypoint.sh", str(fake))
    result = subprocess.run(
        [shell, flag, script], capture_output=True, text=True, check=False, env={"CLICKHOUSE_CLUSTER_SECRET": secret}
    )
    assert (result.returncode == 0) == started
    assert ("server started" in result.stdout) == started
    if not started:
        assert "set CLICKHOUSE_CLUSTER_SECRET in .env" in result.stderr


def test_the_cluster_pipeline_migrates_and_writes_the_cluster(compose: dict[str, Any]) -> None:
    services = compose["services"]
    migrate, worker = services["migrate-cluster"], services["worker-cluster"]
    assert migrate["command"] == ["migrate"] and worker["command"] == ["worker"]
    for env in (migrate["environment"], worker["environment"]):
        assert env["RUNSTREAM_CLICKHOUSE_URL"] == "http://clickhouse-01:8123"
        assert env["RUNSTREAM_CLICKHOUSE_CLUSTER"] == "runstream"
        assert env["RUNSTREAM_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert migrate["depends_on"] == {
        "clickhouse-01": {"condition": "service_healthy"},
        "clickhouse-02": {"condition": "service_healthy"},
    }
    assert worker["depends_on"]["migrate-cluster"] == {"condition": "service_completed_successfully"}
    # Its own consumer group: the one-server worker keeps every partition it had.
    from runstream_worker.settings import WorkerSettings

    assert worker["environment"]["RUNSTREAM_WORKER_GROUP"] != WorkerSettings.model_fields["worker_group"].default
    assert "RUNSTREAM_WORKER_GROUP" not in services["worker"]["environment"]
