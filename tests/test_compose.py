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


# what an operator sets before `docker compose up` (compose refuses without them)
OPERATOR_ENV = {"POSTGRES_PASSWORD": "f3a9c0d1e2b4a6c8", "MONITOR_WEB_TOKEN": "t" * 32}
_REQUIRED = re.compile(r"\$\{([A-Z_]+):\?[^}]*\}")


def expand_compose_defaults(value: str) -> str:
    """Compose interpolation: ${VAR:-default} → default, ${VAR:?error} → the operator's value."""
    value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
    return _REQUIRED.sub(lambda m: OPERATOR_ENV[m.group(1)], value)


def _text() -> str:
    return (REPO / "docker-compose.yml").read_text(encoding="utf-8")


def test_services_present() -> None:
    services = compose()["services"]
    assert {"init", "monitor", "dashboard", "postgres", "mosquitto", "mailpit"} <= set(services)
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
    pg = {k: expand_compose_defaults(str(v))
          for k, v in compose()["services"]["postgres"]["environment"].items()}
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
    assert f"127.0.0.1:{email.smtp.port}:{email.smtp.port}" in [
        str(p) for p in services["mailpit"]["ports"]]
    mqtt = config.notify.mqtt
    assert mqtt.enabled and mqtt.host in services
    assert config.web.host == "0.0.0.0" and config.web.token


def test_published_ports_match() -> None:
    services = compose()["services"]
    ports = {s: [str(p).split(":")[-2] for p in services[s].get("ports", [])] for s in services}
    assert "5432" in ports["postgres"]
    assert "1883" in ports["mosquitto"]
    assert {"1025", "8025"} <= set(ports["mailpit"])
    config = load_config(REPO / "config.yaml", env={})
    # the one published web UI is the dashboard service (the replicas publish nothing)
    assert str(config.web.port) in ports["dashboard"]


def test_no_known_secret_ships() -> None:
    """Every secret is the operator's (compose refuses without it) or generated on first start."""
    services = compose()["services"]
    env = services["monitor"]["environment"]
    # the access secrets have no default: `docker compose up` stops with the message
    for name in ("POSTGRES_PASSWORD", "MONITOR_WEB_TOKEN"):
        assert re.search(r"\$\{" + name + r":\?[^}]+\}", _text()), name
        assert not re.search(r"\$\{" + name + r":-", _text()), name
    assert "${POSTGRES_PASSWORD:?" in services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    # the author key: no value in the file, a file in a volume created on first start
    assert "MONITOR_PRIVACY_HASH_SECRET" not in env
    assert env["MONITOR_PRIVACY_HASH_SECRET_FILE"].startswith("/secrets/")
    assert any(str(v).endswith(":/secrets") for v in services["monitor"]["volumes"])
    assert "monitor-secrets" in compose()["volumes"]
    for stale in ("change-me", "MONITOR_HASH_SECRET", "MONITOR_CONTACT", "monitor:monitor@"):
        assert stale not in _text(), stale


def test_only_the_dashboard_listens_beyond_loopback() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            if name != "dashboard":
                assert str(port).startswith("127.0.0.1:"), (name, port)


def test_compose_env_with_an_unknown_name_is_refused(tmp_path: Path) -> None:
    """An old or misspelt MONITOR_ name is one line naming it, not silence."""
    from monitor.errors import ConfigError

    env_block = compose()["services"]["monitor"]["environment"]
    env = {k: expand_compose_defaults(str(v)) for k, v in env_block.items()}
    load_config(REPO / "config.yaml", env=env)  # the real names all land
    for stale in ("MONITOR_HASH_SECRET", "MONITOR_CONTACT"):
        try:
            load_config(REPO / "config.yaml", env={**env, stale: "x"})
        except ConfigError as exc:
            assert str(exc).startswith(f"environment: {stale}: maps to no setting")
        else:
            raise AssertionError(f"{stale} was accepted")


# -- `docker compose up --scale monitor=3` (README, "Running more than one") -------------

MONITOR_PROCESSES = ("init", "monitor", "dashboard")  # every service running `monitor`


def test_scaled_service_has_nothing_that_clashes() -> None:
    """Three replicas of `monitor` on one Docker host: no fixed name, host name or host port."""
    services = compose()["services"]
    for name, service in services.items():
        assert "container_name" not in service, name  # a fixed name allows one container
    replica = services["monitor"]
    assert "ports" not in replica, "a published host port clashes at --scale monitor=2"
    assert "hostname" not in replica, "the identity in `monitor status` is the host name"
    assert "network_mode" not in replica and "deploy" not in replica
    assert [str(p) for p in replica.get("expose", [])] == ["8765"]  # /metrics, in-network


def test_replicas_neither_install_nor_migrate() -> None:
    """The venv, the schema and the author key are made once, by `init`, before any replica."""
    services = compose()["services"]
    init, replica, dashboard = (services[n] for n in MONITOR_PROCESSES)
    assert "monitor init-db" in init["command"] and "pip install" in init["command"]
    assert init.get("restart") == "no"
    for name, service in (("monitor", replica), ("dashboard", dashboard)):
        command = str(service["command"])
        assert "pip" not in command and "init-db" not in command and "venv " not in command, name
        assert service["depends_on"]["init"]["condition"] == "service_completed_successfully", \
            name
    assert replica["command"].split()[-1] == "run"
    assert dashboard["command"].split()[-1] == "web"


def test_every_process_shares_one_database_and_one_key() -> None:
    services = compose()["services"]
    envs = [services[n]["environment"] for n in MONITOR_PROCESSES]
    assert envs[0] == envs[1] == envs[2]
    volumes = [services[n]["volumes"] for n in MONITOR_PROCESSES]
    assert volumes[0] == volumes[1] == volumes[2]
    url = expand_compose_defaults(envs[0]["MONITOR_DATABASE_URL"])
    assert "@postgres:5432/" in url and url.startswith("postgresql://")
    # no SQLite anywhere: a file database is one process's, never a cluster's
    assert not any("sqlite" in str(v) for env in envs for v in env.values())


def test_no_secret_is_hard_coded_in_any_service() -> None:
    """Every password, token or key in any service is the operator's or a generated file."""
    for name, service in compose()["services"].items():
        env = service.get("environment") or {}
        items = env.items() if isinstance(env, dict) else (
            tuple(e.split("=", 1)) if "=" in e else (e, "") for e in env)
        for key, value in items:
            text = str(value)
            if any(word in key for word in ("PASSWORD", "TOKEN", "SECRET", "KEY")):
                assert _REQUIRED.fullmatch(text.strip('"')) or text.startswith("/secrets/"), \
                    (name, key)
            if "://" in text and "@" in text:  # credentials in a URL: only the operator's
                credentials = text.split("://", 1)[1].split("@", 1)[0]
                assert "${" in credentials, (name, key)


def test_readme_documents_scaling() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docker compose up --scale monitor=3" in readme
    assert "## Running more than one" in readme
