"""docker-compose.yml, the Dockerfile and the KEDA example agree with the code they deploy.

No Docker engine or Kubernetes here: the files are parsed and checked against the
settings, the worker names, the CLI and the topology, so a rename cannot leave them behind.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from broker.inspect import MANAGEMENT_URL_ENV
from broker.settings import BrokerSettings
from broker.topology import Topology
from tests.support.paths import ROOT
from workers.cli.main import build_parser
from workers.runtime.settings import WORKERS, WorkerSettings
from workers.scaling import SINGLE_ACTIVE_REPLICAS
from workers.store import STORE_URL_ENV

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SCALED_OBJECT = ROOT / "deploy" / "keda" / "scaledobject.yaml"
DEPLOYMENT = ROOT / "deploy" / "keda" / "deployment.yaml"
LOG_VARS = ("RALLY_LOG_LEVEL", "RALLY_LOG_FORMAT")  # read by broker/logs.py
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def known_variables() -> set[str]:
    logs = (ROOT / "broker" / "logs.py").read_text()
    assert all(name in logs for name in LOG_VARS), "the logging variables moved"
    fields = {*BrokerSettings.model_fields, *WorkerSettings.model_fields} - {"broker"}
    return {f"RALLY_{name.upper()}" for name in fields} | {MANAGEMENT_URL_ENV, *LOG_VARS}


def interpolate(value: object) -> str:
    """Compose's ``${NAME:-default}`` with nothing set: the default."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", str(value))


def rally_command(argv: list[str]) -> Any:
    """What `rally <argv>` would run: the parser must accept it."""
    return build_parser().parse_args(argv)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def workers_in(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: spec for name, spec in services.items() if spec.get("command", [None])[0] == "worker"
    }


# ---- docker-compose.yml ----
def test_compose_runs_the_broker_the_store_and_every_worker() -> None:
    services = compose()["services"]
    assert services["rabbitmq"]["image"] == "rabbitmq:3.13-management"
    assert services["postgres"]["image"].startswith("postgres:")
    workers = workers_in(services)
    assert sorted(rally_command(s["command"]).worker for s in workers.values()) == sorted(WORKERS)


def test_each_worker_runs_n_replicas_of_the_image_the_dockerfile_builds() -> None:
    workers = workers_in(compose()["services"])
    for name, spec in workers.items():
        replicas = int(interpolate(spec["deploy"]["replicas"]))
        worker = rally_command(spec["command"]).worker
        if worker == "tasks":
            assert replicas > 1, "the tasks worker scales out: show it with several"
        else:
            assert replicas == SINGLE_ACTIVE_REPLICAS, f"{name}: one active and one standby"
        assert spec["build"] in (".", {"context": "."})
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^RUN pip install \.", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["rally"]' in dockerfile


def test_workers_wait_for_a_healthy_broker_and_store() -> None:
    services = compose()["services"]
    for dependency in ("rabbitmq", "postgres"):
        assert services[dependency]["healthcheck"]["test"]
    for name, spec in workers_in(services).items():
        conditions = {dep: cond["condition"] for dep, cond in spec["depends_on"].items()}
        assert conditions == {"rabbitmq": "service_healthy", "postgres": "service_healthy"}, name


def test_worker_environment_is_real_settings_that_reach_the_services() -> None:
    services = compose()["services"]
    known = known_variables()
    rabbit, postgres = services["rabbitmq"]["environment"], services["postgres"]["environment"]
    for name, spec in workers_in(services).items():
        env = {key: interpolate(value) for key, value in spec["environment"].items()}
        assert set(env) <= known, f"{name}: {sorted(set(env) - known)} are not rallypoint settings"
        settings = WorkerSettings.from_env(env)  # every value is valid for its setting
        amqp = urlsplit(settings.broker.amqp_url)
        assert (amqp.hostname, amqp.username, amqp.password) == (
            "rabbitmq",
            rabbit["RABBITMQ_DEFAULT_USER"],
            rabbit["RABBITMQ_DEFAULT_PASS"],
        )
        store = urlsplit(env[STORE_URL_ENV])
        # replicas in separate containers share the history: PostgreSQL, not a SQLite file
        assert store.scheme == "postgresql"
        assert (store.hostname, store.username, store.password, store.path) == (
            "postgres",
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            "/" + postgres["POSTGRES_DB"],
        )
        management = urlsplit(env[MANAGEMENT_URL_ENV])
        assert management.hostname == "rabbitmq"
        assert services["rabbitmq"]["image"].endswith("-management")


def compose_client() -> list[str] | None:
    """`docker compose` where the plugin is installed, else `docker-compose`, else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_a_compose_client_accepts_the_file() -> None:
    client = compose_client()
    if client is None:
        pytest.skip("no compose client here (docker compose plugin or docker-compose)")
    done = subprocess.run([*client, "-f", str(COMPOSE), "config", "-q"], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


# ---- KEDA ----
def documents(path: Path) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(path.read_text()) if doc}


def test_keda_scales_the_tasks_deployment_on_the_real_tasks_queue() -> None:
    keda, k8s = documents(SCALED_OBJECT), documents(DEPLOYMENT)
    scaled, deployment = keda["ScaledObject"], k8s["Deployment"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["mode"] == "QueueLength"
    assert float(trigger["metadata"]["value"]) > 0
    default = Topology(BrokerSettings().namespace)
    assert trigger["metadata"]["queueName"] == default.work_queue("tasks").name
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]

    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert rally_command(container["args"]).worker == "tasks"
    env = {item["name"]: item for item in container["env"]}
    assert set(env) <= known_variables()
    # the queue name above is the default namespace's: the Deployment must not move it
    assert env.get("RALLY_NAMESPACE", {}).get("value", default.namespace) == default.namespace


def test_keda_authenticates_with_the_secret_the_workers_use() -> None:
    keda, k8s = documents(SCALED_OBJECT), documents(DEPLOYMENT)
    (trigger,) = keda["ScaledObject"]["spec"]["triggers"]
    auth = keda["TriggerAuthentication"]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    (ref,) = auth["spec"]["secretTargetRef"]
    secret = k8s["Secret"]
    assert ref["parameter"] == "host"
    assert ref["name"] == secret["metadata"]["name"]
    assert urlsplit(secret["stringData"][ref["key"]]).scheme == "amqp"
    (container,) = k8s["Deployment"]["spec"]["template"]["spec"]["containers"]
    amqp = next(e for e in container["env"] if e["name"] == "RALLY_AMQP_URL")
    assert amqp["valueFrom"]["secretKeyRef"] == {"name": ref["name"], "key": ref["key"]}
