"""Per-team isolation: a read-only ClickHouse user with row policies and a Grafana organization per team.

``runstream teams sync TEAMS_YAML`` reads ``teams.yaml`` (:mod:`.config`), resolves passwords
(:mod:`.secrets`), and brings ClickHouse (:mod:`.clickhouse_access`) and Grafana (:mod:`.grafana_sync`)
to the state the file describes (:mod:`.sync`). See docs/teams.md.
"""
