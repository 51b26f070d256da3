"""Clients of the external stores (ClickHouse, object storage), shared by sources, sinks and operations."""
