"""The deployment files agree with the code: every variable they set is read, every probe
path exists. They cannot run here (no container engine); this is what can be checked."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from pydantic import SecretStr

from auth_service.app import create_app as create_auth_app
from auth_service.settings import AuthSettings
from gateway.app import create_app as create_gateway_app
from gateway.settings import GatewaySettings
from shared.settings import CommonSettings
from task_service.app import create_app as create_task_app
from task_service.settings import TaskSettings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
# Read by uvicorn itself (--proxy-headers), not by our settings.
UVICORN_VARIABLES = {"FORWARDED_ALLOW_IPS"}
# Read by app.py when it launches the whole stack.
LAUNCHER_VARIABLES = {
    "HOST",
    "AUTH_SERVICE_PORT",
    "TASK_SERVICE_PORT",
    "SUPERVISOR_RUN_DIR",
    "START_RETRIES",
}

SETTINGS: dict[str, type[CommonSettings]] = {
    "auth_service": AuthSettings,
    "task_service": TaskSettings,
    "gateway": GatewaySettings,
}


def _variables(settings_class: type[CommonSettings]) -> set[str]:
    return {name.upper() for name in settings_class.model_fields}


def _service_of(command: list[str]) -> str:
    (module,) = [part.split(".")[0] for part in command if part.endswith(".main:app")]
    return module


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _k8s_containers() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in _documents(path):
            if doc.get("kind") == "Deployment":
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    yield path, container


def _k8s_env_sources() -> dict[str, set[str]]:
    """Keys of every ConfigMap and Secret, by name."""
    sources: dict[str, set[str]] = {}
    for path in (DEPLOY / "k8s").glob("*.yaml"):
        for doc in _documents(path):
            if doc.get("kind") in {"ConfigMap", "Secret"}:
                data = doc.get("data") or doc.get("stringData") or {}
                sources[doc["metadata"]["name"]] = set(data)
    return sources


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FastAPI]:
    data_dir = tmp_path_factory.mktemp("data")
    key = SecretStr("k" * 40)
    auth = AuthSettings(_env_file=None, data_dir=data_dir, secret_key=key)
    tasks = TaskSettings(_env_file=None, data_dir=data_dir, secret_key=key)
    return {
        "auth_service": create_auth_app(auth),
        "task_service": create_task_app(tasks),
        "gateway": create_gateway_app(GatewaySettings(_env_file=None)),
    }


def _paths(app: FastAPI) -> set[str]:
    return set(app.openapi()["paths"])


def test_compose_sets_only_variables_its_services_read() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    checked = 0
    for name, service in compose["services"].items():
        if name == "postgres":
            continue
        known = _variables(SETTINGS[_service_of(service["command"])]) | UVICORN_VARIABLES
        assert set(service["environment"]) <= known, name
        checked += 1
    assert checked == 3


def test_k8s_containers_set_only_variables_their_service_reads() -> None:
    sources = _k8s_env_sources()
    seen = set()
    for path, container in _k8s_containers():
        service = _service_of(container["command"])
        known = _variables(SETTINGS[service]) | UVICORN_VARIABLES
        explicit = {entry["name"] for entry in container.get("env", [])}
        assert explicit <= known, (path.name, explicit - known)
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef") or source.get("secretRef")
            unknown = sources[ref["name"]] - known
            # A shared ConfigMap may hold keys for the other services, never unknown ones.
            assert unknown <= set().union(*map(_variables, SETTINGS.values())), ref["name"]
        seen.add(service)
    assert seen == set(SETTINGS)


def test_every_probe_path_is_a_route_of_its_service(apps: dict[str, FastAPI]) -> None:
    probes = 0
    for path, container in _k8s_containers():
        routes = _paths(apps[_service_of(container["command"])])
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] in routes, (path.name, probe)
            probes += 1
    assert probes == 6


def _k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (doc["kind"], doc["metadata"]["name"]): doc
        for path in (DEPLOY / "k8s").glob("*.yaml")
        for doc in _documents(path)
        if "metadata" in doc
    }


def _listening_port(container: dict[str, Any]) -> int:
    command: list[str] = container["command"]
    return int(command[command.index("--port") + 1])


def test_k8s_probes_and_container_ports_are_the_port_the_server_listens_on() -> None:
    containers = 0
    for path, container in _k8s_containers():
        port = _listening_port(container)
        assert [entry["containerPort"] for entry in container["ports"]] == [port], path.name
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["port"] == port, (path.name, probe)
        containers += 1
    assert containers == 3


def test_k8s_services_send_traffic_to_their_pods_listening_port() -> None:
    objects = _k8s_objects()
    deployments = [doc for (kind, _), doc in objects.items() if kind == "Deployment"]
    services = 0
    for (kind, name), service in objects.items():
        if kind != "Service":
            continue
        selector = service["spec"]["selector"]
        (deployment,) = [
            doc
            for doc in deployments
            if selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()
        ]
        ports = {_listening_port(c) for c in deployment["spec"]["template"]["spec"]["containers"]}
        for entry in service["spec"]["ports"]:
            assert entry["targetPort"] in ports, name
        services += 1
    assert services == 3


def test_k8s_autoscalers_and_ingress_refer_to_existing_objects() -> None:
    objects = _k8s_objects()
    autoscalers = [doc for (kind, _), doc in objects.items() if kind == "HorizontalPodAutoscaler"]
    for autoscaler in autoscalers:
        target = autoscaler["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) in objects, autoscaler["metadata"]["name"]
    backends = [
        path["backend"]["service"]
        for (kind, _), doc in objects.items()
        if kind == "Ingress"
        for rule in doc["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    for backend in backends:
        service = objects[("Service", backend["name"])]
        assert backend["port"]["number"] in [p["port"] for p in service["spec"]["ports"]]
    assert len(autoscalers) == 2
    assert len(backends) == 1


def test_k8s_secrets_come_from_a_secret_and_services_autoscale() -> None:
    kinds = {
        (doc["kind"], doc["metadata"]["name"])
        for path in (DEPLOY / "k8s").glob("*.yaml")
        for doc in _documents(path)
        if "metadata" in doc
    }
    assert {("HorizontalPodAutoscaler", "auth"), ("HorizontalPodAutoscaler", "tasks")} <= kinds
    assert ("Ingress", "todo") in kinds
    for _, container in _k8s_containers():
        for entry in container.get("env", []):
            assert entry["name"] not in {"SECRET_KEY", "DATABASE_URL", "BETTER_AUTH_SECRET"}


def _forwarded_allow_ips(node: Any, found: list[str]) -> None:
    """Collect every FORWARDED_ALLOW_IPS value (mapping, k8s env entry or uvicorn argument)."""
    if isinstance(node, dict):
        if node.get("name") == "FORWARDED_ALLOW_IPS" and "value" in node:
            found.append(str(node["value"]))
        if "FORWARDED_ALLOW_IPS" in node:
            found.append(str(node["FORWARDED_ALLOW_IPS"]))
        for value in node.values():
            _forwarded_allow_ips(value, found)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            if item == "--forwarded-allow-ips":
                found.append(str(node[index + 1]))
            _forwarded_allow_ips(item, found)


def test_no_deployment_trusts_forwarded_headers_from_anyone() -> None:
    # With "*" uvicorn takes the left-most X-Forwarded-For entry, which the client writes:
    # every client could claim any address and escape the per-client limits.
    files = set()
    for path in sorted(DEPLOY.rglob("*.yaml")):
        values: list[str] = []
        for doc in _documents(path):
            _forwarded_allow_ips(doc, values)
        for value in values:
            assert "*" not in {entry.strip() for entry in value.split(",")}, path.name
            files.add(path.name)
    assert files == {"compose.yaml", "auth.yaml", "tasks.yaml", "gateway.yaml"}


def test_compose_services_trust_only_the_network_the_gateway_reaches_them_from() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    for name in ("auth", "tasks"):
        (network,) = set(services[name]["networks"]) & set(services["gateway"]["networks"])
        (pool,) = compose["networks"][network]["ipam"]["config"]
        # Containers (the gateway among them) get their addresses from ip_range.
        containers = ipaddress.ip_network(pool.get("ip_range", pool["subnet"]))
        host_side = ipaddress.ip_address(pool["gateway"])
        trusted = services[name]["environment"]["FORWARDED_ALLOW_IPS"].split(",")
        for entry in map(ipaddress.ip_network, trusted):
            assert entry.version == containers.version, name
            assert entry.subnet_of(containers), (name, entry)  # type: ignore[arg-type]
            assert host_side not in entry, (name, entry)


def test_space_yaml_matches_the_readme_front_matter() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.startswith("---\n")
    front_matter = yaml.safe_load(readme.split("---\n")[1])

    assert front_matter == yaml.safe_load((ROOT / "space.yaml").read_text())
    assert front_matter["sdk"] == "docker"
    assert front_matter["app_port"] == 7860


def test_env_example_lists_every_variable_and_nothing_else() -> None:
    listed = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        text = line.lstrip("# ").strip()
        if "=" in text and text.split("=", 1)[0].isupper() and " " not in text.split("=", 1)[0]:
            listed.add(text.split("=", 1)[0])
    known = set().union(*map(_variables, SETTINGS.values())) | UVICORN_VARIABLES
    known |= LAUNCHER_VARIABLES

    assert listed == known
