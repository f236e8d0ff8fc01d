"""Lookout sink: every topic into ClickHouse."""
