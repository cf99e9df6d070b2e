"""The embedded engine's ClickHouse HTTP endpoint."""
