"""Grafana side of team isolation: one organization per team.

Why organizations: Grafana OSS cannot restrict who may query a datasource (datasource permissions
are an Enterprise feature), so within one organization every member can query every datasource,
whatever folders and dashboards they may open. An organization is Grafana's tenant boundary: its
datasources, folders and dashboards are invisible from other organizations. So each team gets an
organization (named by its ``display_name``) holding:

* datasource ``runstream-clickhouse`` (the uid of the main organization's too), the organization's
  default ClickHouse datasource, which generated dashboards pick; it signs in as the team's
  ClickHouse user ``team_<name>``, whose row policies hold even for hand-written queries;
* folder ``runstream`` with the dashboards of ``<dashboards>/team/*.json``;
* the team's members with their roles; platform admins as Admin; nobody else, except the admin
  account the sync signs in as (Admin everywhere, as it must be to manage the organization).

The main organization (id 1) gets the admin dashboards (``<dashboards>/admin/*.json``, folder
``runstream-admin``; those docker compose provisions from files are left to the files) and the
platform admins as Admin. Team members who are not platform admins are taken out of it: Grafana
adds new users to it by default, and its datasource reads every team's rows.

Every step reads the current state first and writes only what differs, so a second run with the
same file sends no write request. A datasource password cannot be read back from Grafana; a
one-way fingerprint of it (scrypt, salted per team) in ``jsonData`` shows when it changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlparse

from runstream_core.clickhouse_target import ClickHouseTarget
from runstream_core.errors import UsageError
from runstream_core.log import get_logger
from runstream_grafana.settings import GrafanaSettings
from runstream_grafana.teams.clickhouse_access import team_user
from runstream_grafana.teams.config import GrafanaRole, Team, TeamsConfig
from runstream_grafana.teams.dashboards import DashboardFile, comparable
from runstream_grafana.teams.grafana_api import GrafanaAdmin, Json

log = get_logger("runstream.teams.grafana")

MAIN_ORG_ID = 1
MAIN_ORG = "main organization"
DATASOURCE_UID = "runstream-clickhouse"
DATASOURCE_NAME = "runstream ClickHouse"
DATASOURCE_TYPE = "grafana-clickhouse-datasource"
TEAM_FOLDER = ("runstream", "runstream")  # (uid, title)
ADMIN_FOLDER = ("runstream-admin", "runstream admin")
FINGERPRINT_KEY = "runstreamPasswordFingerprint"

Action = Literal["create", "update", "remove", "unchanged"]


class GrafanaSyncError(UsageError):
    """teams.yaml asks for something Grafana cannot do (e.g. a member with no Grafana account)."""


@dataclass(frozen=True)
class Change:
    scope: str
    """The organization (display name) or "main organization"."""

    kind: Literal["organization", "datasource", "folder", "dashboard", "member"]
    name: str
    action: Action
    detail: str = ""

    def describe(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.kind} {self.name} in {self.scope}{detail}"


@dataclass(frozen=True)
class ClickHouseEndpoint:
    """Where Grafana's ClickHouse plugin connects (HTTP interface)."""

    host: str
    port: int
    secure: bool
    database: str

    @classmethod
    def from_settings(cls, settings: GrafanaSettings) -> ClickHouseEndpoint:
        url = settings.grafana_clickhouse_url or settings.clickhouse_url
        if ClickHouseTarget.parse(url).embedded:
            # The embedded engine is reached through the worker's HTTP interface.
            url = f"http://{settings.worker_http_host}:{settings.worker_http_port}"
        parsed = urlparse(url)
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise UsageError(f"ClickHouse URL for Grafana must be http(s)://host:port, got {url!r}")
        secure = parsed.scheme == "https"
        return cls(parsed.hostname, parsed.port or (8443 if secure else 8123), secure, settings.clickhouse_database)


def password_fingerprint(team: str, password: str) -> str:
    """A slow, salted, truncated hash: tells a changed password apart without exposing it."""
    digest = hashlib.scrypt(password.encode(), salt=f"runstream-datasource:{team}".encode(), n=2**14, r=8, p=1)
    return digest[:12].hex()


def datasource_body(team: str, password: str, endpoint: ClickHouseEndpoint) -> Json:
    return {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "isDefault": True,
        "jsonData": {
            "host": endpoint.host,
            "port": endpoint.port,
            "protocol": "http",
            "secure": endpoint.secure,
            "defaultDatabase": endpoint.database,
            "username": team_user(team),
            FINGERPRINT_KEY: password_fingerprint(team, password),
        },
        "secureJsonData": {"password": password},
    }


def datasource_differences(current: Json, desired: Json) -> list[str]:
    """Fields of ``desired`` that ``current`` (as Grafana returns it) lacks or holds otherwise."""
    differ = [k for k in ("name", "type", "access", "isDefault") if current.get(k) != desired[k]]
    current_json = current.get("jsonData") or {}
    differ += [f"jsonData.{k}" for k, v in desired["jsonData"].items() if current_json.get(k) != v]
    if not (current.get("secureJsonFields") or {}).get("password"):
        differ.append("password")
    return differ


class GrafanaSync:
    """Brings Grafana to the state of a :class:`TeamsConfig`; ``dry_run`` only reports the plan."""

    def __init__(
        self,
        admin: GrafanaAdmin,
        config: TeamsConfig,
        *,
        admin_login: str,
        passwords: Callable[[str], str],
        endpoint: ClickHouseEndpoint,
        team_dashboards: tuple[DashboardFile, ...],
        admin_dashboards: tuple[DashboardFile, ...],
        dry_run: bool,
    ) -> None:
        self.admin = admin
        self.config = config
        self.admin_login = admin_login
        self.passwords = passwords
        self.endpoint = endpoint
        self.team_dashboards = team_dashboards
        self.admin_dashboards = admin_dashboards
        self.dry_run = dry_run
        self._user_ids: dict[str, int] = {}
        self._org_ids: dict[str, int] = {}

    # Reads only: run before anything is changed anywhere.
    def preflight(self) -> None:
        """Resolve every login to a Grafana user and find existing organizations."""
        logins = {self.admin_login, *self.config.platform_admins}
        logins.update(m.login for team in self.config.teams for m in team.members)
        missing = []
        for login in sorted(logins):
            user = self.admin.find_user(login)
            if user is None:
                missing.append(login)
            else:
                self._user_ids[login.lower()] = int(user["id"])
        if missing:
            raise GrafanaSyncError(
                f"no Grafana user for: {', '.join(missing)}; users come from Grafana's sign-in (SSO, LDAP or "
                "the admin UI): create them first, teams sync only manages their organizations and roles"
            )
        self._org_ids = {str(org["name"]): int(org["id"]) for org in self.admin.organizations()}

    def user_id(self, login: str) -> int:
        return self._user_ids[login.lower()]

    def _apply(self, change: Change, write: Callable[[], None]) -> Change:
        if change.action != "unchanged" and not self.dry_run:
            write()
            log.info("grafana changed", scope=change.scope, kind=change.kind, name=change.name, action=change.action)
        return change

    # Team organizations.

    def sync_team(self, team: Team) -> list[Change]:
        scope = team.display_name
        changes: list[Change] = []
        org_id = self._org_ids.get(scope)
        if org_id is None:
            changes.append(self._apply(Change(scope, "organization", scope, "create"), lambda: self._create_org(scope)))
            org_id = self._org_ids.get(scope)
        else:
            changes.append(Change(scope, "organization", scope, "unchanged", f"id {org_id}"))
        # Grafana makes the account that creates an organization its Admin; a dry run assumes as much.
        creator = {self.user_id(self.admin_login): (self.admin_login, "Admin")}
        current = self._current_roles(org_id) if org_id is not None else creator
        changes += self._team_members(team, org_id, current)
        # By now the sync account is a member (it was added above), except in a dry run, which cannot
        # look inside a new organization nor one the account has not joined: its content is planned as created.
        joined = not self.dry_run or self.user_id(self.admin_login) in current
        readable = org_id if org_id is not None and joined else None
        changes.append(self._datasource(team, org_id, readable))
        changes.append(self._folder(scope, org_id, TEAM_FOLDER, readable))
        changes += [self._dashboard(scope, org_id, TEAM_FOLDER[0], d, readable) for d in self.team_dashboards]
        return changes

    def _create_org(self, name: str) -> None:
        self._org_ids[name] = self.admin.create_organization(name)

    def _desired_team_roles(self, team: Team) -> dict[int, tuple[str, GrafanaRole]]:
        roles: dict[int, tuple[str, GrafanaRole]] = {self.user_id(m.login): (m.login, m.role) for m in team.members}
        for login in (*self.config.platform_admins, self.admin_login):
            roles[self.user_id(login)] = (login, "Admin")
        return roles

    def _team_members(self, team: Team, org_id: int | None, current: dict[int, tuple[str, str]]) -> list[Change]:
        scope = team.display_name
        desired = self._desired_team_roles(team)
        changes = []
        # The sync account first: later requests in this organization need it to be a member.
        order = sorted(desired, key=lambda uid: (uid != self.user_id(self.admin_login), desired[uid][0].lower()))
        for user_id in order:
            login, role = desired[user_id]
            changes.append(self._member(scope, org_id, user_id, login, role, current.get(user_id)))
        for user_id, (login, _) in sorted(current.items(), key=lambda item: item[1][0].lower()):
            if user_id not in desired:
                changes.append(self._remove_member(scope, org_id, user_id, login, "not in teams.yaml"))
        return changes

    def _current_roles(self, org_id: int | None) -> dict[int, tuple[str, str]]:
        if org_id is None:
            return {}
        return {int(u["userId"]): (str(u["login"]), str(u["role"])) for u in self.admin.organization_users(org_id)}

    def _member(
        self, scope: str, org_id: int | None, user_id: int, login: str, role: str, current: tuple[str, str] | None
    ) -> Change:
        if current is None:
            return self._apply(
                Change(scope, "member", login, "create", role),
                lambda: self.admin.add_organization_user(self._require(org_id), login, role),
            )
        if current[1] != role:
            return self._apply(
                Change(scope, "member", login, "update", f"{current[1]} -> {role}"),
                lambda: self.admin.set_organization_role(self._require(org_id), user_id, role),
            )
        return Change(scope, "member", login, "unchanged", role)

    def _remove_member(self, scope: str, org_id: int | None, user_id: int, login: str, why: str) -> Change:
        return self._apply(
            Change(scope, "member", login, "remove", why),
            lambda: self.admin.remove_organization_user(self._require(org_id), user_id),
        )

    def _require(self, org_id: int | None) -> int:
        # Writes only run when not a dry run, and then the organization exists.
        assert org_id is not None
        return org_id

    def _datasource(self, team: Team, org_id: int | None, readable: int | None) -> Change:
        scope = team.display_name
        desired = datasource_body(team.name, self.passwords(team.name), self.endpoint)
        current = self.admin.datasource(readable, DATASOURCE_UID) if readable is not None else None
        if current is None:
            return self._apply(
                Change(scope, "datasource", DATASOURCE_UID, "create", f"user {team_user(team.name)}"),
                lambda: self.admin.create_datasource(self._require(org_id), desired),
            )
        differ = datasource_differences(current, desired)
        if differ:
            return self._apply(
                Change(scope, "datasource", DATASOURCE_UID, "update", ", ".join(differ)),
                lambda: self.admin.update_datasource(self._require(org_id), DATASOURCE_UID, desired),
            )
        return Change(scope, "datasource", DATASOURCE_UID, "unchanged", f"user {team_user(team.name)}")

    def _folder(self, scope: str, org_id: int | None, folder: tuple[str, str], readable: int | None) -> Change:
        uid, title = folder
        current = self.admin.folder(readable, uid) if readable is not None else None
        if current is None:
            return self._apply(
                Change(scope, "folder", uid, "create"),
                lambda: self.admin.create_folder(self._require(org_id), uid, title),
            )
        if current.get("title") != title:
            return self._apply(
                Change(scope, "folder", uid, "update", f"title {current.get('title')!r} -> {title!r}"),
                lambda: self.admin.rename_folder(self._require(org_id), uid, title),
            )
        return Change(scope, "folder", uid, "unchanged")

    def _dashboard(
        self, scope: str, org_id: int | None, folder_uid: str, dashboard: DashboardFile, readable: int | None
    ) -> Change:
        current = self.admin.dashboard(readable, dashboard.uid) if readable is not None else None
        name = f"{dashboard.uid} ({dashboard.title})"

        def save() -> None:
            self.admin.save_dashboard(self._require(org_id), dashboard.model, folder_uid)

        if current is None:
            return self._apply(Change(scope, "dashboard", name, "create", dashboard.source.name), save)
        if (current.get("meta") or {}).get("provisioned"):
            # Grafana refuses API saves of file-provisioned dashboards (docker compose provisions the
            # main organization's); the files already keep them current.
            return Change(scope, "dashboard", name, "unchanged", "provisioned from files")
        differ = []
        if comparable(current.get("dashboard") or {}) != dashboard.model:
            differ.append("content")
        if (current.get("meta") or {}).get("folderUid") != folder_uid:
            differ.append(f"folder -> {folder_uid}")
        if differ:
            return self._apply(Change(scope, "dashboard", name, "update", ", ".join(differ)), save)
        return Change(scope, "dashboard", name, "unchanged")

    # The main organization. Synced after the teams: Grafana deletes a user removed from their
    # last organization, so team members must have joined their team's organization first.

    def sync_main_org(self) -> list[Change]:
        current = self._current_roles(MAIN_ORG_ID)
        admins = {self.user_id(login): login for login in self.config.platform_admins}
        changes = [
            self._member(MAIN_ORG, MAIN_ORG_ID, user_id, login, "Admin", current.get(user_id))
            for user_id, login in sorted(admins.items(), key=lambda item: item[1].lower())
        ]
        keep = {*admins, self.user_id(self.admin_login)}
        for user_id, login in self._team_member_ids(self.config.teams):
            if user_id in current and user_id not in keep:
                changes.append(self._remove_member(MAIN_ORG, MAIN_ORG_ID, user_id, login, "team member"))
        if self.admin_dashboards:
            changes.append(self._folder(MAIN_ORG, MAIN_ORG_ID, ADMIN_FOLDER, MAIN_ORG_ID))
            changes += [
                self._dashboard(MAIN_ORG, MAIN_ORG_ID, ADMIN_FOLDER[0], d, MAIN_ORG_ID) for d in self.admin_dashboards
            ]
        return changes

    def _team_member_ids(self, teams: Iterable[Team]) -> list[tuple[int, str]]:
        seen: dict[int, str] = {}
        for team in teams:
            for member in team.members:
                seen.setdefault(self.user_id(member.login), member.login)
        return sorted(seen.items(), key=lambda item: item[1].lower())


def summarize(changes: Iterable[Change]) -> dict[Action, int]:
    counts: dict[Action, int] = {"create": 0, "update": 0, "remove": 0, "unchanged": 0}
    for change in changes:
        counts[change.action] += 1
    return counts
