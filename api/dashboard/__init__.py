"""Web dashboard served by the API at `/` (see routes.py)."""
