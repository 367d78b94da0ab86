"""The deployment files agree with the code and with the platforms that take them: every
variable they set is read, every probe path exists, every Kubernetes object passes the
API's schema and every pod the "restricted" Pod Security Standard. The image itself is built
and run in tests/docker/."""

from __future__ import annotations

import functools
import ipaddress
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
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


PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def test_every_probe_path_is_a_route_of_its_service(apps: dict[str, FastAPI]) -> None:
    probes = 0
    for path, container in _k8s_containers():
        routes = _paths(apps[_service_of(container["command"])])
        for probe in PROBES:
            assert container[probe]["httpGet"]["path"] in routes, (path.name, probe)
            probes += 1
    assert probes == 9


def test_no_probe_touches_the_database() -> None:
    # Liveness only: a database outage must neither restart pods nor take the gateway out of
    # the Ingress, and probes every few seconds would keep a Neon compute awake. That the
    # liveness route answers while the database is down is tested with each service.
    for path, container in _k8s_containers():
        for probe in PROBES:
            assert container[probe]["httpGet"]["path"] == "/health/live", (path.name, probe)


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
        for probe in PROBES:
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


# Where `kubectl kustomize` is missing, .ci/run installs Debian's kubernetes-client.
KUBECTL = shutil.which("kubectl")
IN_CI = os.environ.get("CI", "").lower() == "true"
# The oldest release the manifests promise to work on, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())


def _k8s_manifests() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in _documents(path)
    ]


def _kustomized() -> list[dict[str, Any]]:
    """What `kubectl apply -k deploy/k8s` sends: the manifests with the image replaced."""
    if KUBECTL is None:
        if IN_CI:
            pytest.fail("kubectl is missing: .ci/run installs it")
        pytest.skip("kubectl is not installed: the kustomize output is not checked")
    return yaml.safe_load(yaml.safe_dump(_kustomize(KUBECTL)))  # type: ignore[no-any-return]


@functools.cache
def _kustomize(kubectl: str) -> list[dict[str, Any]]:
    output = subprocess.run(  # noqa: S603 (fixed arguments)
        [kubectl, "kustomize", str(DEPLOY / "k8s")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_and_the_kustomize_output_pass_the_kubernetes_schema(version: str) -> None:
    manifests = _k8s_manifests()
    built = _kustomized()
    for doc in [*manifests, *built]:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {exc.message}")
    # Everything but the example Secret, which people create from their own values.
    assert {(doc["kind"], doc["metadata"]["name"]) for doc in built} == {
        (doc["kind"], doc["metadata"]["name"]) for doc in manifests if doc["kind"] != "Secret"
    }
    assert len(manifests) >= 15


def test_the_validator_refuses_what_it_should() -> None:
    # Strict mode: a misspelt field is an error, not silently dropped by the API server.
    (deployment,) = [
        doc
        for doc in _k8s_manifests()
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "gateway"
    ]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


# The volume types the restricted profile allows.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def _restricted_problems(pod: dict[str, Any]) -> list[str]:
    """What a namespace enforcing the "restricted" Pod Security Standard would refuse."""
    problems = [name for name in ("hostNetwork", "hostPID", "hostIPC") if pod.get(name)]
    problems += [
        f"volume {volume['name']}"
        for volume in pod.get("volumes", [])
        if not set(volume) - {"name"} <= RESTRICTED_VOLUMES
    ]
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("the service account token is mounted")
    for container in [*pod["containers"], *pod.get("initContainers", [])]:
        problems += [
            f"{container['name']}: {problem}"
            for problem in _container_problems(container, pod.get("securityContext", {}))
        ]
    return problems


def _container_problems(container: dict[str, Any], pod_context: dict[str, Any]) -> list[str]:
    own = container.get("securityContext", {})
    # Each container inherits what the pod sets and it does not.
    merged = {**pod_context, **own}
    problems = []
    if own.get("privileged"):
        problems.append("privileged")
    if merged.get("runAsNonRoot") is not True:
        problems.append("runAsNonRoot is not true")
    if merged.get("runAsUser") == 0:
        problems.append("runs as uid 0")
    if (merged.get("seccompProfile") or {}).get("type") not in {"RuntimeDefault", "Localhost"}:
        problems.append("no seccompProfile")
    if own.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    capabilities = own.get("capabilities", {})
    if "ALL" not in capabilities.get("drop", []):
        problems.append("capabilities are not all dropped")
    if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
        problems.append("adds capabilities")
    # Beyond the profile: the image writes only to /tmp and its data directory.
    if own.get("readOnlyRootFilesystem") is not True:
        problems.append("the root filesystem is writable")
    if any(port.get("hostPort") for port in container.get("ports", [])):
        problems.append("hostPort")
    return problems


def test_every_pod_meets_the_restricted_pod_security_standard() -> None:
    pods = [doc["spec"]["template"]["spec"] for doc in _kustomized() if doc["kind"] == "Deployment"]
    for pod in pods:
        assert _restricted_problems(pod) == [], pod["containers"][0]["name"]
        mounts = {m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert "/tmp" in mounts, "a read-only root needs a writable /tmp"
    assert len(pods) == 3


def test_the_restricted_check_finds_what_a_namespace_would_refuse() -> None:
    (pod,) = [
        doc["spec"]["template"]["spec"]
        for doc in _k8s_manifests()
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "auth"
    ]
    lax = yaml.safe_load(yaml.safe_dump(pod))
    del lax["securityContext"]["seccompProfile"]
    lax["containers"][0]["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"]}
    lax["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert _restricted_problems(lax) == [
        "volume host",
        "auth: no seccompProfile",
        "auth: capabilities are not all dropped",
        "auth: adds capabilities",
    ]


def test_autoscaled_deployments_leave_the_replica_count_to_the_autoscaler() -> None:
    objects = _k8s_objects()
    for (kind, name), doc in objects.items():
        if kind == "HorizontalPodAutoscaler":
            target = doc["spec"]["scaleTargetRef"]
            assert "replicas" not in objects[(target["kind"], target["name"])]["spec"], name


def test_every_deployment_has_a_disruption_budget_that_selects_it() -> None:
    objects = _k8s_objects()
    budgets = [doc for (kind, _), doc in objects.items() if kind == "PodDisruptionBudget"]
    for (kind, name), deployment in objects.items():
        if kind != "Deployment":
            continue
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        (budget,) = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert budget["spec"]["minAvailable"] == 1, name
    assert len(budgets) == 3


def test_only_the_gateway_may_reach_the_services() -> None:
    objects = _k8s_objects()
    for name in ("auth", "tasks"):
        deployment = objects[("Deployment", name)]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        policy = objects[("NetworkPolicy", name)]["spec"]
        assert policy["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        assert policy["policyTypes"] == ["Ingress"]
        (rule,) = policy["ingress"]
        assert rule["from"] == [{"podSelector": {"matchLabels": {"app": "gateway"}}}]
        assert rule["ports"] == [{"protocol": "TCP", "port": _listening_port(container)}]
    assert ("NetworkPolicy", "gateway") not in objects, "the ingress controller reaches it"


def test_the_ingress_names_its_class_and_serves_tls_for_every_host() -> None:
    ingress = _k8s_objects()[("Ingress", "todo")]["spec"]
    assert ingress["ingressClassName"]
    hosts = {rule["host"] for rule in ingress["rules"]}
    assert hosts <= {host for entry in ingress["tls"] for host in entry["hosts"]}
    assert all(entry["secretName"] for entry in ingress["tls"])


def test_the_image_comes_from_a_registry_the_user_names() -> None:
    images = {
        container["image"]
        for doc in _kustomized()
        if doc["kind"] == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
    }
    (image,) = images
    registry = image.split("/")[0]
    # A bare name resolves to Docker Hub's library namespace, which anyone could register;
    # `.example` (RFC 2606) names no real host, so a forgotten placeholder cannot pull.
    assert "." in registry
    assert registry.endswith(".example")


def test_k8s_pods_carry_scrape_annotations_for_the_port_they_listen_on() -> None:
    deployments = [doc for (kind, _), doc in _k8s_objects().items() if kind == "Deployment"]
    assert deployments
    for deployment in deployments:
        template = deployment["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        (container,) = template["spec"]["containers"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(_listening_port(container))
        # Served by every process (tests/e2e/test_metrics_and_logs.py scrapes them).
        assert annotations["prometheus.io/path"] == "/metrics"
