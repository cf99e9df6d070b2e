"""Typed calls to Grafana's HTTP API through grafana-client, signed in as a server admin.

Organization-scoped calls (datasources, folders, dashboards) go through a client bound to one
organization with the ``X-Grafana-Org-Id`` header, so nothing depends on the admin's current org.
Reads answer ``None`` for "not found"; every other failure is a :class:`GrafanaError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlparse

import niquests
from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from runstream_core.errors import CommError, UsageError

T = TypeVar("T")
Json = dict[str, Any]


class GrafanaError(CommError):
    """Grafana could not be reached or refused a request."""


class GrafanaAdmin:
    def __init__(self, url: str, user: str, password: str, *, timeout_s: float = 10.0) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise UsageError(f"RUNSTREAM_GRAFANA_URL must be http(s)://host[:port][/path], got {url!r}")
        self.url = url
        self._auth = (user, password)
        self._timeout_s = timeout_s
        self._parsed = parsed
        self._apis: dict[int | None, GrafanaApi] = {}

    def _api(self, org_id: int | None = None) -> GrafanaApi:
        if org_id not in self._apis:
            self._apis[org_id] = GrafanaApi(
                auth=self._auth,
                host=self._parsed.hostname,
                port=self._parsed.port,
                url_path_prefix=self._parsed.path.strip("/") + "/" if self._parsed.path.strip("/") else "",
                protocol=self._parsed.scheme,
                timeout=self._timeout_s,
                organization_id=org_id,
            )
        return self._apis[org_id]

    def _call(self, what: str, request: Callable[[], T], *, missing_ok: bool = False) -> T | None:
        try:
            return request()
        except GrafanaClientError as exc:
            if missing_ok and exc.status_code == 404:
                return None
            said = exc.response.get("message") if isinstance(exc.response, dict) else None
            hint = (
                "; check RUNSTREAM_GRAFANA_USER and RUNSTREAM_GRAFANA_PASSWORD" if exc.status_code in {401, 403} else ""
            )
            raise GrafanaError(
                f"Grafana at {self.url}: {what} failed ({exc.status_code}): {said or exc.message}{hint}"
            ) from exc
        except GrafanaException as exc:
            raise GrafanaError(f"Grafana at {self.url}: {what} failed: {exc.message}") from exc
        except niquests.exceptions.RequestException as exc:
            raise GrafanaError(f"Grafana at {self.url} cannot be reached ({what}): {exc}") from exc

    def _read(self, what: str, request: Callable[[], Any]) -> Any:
        return self._call(what, request, missing_ok=True)

    def _write(self, what: str, request: Callable[[], Any]) -> Any:
        return self._call(what, request)

    # Users and organizations (server admin API).

    def find_user(self, login_or_email: str) -> Json | None:
        result: Json | None = self._read(
            f"look up user {login_or_email}", lambda: self._api().users.find_user(login_or_email)
        )
        return result

    def organizations(self) -> list[Json]:
        result: list[Json] = self._read("list organizations", self._api().organizations.list_organization)
        return result or []

    def create_organization(self, name: str) -> int:
        created = self._write(f"create organization {name}", lambda: self._api().organization.create_organization(name))
        return int(created["orgId"])

    def organization_users(self, org_id: int) -> list[Json]:
        result: list[Json] | None = self._read(
            f"list users of organization {org_id}", lambda: self._api().organizations.organization_user_list(org_id)
        )
        return result or []

    def add_organization_user(self, org_id: int, login_or_email: str, role: str) -> None:
        self._write(
            f"add {login_or_email} to organization {org_id}",
            lambda: self._api().organizations.organization_user_add(
                org_id, {"loginOrEmail": login_or_email, "role": role}
            ),
        )

    def set_organization_role(self, org_id: int, user_id: int, role: str) -> None:
        self._write(
            f"set role of user {user_id} in organization {org_id}",
            lambda: self._api().organizations.organization_user_update(org_id, user_id, role),
        )

    def remove_organization_user(self, org_id: int, user_id: int) -> None:
        self._write(
            f"remove user {user_id} from organization {org_id}",
            lambda: self._api().organizations.organization_user_delete(org_id, user_id),
        )

    # Inside one organization.

    def datasource(self, org_id: int, uid: str) -> Json | None:
        result: Json | None = self._read(
            f"read datasource {uid} of organization {org_id}",
            lambda: self._api(org_id).datasource.get_datasource_by_uid(uid),
        )
        return result

    def create_datasource(self, org_id: int, body: Json) -> None:
        self._write(
            f"create datasource {body['uid']} in organization {org_id}",
            lambda: self._api(org_id).datasource.create_datasource(body),
        )

    def update_datasource(self, org_id: int, uid: str, body: Json) -> None:
        self._write(
            f"update datasource {uid} in organization {org_id}",
            lambda: self._api(org_id).datasource.update_datasource_by_uid(uid, body),
        )

    def folder(self, org_id: int, uid: str) -> Json | None:
        result: Json | None = self._read(
            f"read folder {uid} of organization {org_id}", lambda: self._api(org_id).folder.get_folder(uid)
        )
        return result

    def create_folder(self, org_id: int, uid: str, title: str) -> None:
        self._write(
            f"create folder {uid} in organization {org_id}",
            lambda: self._api(org_id).folder.create_folder(title, uid=uid),
        )

    def rename_folder(self, org_id: int, uid: str, title: str) -> None:
        self._write(
            f"rename folder {uid} in organization {org_id}",
            lambda: self._api(org_id).folder.update_folder(uid, title=title, overwrite=True),
        )

    def dashboard(self, org_id: int, uid: str) -> Json | None:
        result: Json | None = self._read(
            f"read dashboard {uid} of organization {org_id}", lambda: self._api(org_id).dashboard.get_dashboard(uid)
        )
        return result

    def save_dashboard(self, org_id: int, dashboard: Json, folder_uid: str) -> None:
        body = {
            "dashboard": {**dashboard, "id": None},
            "folderUid": folder_uid,
            "overwrite": True,
            "message": "runstream teams sync",
        }
        self._write(
            f"save dashboard {dashboard['uid']} in organization {org_id}",
            lambda: self._api(org_id).dashboard.update_dashboard(body),
        )
