"""A local HTTP double of the parts of Grafana's API that ``teams sync`` uses.

It keeps users, organizations and their members, datasources, folders and dashboards in memory,
answers the way Grafana 11/12 does (status codes, response shapes, organization scoping through
``X-Grafana-Org-Id``, membership required for organization-scoped calls, the creator of an
organization becoming its Admin, secure fields never returned), and records every request.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    org: int | None
    """The ``X-Grafana-Org-Id`` header, if sent."""

    body: Any


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class GrafanaState:
    admin_login: str
    admin_password: str
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    orgs: dict[int, str] = field(default_factory=dict)
    members: dict[int, dict[int, str]] = field(default_factory=dict)
    """org id -> user id -> role."""

    datasources: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    """(org, uid) -> the datasource as stored, secureJsonData included."""

    folders: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    """(org, uid) -> {"dashboard": model, "folderUid": uid, "provisioned": bool (optional)}."""

    requests: list[Request] = field(default_factory=list)
    unknown_routes: list[str] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: iter(range(100, 10**9)))

    def __post_init__(self) -> None:
        self.orgs[1] = "Main Org."
        admin = self.add_user(self.admin_login, f"{self.admin_login}@localhost")
        self.members[1] = {admin: "Admin"}

    def add_user(self, login: str, email: str, *, main_org_role: str | None = None) -> int:
        """A Grafana account; like Grafana's auto_assign_org, optionally a member of the main org."""
        user_id = len(self.users) + 1
        self.users[user_id] = {"id": user_id, "login": login, "email": email, "name": login}
        if main_org_role:
            self.members[1][user_id] = main_org_role
        return user_id

    def user_by_login(self, login_or_email: str) -> dict[str, Any] | None:
        wanted = login_or_email.lower()
        return next((u for u in self.users.values() if wanted in {u["login"].lower(), u["email"].lower()}), None)

    def org_id(self, name: str) -> int:
        return next(i for i, n in self.orgs.items() if n == name)

    def roles(self, org_name: str) -> dict[str, str]:
        """login -> role in the named organization."""
        members = self.members[self.org_id(org_name)]
        return {self.users[uid]["login"]: role for uid, role in members.items()}

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method in WRITE_METHODS]


Route = Callable[[GrafanaState, int, "re.Match[str]", dict[str, Any], dict[str, list[str]]], Any]
_ROUTES: list[tuple[str, re.Pattern[str], Route, bool]] = []


def route(method: str, pattern: str, *, org_scoped: bool = False) -> Callable[[Route], Route]:
    def register(handler: Route) -> Route:
        _ROUTES.append((method, re.compile(f"^/api{pattern}$"), handler, org_scoped))
        return handler

    return register


@route("GET", "/health")
def _health(state: GrafanaState, org: int, m: re.Match[str], body: dict[str, Any], query: dict[str, list[str]]) -> Any:
    return {"database": "ok", "version": "12.2.0"}


@route("GET", "/users/lookup")
def _lookup(state: GrafanaState, org: int, m: re.Match[str], body: dict[str, Any], query: dict[str, list[str]]) -> Any:
    user = state.user_by_login(query.get("loginOrEmail", [""])[0])
    if user is None:
        raise ApiError(404, "user not found")
    return {**user, "isGrafanaAdmin": user["login"] == state.admin_login, "orgId": 1}


@route("GET", "/orgs")
def _orgs(state: GrafanaState, org: int, m: re.Match[str], body: dict[str, Any], query: dict[str, list[str]]) -> Any:
    return [{"id": i, "name": n} for i, n in sorted(state.orgs.items())]


@route("POST", "/orgs")
def _create_org(
    state: GrafanaState, org: int, m: re.Match[str], body: dict[str, Any], query: dict[str, list[str]]
) -> Any:
    if body["name"] in state.orgs.values():
        raise ApiError(409, "Organization name taken")
    org_id = max(state.orgs) + 1
    state.orgs[org_id] = body["name"]
    admin = state.user_by_login(state.admin_login)
    assert admin is not None
    state.members[org_id] = {admin["id"]: "Admin"}
    return {"orgId": org_id, "message": "Organization created"}


def _org(state: GrafanaState, m: re.Match[str]) -> int:
    org_id = int(m["org"])
    if org_id not in state.orgs:
        raise ApiError(404, "Organization not found")
    return org_id


@route("GET", r"/orgs/(?P<org>\d+)/users")
def _org_users(
    state: GrafanaState, org: int, m: re.Match[str], body: dict[str, Any], query: dict[str, list[str]]
) -> Any:
    org_id = _org(state, m)
    return [
        {
            "orgId": org_id,
            "userId": uid,
            "login": state.users[uid]["login"],
            "email": state.users[uid]["email"],
            "role": r,
        }
        for uid, r in sorted(state.members[org_id].items())
    ]


@route("POST", r"/orgs/(?P<org>\d+)/users")
def _add_org_user(
    state: GrafanaState, org: int, m: re.Match[str], body: dict[str, Any], query: dict[str, list[str]]
) -> Any:
    org_id = _org(state, m)
    user = state.user_by_login(body["loginOrEmail"])
    if user is None:
        raise ApiError(404, "User not found")
    if user["id"] in state.members[org_id]:
        raise ApiError(409, "User is already member of this organization")
    _check_role(body["role"])
    state.members[org_id][user["id"]] = body["role"]
    return {"message": "User added to organization", "userId": user["id"]}


@route("PATCH", r"/orgs/(?P<org>\d+)/users/(?P<user>\d+)")
def _update_org_user(
    state: GrafanaState, org: int, m: re.Match[str], body: dict[str, Any], query: dict[str, list[str]]
) -> Any:
    org_id = _org(state, m)
    if int(m["user"]) not in state.members[org_id]:
        raise ApiError(404, "User not found")
    _check_role(body["role"])
    state.members[org_id][int(m["user"])] = body["role"]
    return {"message": "Organization user updated"}


@route("DELETE", r"/orgs/(?P<org>\d+)/users/(?P<user>\d+)")
def _remove_org_user(
    state: GrafanaState, org: int, m: re.Match[str], body: dict[str, Any], query: dict[str, list[str]]
) -> Any:
    org_id, user_id = _org(state, m), int(m["user"])
    if state.members[org_id].pop(user_id, None) is None:
        raise ApiError(404, "User not found")
    # Like Grafana's admin route: a user left without any organization is deleted.
    if not any(user_id in members for members in state.members.values()):
        del state.users[user_id]
        return {"message": "User deleted"}
    return {"message": "User removed from organization"}


def _check_role(role: str) -> None:
    if role not in {"Viewer", "Editor", "Admin", "None"}:
        raise ApiError(400, f"invalid role {role!r}")


@route("GET", "/datasources/uid/(?P<uid>[^/]+)", org_scoped=True)
def _datasource(
    state: GrafanaState, org: int, m: re.Match[str], body: dict[str, Any], query: dict[str, list[str]]
) -> Any:
    stored = state.datasources.get((org, m["uid"]))
    if stored is None:
        raise ApiError(404, "Data source not found")
    visible = {k: v for k, v in stored.items() if k != "secureJsonData"}
    return {**visible, "orgId": org, "secureJsonFields": {k: True for k in stored.get("secureJsonData", {})}}


@route("POST", "/datasources", org_scoped=True)
def _create_datasource(
    state: GrafanaState, org: int, m: re.Match[str], body: dict[str, Any], query: dict[str, list[str]]
) -> Any:
    if (org, body["uid"]) in state.datasources:
        raise ApiError(409, "data source with the same uid already exists")
    state.datasources[(org, body["uid"])] = {**body, "id": next(state._ids)}
    return {"message": "Datasource added", "id": state.datasources[(org, body["uid"])]["id"], "name": body["name"]}


@route("PUT", "/datasources/uid/(?P<uid>[^/]+)", org_scoped=True)
def _update_datasource(
    state: GrafanaState, org: int, m: re.Match[str], body: dict[str, Any], query: dict[str, list[str]]
) -> Any:
    current = state.datasources.get((org, m["uid"]))
    if current is None:
        raise ApiError(404, "Data source not found")
    secure = body.get("secureJsonData") or current.get("secureJsonData", {})
    state.datasources[(org, m["uid"])] = {**body, "id": current["id"], "secureJsonData": secure}
    return {"message": "Datasource updated"}


@route("GET", "/folders/(?P<uid>[^/]+)", org_scoped=True)
def _folder(state: GrafanaState, org: int, m: re.Match[str], body: dict[str, Any], query: dict[str, list[str]]) -> Any:
    stored = state.folders.get((org, m["uid"]))
    if stored is None:
        raise ApiError(404, "folder not found")
    return stored


@route("POST", "/folders", org_scoped=True)
def _create_folder(
    state: GrafanaState, org: int, m: re.Match[str], body: dict[str, Any], query: dict[str, list[str]]
) -> Any:
    if (org, body["uid"]) in state.folders:
        raise ApiError(409, "a folder with the same uid already exists")
    folder = {"uid": body["uid"], "title": body["title"], "id": next(state._ids), "version": 1}
    state.folders[(org, body["uid"])] = folder
    return folder


@route("PUT", "/folders/(?P<uid>[^/]+)", org_scoped=True)
def _update_folder(
    state: GrafanaState, org: int, m: re.Match[str], body: dict[str, Any], query: dict[str, list[str]]
) -> Any:
    folder = state.folders.get((org, m["uid"]))
    if folder is None:
        raise ApiError(404, "folder not found")
    folder.update(title=body["title"], version=folder["version"] + 1)
    return folder


@route("GET", "/dashboards/uid/(?P<uid>[^/]+)", org_scoped=True)
def _dashboard(
    state: GrafanaState, org: int, m: re.Match[str], body: dict[str, Any], query: dict[str, list[str]]
) -> Any:
    stored = state.dashboards.get((org, m["uid"]))
    if stored is None:
        raise ApiError(404, "Dashboard not found")
    provisioned = bool(stored.get("provisioned"))
    meta = {"folderUid": stored["folderUid"], "canSave": not provisioned, "provisioned": provisioned}
    return {"dashboard": stored["dashboard"], "meta": meta}


@route("POST", "/dashboards/db", org_scoped=True)
def _save_dashboard(
    state: GrafanaState, org: int, m: re.Match[str], body: dict[str, Any], query: dict[str, list[str]]
) -> Any:
    model, folder_uid = body["dashboard"], body.get("folderUid", "")
    if folder_uid and (org, folder_uid) not in state.folders:
        raise ApiError(400, "folder not found")
    previous = state.dashboards.get((org, model["uid"]))
    if previous is not None and previous.get("provisioned"):
        raise ApiError(400, "Cannot save provisioned dashboard")
    if previous is not None and not body.get("overwrite"):
        raise ApiError(412, "A dashboard with the same uid already exists")
    dashboard_id = previous["dashboard"]["id"] if previous else next(state._ids)
    version = previous["dashboard"]["version"] + 1 if previous else 1
    state.dashboards[(org, model["uid"])] = {
        "dashboard": {**model, "id": dashboard_id, "version": version},
        "folderUid": folder_uid,
    }
    return {"status": "success", "uid": model["uid"], "id": dashboard_id, "version": version}


class _Handler(BaseHTTPRequestHandler):
    state: GrafanaState

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _handle(self) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        org_header = self.headers.get("X-Grafana-Org-Id")
        self.state.requests.append(Request(self.command, url.path, int(org_header) if org_header else None, body))
        try:
            user = self._signed_in()
            for method, pattern, handler, org_scoped in _ROUTES:
                match = pattern.match(url.path)
                if method == self.command and match:
                    org = int(org_header) if org_header else 1
                    if org_scoped and user["id"] not in self.state.members.get(org, {}):
                        raise ApiError(401, "User is not a member of the organization")
                    self._reply(200, handler(self.state, org, match, body, parse_qs(url.query)))
                    return
            self.state.unknown_routes.append(f"{self.command} {url.path}")
            raise ApiError(404, "Not found")
        except ApiError as exc:
            self._reply(exc.status, {"message": exc.message})

    def _signed_in(self) -> dict[str, Any]:
        header = self.headers.get("Authorization", "")
        expected = f"{self.state.admin_login}:{self.state.admin_password}".encode()
        if header != "Basic " + base64.b64encode(expected).decode():
            raise ApiError(401, "Invalid username or password")
        user = self.state.user_by_login(self.state.admin_login)
        assert user is not None
        return user

    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


@contextmanager
def grafana_double(
    admin_login: str = "admin", admin_password: str = "grafana-secret"
) -> Iterator[tuple[str, GrafanaState]]:
    """``(url, state)`` of a running double on a free local port."""
    state = GrafanaState(admin_login, admin_password)
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
