"""The dashboards, where each one is provisioned, and the finished model of each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel, RowPanel

from runstream_grafana.dashboards import cross_team, hardware, pipeline_health, run_comparison, team_overview

# team: provisioned into every team's organization; admin: into the platform admins' organization.
Folder = Literal["team", "admin"]


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    folder: Folder
    builder: Callable[[], dash.Dashboard]

    def build(self) -> Dashboard:
        """The dashboard model, panels numbered in layout order."""
        model = self.builder().build()
        if model.uid != self.uid:
            raise ValueError(f"dashboard built for {self.uid!r} has uid {model.uid!r}")
        panels: list[Panel | RowPanel] = list(model.panels or [])
        for number, panel in enumerate(panels, start=1):
            panel.id_val = number
        return model


DASHBOARDS: tuple[DashboardSpec, ...] = (
    DashboardSpec(team_overview.UID, "team", team_overview.build),
    DashboardSpec(run_comparison.UID, "team", run_comparison.build),
    DashboardSpec(hardware.UID, "team", hardware.build),
    DashboardSpec(pipeline_health.UID, "admin", pipeline_health.build),
    DashboardSpec(cross_team.UID, "admin", cross_team.build),
)
