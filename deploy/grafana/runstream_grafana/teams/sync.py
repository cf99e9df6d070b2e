"""``runstream teams sync``: ClickHouse users and row policies, then Grafana organizations, per team.

Everything that can fail without touching anything is done first: the file, the secrets, the
dashboard files, the tables with a team column, and every Grafana user the file names. Then, per
team, the ClickHouse side (idempotent by construction) and the Grafana changes (read, compare,
write what differs), and last the main organization.

The ClickHouse side depends on the store:

- a server (``http(s)://``): users, row policies and grants, applied as SQL; the users of teams no
  longer in the file are dropped with their policies;
- the embedded engine (``chdb://``): it can hold no users, so the team users (salted password
  hashes) are written to the endpoint's users file, which the worker's endpoint reads again on the
  next request; the endpoint cuts every query of a team user to its team's rows itself. The store is
  not opened, so this runs while the worker runs.

Without Grafana settings (``RUNSTREAM_GRAFANA_PASSWORD`` unset) the sync does the ClickHouse side
only, and says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from runstream_core.clickhouse import check_cluster_target, connect
from runstream_core.endpoint_users import TeamUser, users_path, write_users
from runstream_core.log import get_logger
from runstream_grafana.settings import GrafanaSettings
from runstream_grafana.teams import clickhouse_access as access
from runstream_grafana.teams.config import TeamsConfig, load_teams
from runstream_grafana.teams.dashboards import load_dashboards
from runstream_grafana.teams.grafana_api import GrafanaAdmin
from runstream_grafana.teams.grafana_sync import MAIN_ORG, Change, ClickHouseEndpoint, GrafanaSync, summarize
from runstream_grafana.teams.secrets import SyncSecrets, resolve_secrets

log = get_logger("runstream.teams")

DEFAULT_DASHBOARDS = Path("deploy/grafana/dashboards")


@dataclass(frozen=True)
class AccessStep:
    """One group of ClickHouse statements, as the plan shows it."""

    name: str
    summary: str
    statements: tuple[access.Statement, ...]


@dataclass
class SyncResult:
    dry_run: bool
    clickhouse: list[AccessStep] = field(default_factory=list)
    grafana: list[Change] = field(default_factory=list)
    grafana_skipped: bool = False
    users_file: Path | None = None

    def lines(self, *, with_sql: bool = False) -> list[str]:
        """The plan, one change per line: ``action side what``; SQL (passwords masked) when asked."""
        out = []
        for step in self.clickhouse:
            out.append(f"{'apply':<9} clickhouse {step.name}: {step.summary}")
            out += [f"    {s.shown}" for s in step.statements] if with_sql else []
        out += [f"{c.action:<9} grafana    {c.describe()}" for c in self.grafana]
        counts = summarize(self.grafana)
        done = (
            ("to create", "to update", "to remove", "would apply")
            if self.dry_run
            else ("created", "updated", "removed", "applied")
        )
        users = sum(1 for step in self.clickhouse if step.name.startswith("user "))
        grafana = (
            "grafana: skipped, RUNSTREAM_GRAFANA_PASSWORD is not set (ClickHouse side only)"
            if self.grafana_skipped
            else f"grafana: {counts['create']} {done[0]}, {counts['update']} {done[1]}, {counts['remove']} {done[2]}, "
            f"{counts['unchanged']} unchanged"
        )
        clickhouse = (
            f"clickhouse: {users} team user(s) {'to write' if self.dry_run else 'written'} to {self.users_file}, "
            "enforced by the embedded store's endpoint"
            if self.users_file
            else f"clickhouse: {done[3]} shared access and {users} team user(s)"
        )
        out.append(f"{grafana}; {clickhouse}")
        if self.dry_run:
            out.append("dry run: nothing was changed")
        return out


def sync_teams(
    config: TeamsConfig,
    settings: GrafanaSettings,
    secrets: SyncSecrets,
    *,
    dashboards_dir: Path = DEFAULT_DASHBOARDS,
    dry_run: bool = False,
    clickhouse: access.SqlSession | None = None,
) -> SyncResult:
    """Bring ClickHouse and Grafana to ``config``; ``clickhouse`` defaults to ``settings``' server."""
    team_dashboards = load_dashboards(dashboards_dir / "team")
    admin_dashboards = load_dashboards(dashboards_dir / "admin")
    endpoint = ClickHouseEndpoint.from_settings(settings)
    embedded = clickhouse is None and settings.target.embedded
    check_cluster_target(settings)
    grafana_sync = (
        GrafanaSync(
            GrafanaAdmin(settings.grafana_url, secrets.grafana_user, secrets.grafana_password.get_secret_value()),
            config,
            admin_login=secrets.grafana_user,
            passwords=secrets.clickhouse_password,
            endpoint=endpoint,
            team_dashboards=team_dashboards,
            admin_dashboards=admin_dashboards,
            dry_run=dry_run,
        )
        if secrets.grafana
        else None
    )
    result = SyncResult(dry_run, grafana_skipped=grafana_sync is None)
    if grafana_sync is not None:
        grafana_sync.preflight()
    else:
        log.warning("grafana not configured: syncing the clickhouse side only", missing="RUNSTREAM_GRAFANA_PASSWORD")
    log.info(
        "teams sync",
        teams=[t.name for t in config.teams],
        dry_run=dry_run,
        embedded=embedded,
        cluster=settings.clickhouse_cluster or None,
    )
    if embedded:
        result.users_file = users_path(settings)
        steps = _endpoint_user_steps(config, secrets, result.users_file, dry_run)
        with _progress(total=len(config.teams) + 1) as advance:
            for team, step in zip(config.teams, steps, strict=True):
                result.clickhouse.append(step)
                result.grafana += grafana_sync.sync_team(team) if grafana_sync else []
                advance(team.display_name)
            result.grafana += grafana_sync.sync_main_org() if grafana_sync else []
            advance(MAIN_ORG)
        return result
    database = settings.clickhouse_database
    with _session(settings, clickhouse) as session:
        objects = access.discover(session, database)
        cluster = settings.clickhouse_cluster
        shared, *per_team = _access_steps(config, secrets, objects, database, cluster)
        removed = _removal_step(session, config, objects, database, cluster)
        if objects.skipped_views:
            log.warning("views not granted: they run with their definer's rights", views=list(objects.skipped_views))
        with _progress(total=len(config.teams) + 1) as advance:
            result.clickhouse.append(_run(session, shared, dry_run))
            for team, step in zip(config.teams, per_team, strict=True):
                result.clickhouse.append(_run(session, step, dry_run))
                result.grafana += grafana_sync.sync_team(team) if grafana_sync else []
                advance(team.display_name)
            if removed.statements:
                result.clickhouse.append(_run(session, removed, dry_run))
            result.grafana += grafana_sync.sync_main_org() if grafana_sync else []
            advance(MAIN_ORG)
    return result


def _endpoint_user_steps(config: TeamsConfig, secrets: SyncSecrets, path: Path, dry_run: bool) -> list[AccessStep]:
    """The embedded store's team users, written to the endpoint's users file as one replacement:
    a team no longer in the file has no user afterwards."""
    users = [TeamUser.create(team.name, secrets.clickhouse_password(team.name)) for team in config.teams]
    if not dry_run:
        write_users(path, users)
        log.info("team users written", path=str(path), users=len(users))
    return [
        AccessStep(
            f"user {user.name}",
            f"password (salted hash) in {path}; reads the tables with a team column, cut to "
            f"{access.team_condition(user.team)} by the endpoint",
            (),
        )
        for user in users
    ]


def _removal_step(
    session: access.SqlSession, config: TeamsConfig, objects: access.TeamObjects, database: str, cluster: str
) -> AccessStep:
    """Users and row policies of teams that are no longer in the file: dropped, ending their access."""
    existing = [str(row[0]) for row in session.rows("SELECT name FROM system.users ORDER BY name")]
    statements = access.removal_statements(existing, [t.name for t in config.teams], objects, database, cluster)
    gone = sorted({s.sql.split("`")[1] for s in statements if s.sql.startswith("DROP USER")})
    return AccessStep(
        "removed", f"users of teams no longer in the file: {', '.join(gone) or 'none'}", tuple(statements)
    )


def _access_steps(
    config: TeamsConfig, secrets: SyncSecrets, objects: access.TeamObjects, database: str, cluster: str
) -> list[AccessStep]:
    """Shared statements first, then one step per team (all generated before any is run); ``ON CLUSTER``
    when ``cluster`` is set."""
    shared = access.shared_statements(objects, database, cluster)
    steps = [
        AccessStep(
            "shared",
            f"profile {access.TEAM_PROFILE} (readonly = 2), policy {access.ALL_ROWS_POLICY} on "
            f"{len(objects.tables)} table(s)",
            tuple(shared),
        )
    ]
    for team in config.teams:
        password = secrets.clickhouse_password(team.name)
        statements = access.team_statements(team.name, password, objects, database, cluster)
        steps.append(
            AccessStep(
                f"user {access.team_user(team.name)}",
                f"password, profile, row policy {access.team_condition(team.name)} on {len(objects.tables)} "
                f"table(s), SELECT on {len(objects.granted)} object(s)",
                tuple(statements),
            )
        )
    return steps


def _run(session: access.SqlSession, step: AccessStep, dry_run: bool) -> AccessStep:
    if not dry_run:
        access.apply(session, step.statements)
        log.info("clickhouse access applied", step=step.name, statements=len(step.statements))
    return step


@contextmanager
def _session(settings: GrafanaSettings, given: access.SqlSession | None) -> Iterator[access.SqlSession]:
    if given is not None:
        yield given
        return
    client = connect(settings)
    try:
        yield access.ClientSession(client)
    finally:
        client.close()


@contextmanager
def _progress(total: int) -> Iterator[Callable[[str], None]]:
    columns = (TextColumn("teams sync {task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("", total=total)
        yield lambda name: bar.update(task, advance=1, description=name)


def run_cli(
    settings: GrafanaSettings, teams_yaml: Path, *, secrets_file: Path | None, dry_run: bool, dashboards: Path
) -> int:
    """The ``runstream teams sync`` command: prints the plan (and SQL on a dry run); 0 on success."""
    config = load_teams(teams_yaml)
    secrets = resolve_secrets(config, settings, secrets_file=secrets_file, environ=os.environ)
    result = sync_teams(config, settings, secrets, dashboards_dir=dashboards, dry_run=dry_run)
    print("\n".join(result.lines(with_sql=dry_run)))
    return 0
