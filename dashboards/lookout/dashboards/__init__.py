"""Lookout's on-call view as code: one panel specification (panels.py) feeds the Grafana
dashboard (generate.py), the alert rules (alerts.py) and the embedded overview page; macros.py
expands the ClickHouse datasource plugin's macros the way the plugin does.
"""
