"""Read-only dashboard, JSON API, /metrics and /healthz (Starlette)."""
