"""Conveyor's HTTP API (DESIGN.md §6): `create_app(settings)` builds the FastAPI app."""

from conveyor.api.app import API_PREFIX, create_app

__all__ = ["API_PREFIX", "create_app"]
