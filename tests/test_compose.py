"""docker-compose.yml parses and agrees with config.yaml (no Docker engine here to run it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from monitor.config import _apply_env, load_config

REPO = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def expand_compose_defaults(value: str) -> str:
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_services_present() -> None:
    services = compose()["services"]
    assert {"monitor", "postgres", "mosquitto", "mailpit"} <= set(services)
    assert services["monitor"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_monitor_env_is_understood_by_config() -> None:
    """Every MONITOR_* variable the compose file sets lands on a real config key."""
    env_block = compose()["services"]["monitor"]["environment"]
    env = {k: expand_compose_defaults(str(v)) for k, v in env_block.items()}
    config = load_config(REPO / "config.yaml", env=env)
    overrides = {k: v for k, v in env.items() if k.startswith("MONITOR_")}
    referenced = set(re.findall(r"\$\{(MONITOR_[A-Z_]+)", (REPO / "config.yaml").read_text()))
    applied = _apply_env({}, {k: v for k, v in overrides.items() if k not in referenced})
    assert len(applied) == len([k for k in overrides if k not in referenced]), applied
    # the database URL points at the compose PostgreSQL with its credentials
    pg = compose()["services"]["postgres"]["environment"]
    url = config.database.url
    assert url.startswith("postgresql://")
    assert (
        f"{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}" in url
    )


def test_alerts_go_to_the_compose_mail_catcher_and_broker() -> None:
    env_block = compose()["services"]["monitor"]["environment"]
    env = {k: expand_compose_defaults(str(v)) for k, v in env_block.items()}
    config = load_config(REPO / "config.yaml", env=env)
    services = compose()["services"]
    email = config.notify.email
    assert email.enabled and email.smtp.host in services
    assert f"{email.smtp.port}:{email.smtp.port}" in [str(p) for p in services["mailpit"]["ports"]]
    mqtt = config.notify.mqtt
    assert mqtt.enabled and mqtt.host in services
    assert config.web.host == "0.0.0.0" and config.web.token


def test_published_ports_match() -> None:
    services = compose()["services"]
    ports = {s: [str(p).split(":")[0] for p in services[s].get("ports", [])] for s in services}
    assert "5432" in ports["postgres"]
    assert "1883" in ports["mosquitto"]
    assert {"1025", "8025"} <= set(ports["mailpit"])
    config = load_config(REPO / "config.yaml", env={})
    assert str(config.web.port) in ports["monitor"]
