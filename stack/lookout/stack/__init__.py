"""Embedded stack."""
