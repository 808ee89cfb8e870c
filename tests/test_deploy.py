"""deploy/kubernetes/ and docker-compose.yml against the code: checked without a cluster or
a Docker engine. The variables they set must be ones the settings classes read, each
component must get its own database and only its own, and the gateway must be the only way
in from outside."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped]
from fastapi import FastAPI
from pydantic import AliasChoices, AliasPath
from pydantic_settings import BaseSettings

from broen_cli.common import SETTINGS
from gateway.app import create_app as create_gateway
from gateway.policy.document import SHIPPED_POLICY
from gateway.settings import GatewaySettings
from services.consent.app import create_app as create_consent
from services.messaging.app import create_app as create_messaging
from services.participant.app import create_app as create_participant
from shared.keys import MissingKey, init_keys_dir

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
COMPONENTS = ("gateway", "participant", "consent", "messaging")
COMPONENT_LABEL = "app.kubernetes.io/component"
# PostgreSQL's default max_connections (100) less its superuser_reserved_connections (3).
POSTGRES_CONNECTIONS = 97
APPS: dict[str, Callable[[Any], FastAPI]] = {
    "gateway": create_gateway,
    "participant": create_participant,
    "consent": create_consent,
    "messaging": create_messaging,
}


# ------------------------------------------------------------------ what the code reads


def readable_variables(settings: type[BaseSettings]) -> dict[str, str]:
    """Environment variable (upper case) -> field, as pydantic-settings reads them: the
    field's alias(es) if it has any, else env_prefix + field name; with populate_by_name
    also env_prefix + field name."""
    config = settings.model_config
    prefix = str(config.get("env_prefix", ""))
    names: dict[str, str] = {}
    for name, info in settings.model_fields.items():
        alias = info.validation_alias or info.alias
        choices: list[str | AliasPath] = []
        if isinstance(alias, AliasChoices):
            choices = list(alias.choices)
        elif alias is not None:
            choices = [alias]
        for choice in choices:
            first = choice.path[0] if isinstance(choice, AliasPath) else choice
            names[str(first).upper()] = name
        if not choices or config.get("populate_by_name"):
            names[(prefix + name).upper()] = name
    return names


# Commands that run every component's settings: the migration Job, the retention CronJob.
EVERY_COMPONENT = ("migrate", "retention")


def reads(component: str) -> dict[str, str]:
    """What a container running `component` reads (EVERY_COMPONENT: every component's)."""
    if component in EVERY_COMPONENT:
        merged: dict[str, str] = {}
        for settings in SETTINGS.values():
            merged.update(readable_variables(settings))
        return merged
    return readable_variables(SETTINGS[component])


def test_the_derivation_sees_prefixed_fields_and_aliases() -> None:
    gateway = readable_variables(SETTINGS["gateway"])
    assert gateway["BROEN_GATEWAY_DATABASE_URL"] == "database_url"
    assert gateway["BROEN_GATEWAY_POLICY_PATH"] == "policy_path"
    assert gateway["BROEN_REDIS_URL"] == "redis_url"
    assert gateway["BROEN_KEYS_DIR"] == "keys_dir"
    assert gateway["BROEN_NATS_URL"] == "nats_url"
    assert "BROEN_CONSENT_RECEIPT_ISSUER" not in gateway
    assert "BROEN_REDIS_URL" not in readable_variables(SETTINGS["messaging"])


# ------------------------------------------------------------------ loading the files


def _load_all(path: Path) -> list[dict[str, Any]]:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for document in documents:
        assert isinstance(document, dict), f"{path.name}: a document is not a mapping"
    return documents


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    document = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def objects(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        found.extend(_load_all(K8S / resource))
    return found


@pytest.fixture(scope="module")
def example_secrets() -> dict[str, dict[str, str]]:
    secrets = _load_all(K8S / "secrets.example.yaml")
    return {s["metadata"]["name"]: s["stringData"] for s in secrets if s["kind"] == "Secret"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def _of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _deployments(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Deployments by the component their pods are labelled with."""
    found: dict[str, dict[str, Any]] = {}
    for deployment in _of_kind(objects, "Deployment").values():
        component = deployment["spec"]["template"]["metadata"]["labels"][COMPONENT_LABEL]
        assert component not in found, f"two Deployments for {component}"
        found[component] = deployment
    return found


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    job = workload["spec"]["jobTemplate"] if workload["kind"] == "CronJob" else workload
    spec = job["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = _pod(workload)["containers"]
    assert len(containers) == 1, "one container per pod"
    container = containers[0]
    assert isinstance(container, dict)
    return container


@dataclass
class Variable:
    value: str | None  # None: from a Secret
    secret: tuple[str, str] | None = None  # (Secret name, key)


@dataclass
class Environment:
    """A container's environment as the manifests compose it."""

    where: str
    component: str  # the settings it runs: a component, or "migrate"
    variables: dict[str, Variable] = field(default_factory=dict)


def _container_environment(
    where: str, component: str, container: dict[str, Any], config_maps: dict[str, Any]
) -> Environment:
    env = Environment(where, component)
    for source in container.get("envFrom", []):
        assert "secretRef" not in source, f"{where}: a whole Secret as environment"
        data = config_maps[source["configMapRef"]["name"]]["data"]
        for name, value in data.items():
            env.variables[name] = Variable(str(value))
    for item in container.get("env", []):
        if "value" in item:
            env.variables[item["name"]] = Variable(str(item["value"]))
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env.variables[item["name"]] = Variable(None, (ref["name"], ref["key"]))
    return env


def _kubernetes_environments(objects: list[dict[str, Any]]) -> Iterator[Environment]:
    config_maps = _of_kind(objects, "ConfigMap")
    for component, deployment in _deployments(objects).items():
        yield _container_environment(
            f"Deployment {component}", component, _container(deployment), config_maps
        )
    for name, job in _of_kind(objects, "Job").items():
        yield _container_environment(f"Job {name}", "migrate", _container(job), config_maps)
    for name, cron_job in _of_kind(objects, "CronJob").items():
        yield _container_environment(
            f"CronJob {name}", "retention", _container(cron_job), config_maps
        )


def _compose_environments(compose: dict[str, Any]) -> Iterator[Environment]:
    for name, service in compose["services"].items():
        command = service.get("command", [])
        if command == ["migrate"]:
            component = "migrate"
        elif command[:1] == ["serve"]:
            component = command[1]
        else:
            continue
        env = Environment(f"compose service {name}", component)
        for key, value in (service.get("environment") or {}).items():
            env.variables[key] = Variable(str(value))
        yield env


@pytest.fixture(scope="module")
def environments(objects: list[dict[str, Any]], compose: dict[str, Any]) -> list[Environment]:
    return [*_kubernetes_environments(objects), *_compose_environments(compose)]


def _k8s_env(objects: list[dict[str, Any]], component: str) -> dict[str, Variable]:
    for env in _kubernetes_environments(objects):
        if env.where == f"Deployment {component}":
            return env.variables
    raise AssertionError(f"no Deployment for {component}")


# ------------------------------------------------------------------ the files themselves


def test_every_manifest_parses_and_lives_in_the_namespace() -> None:
    files = sorted(K8S.glob("*.yaml"))
    assert files, "no manifests"
    for path in files:
        documents = _load_all(path)
        assert documents, f"{path.name} is empty"
        if path.name == "kustomization.yaml":
            continue
        for document in documents:
            assert document.get("apiVersion") and document.get("kind"), path.name
            assert document["metadata"]["name"], path.name
            if document["kind"] != "Namespace":
                assert document["metadata"]["namespace"] == "broen", (
                    f"{path.name}: {document['kind']} {document['metadata']['name']}"
                )


def test_the_kustomization_lists_every_manifest(kustomization: dict[str, Any]) -> None:
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    # The example Secrets stay out: applying placeholders would overwrite the real ones.
    on_disk = {
        p.name
        for p in K8S.glob("*.yaml")
        if p.name != "kustomization.yaml" and not p.name.endswith(".example.yaml")
    }
    assert set(listed) == on_disk
    assert kustomization["namespace"] == "broen"
    assert not any(o["kind"] == "Secret" for r in listed for o in _load_all(K8S / r))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_the_listed_objects_with_one_image(
    objects: list[dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    rendered = [d for d in yaml.safe_load_all(built) if d is not None]
    names = sorted((o["kind"], o["metadata"]["name"]) for o in rendered)
    assert names == sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    (image,) = kustomization["images"]
    expected = f"{image['newName']}:{image['newTag']}"
    for rendered_object in rendered:
        if rendered_object["kind"] in ("Deployment", "Job", "CronJob"):
            assert _container(rendered_object)["image"] == expected


def test_the_deployments_are_the_components_compose_runs(
    objects: list[dict[str, Any]], compose: dict[str, Any]
) -> None:
    deployments = _deployments(objects)
    served = {
        s["command"][1]
        for s in compose["services"].values()
        if s.get("command", [])[:1] == ["serve"]
    }
    assert set(deployments) == served == set(COMPONENTS) == set(SETTINGS)
    images = set()
    for component, deployment in deployments.items():
        container = _container(deployment)
        assert container["args"] == ["serve", component]
        assert deployment["spec"]["replicas"] >= 2, f"{component}: one replica is no HA"
        images.add(container["image"])
    jobs = _of_kind(objects, "Job")
    assert [_container(j)["args"] for j in jobs.values()] == [["migrate"]]
    images.update(_container(j)["image"] for j in jobs.values())
    cron_jobs = _of_kind(objects, "CronJob")
    assert [_container(j)["args"][:2] for j in cron_jobs.values()] == [["retention", "run"]]
    images.update(_container(j)["image"] for j in cron_jobs.values())
    assert len(images) == 1, "one image for every component"


# ------------------------------------------------------------------ variables


def test_every_broen_variable_set_is_one_the_code_reads(
    environments: list[Environment],
) -> None:
    assert {e.component for e in environments} == {*COMPONENTS, *EVERY_COMPONENT}
    unread = [
        f"{env.where}: {name}"
        for env in environments
        for name in env.variables
        if name.startswith("BROEN_") and name.upper() not in reads(env.component)
    ]
    assert unread == []


def test_the_settings_take_the_values_as_set(
    environments: list[Environment],
    example_secrets: dict[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given exactly the container's environment (Secrets as in the example), each settings
    class validates and holds every value the files set."""
    for env in environments:
        with monkeypatch.context() as patch:
            for name in list(os.environ):
                if name.upper().startswith("BROEN_"):
                    patch.delenv(name)
            expected: dict[str, str] = {}
            for name, variable in env.variables.items():
                if variable.secret is not None:
                    secret, key = variable.secret
                    value = example_secrets[secret][key]
                else:
                    assert variable.value is not None
                    value = variable.value
                patch.setenv(name, value)
                expected[name.upper()] = value
            components = COMPONENTS if env.component in EVERY_COMPONENT else (env.component,)
            for component in components:
                settings_class = SETTINGS[component]
                settings = settings_class()
                for name, field_name in readable_variables(settings_class).items():
                    if name in expected:
                        held = getattr(settings, field_name)
                        assert str(held) == expected[name], f"{env.where}: {name}"


def test_each_component_gets_its_own_database_and_only_its_own(
    environments: list[Environment],
) -> None:
    secrets_of: dict[str, set[tuple[str, str] | None]] = {c: set() for c in COMPONENTS}
    for env in environments:
        urls = {n for n in env.variables if n.endswith("_DATABASE_URL")}
        if env.component in EVERY_COMPONENT:
            assert urls == {f"BROEN_{c.upper()}_DATABASE_URL" for c in COMPONENTS}, env.where
            continue
        own = f"BROEN_{env.component.upper()}_DATABASE_URL"
        assert urls == {own}, env.where
        if env.where.startswith("Deployment"):
            assert env.variables[own].secret is not None, f"{env.where}: a URL in plain text"
        secrets_of[env.component].add(env.variables[own].secret)
        plain = env.variables[own].value
        if plain is not None:  # compose: the database named after the component
            assert plain.endswith(f"/{env.component}"), env.where
    # The migration Job and the retention CronJob reach each database with the Secret its
    # component uses.
    for env in environments:
        if env.component in EVERY_COMPONENT and env.where.startswith(("Job", "CronJob")):
            for component in COMPONENTS:
                variable = env.variables[f"BROEN_{component.upper()}_DATABASE_URL"]
                assert variable.secret in secrets_of[component]
    used = [s for c in COMPONENTS for s in secrets_of[c] if s is not None]
    assert len(used) == len(set(used)) == len(COMPONENTS), "a database Secret is shared"


def test_the_secrets_the_manifests_use_have_an_example(
    environments: list[Environment], example_secrets: dict[str, dict[str, str]]
) -> None:
    for env in environments:
        for name, variable in env.variables.items():
            if variable.secret is not None:
                secret, key = variable.secret
                assert key in example_secrets.get(secret, {}), f"{env.where}: {name}"
    # The keys Secret holds files, so the example says how to make it instead.
    example = (K8S / "secrets.example.yaml").read_text()
    assert "broen admin keys init --dir broen-keys" in example
    assert "create secret generic broen-keys --from-file=broen-keys/" in example


def test_listeners_ports_services_and_urls_line_up(objects: list[dict[str, Any]]) -> None:
    deployments = _deployments(objects)
    services = _of_kind(objects, "Service")
    port_of: dict[tuple[str, int], str] = {}  # (Service name, port) -> component
    for name, service in services.items():
        component = service["spec"]["selector"][COMPONENT_LABEL]
        pod_labels = deployments[component]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items(), name
        container_ports = {
            p["name"]: p["containerPort"] for p in _container(deployments[component])["ports"]
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports, f"Service {name}"
            port_of[(name, int(port["port"]))] = component
    for component in COMPONENTS:
        env = _k8s_env(objects, component)
        prefix = f"BROEN_{component.upper()}_"
        assert env[prefix + "HOST"].value == "0.0.0.0"  # noqa: S104 - inside its pod
        ports = _container(deployments[component])["ports"]
        assert [p["containerPort"] for p in ports] == [int(env[prefix + "PORT"].value or 0)]
        for name, variable in env.items():
            if name.endswith("_URL") and (variable.value or "").startswith("http://"):
                url = urlsplit(variable.value)
                where = (str(url.hostname), int(url.port or 80))
                assert where in port_of, f"{component}: {name} names no Service"
                target = port_of[where]
                assert name.endswith(f"_{target.upper()}_URL"), f"{component}: {name}"


def test_sizes_of_the_connection_pools_fit_one_postgresql(objects: list[dict[str, Any]]) -> None:
    """What the comment in configmap-env.yaml promises, should all four databases share one
    server with the default max_connections."""
    deployments = _deployments(objects)
    total = 0
    for component in COMPONENTS:
        pool = _k8s_env(objects, component)[f"BROEN_{component.upper()}_DATABASE_POOL_SIZE"]
        total += int(pool.value or 0) * int(deployments[component]["spec"]["replicas"])
    assert 0 < total <= POSTGRES_CONNECTIONS


# ------------------------------------------------------------------ pods


def test_probes_ask_readyz_and_healthz_on_the_listener(objects: list[dict[str, Any]]) -> None:
    for component, deployment in _deployments(objects).items():
        container = _container(deployment)
        names = {p["name"] for p in container["ports"]}
        readiness = container["readinessProbe"]["httpGet"]
        liveness = container["livenessProbe"]["httpGet"]
        assert readiness["path"] == "/readyz", component
        assert liveness["path"] == "/healthz", component
        assert readiness["port"] in names and liveness["port"] in names, component


def test_pods_run_locked_down_with_resources(objects: list[dict[str, Any]]) -> None:
    workloads = [
        workload
        for kind in ("Deployment", "Job", "CronJob")
        for workload in _of_kind(objects, kind).values()
    ]
    for workload in workloads:
        name = workload["metadata"]["name"]
        pod = _pod(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert int(pod["securityContext"]["runAsUser"]) > 0, name
        assert pod["enableServiceLinks"] is False, name  # no FOO_PORT=tcp://... variables
        assert pod["automountServiceAccountToken"] is False, name
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), name
        container = _container(workload)
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{name} {kind}"
        assert not any("hostPort" in p for p in container.get("ports", [])), name


def _mounts(workload: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """mountPath -> (volumeMount, volume)."""
    volumes = {v["name"]: v for v in _pod(workload).get("volumes", [])}
    return {
        m["mountPath"]: (m, volumes[m["name"]])
        for m in _container(workload).get("volumeMounts", [])
    }


def test_keys_are_mounted_read_only_where_broen_keys_dir_points(
    objects: list[dict[str, Any]],
) -> None:
    for component, deployment in _deployments(objects).items():
        keys_dir = _k8s_env(objects, component)["BROEN_KEYS_DIR"].value
        assert keys_dir is not None
        mount, volume = _mounts(deployment)[keys_dir]
        assert mount["readOnly"] is True, component
        assert volume["secret"]["secretName"] == "broen-keys", component


def _key_items(deployment: dict[str, Any], keys_dir: str) -> list[str]:
    _, volume = _mounts(deployment)[keys_dir]
    items = volume["secret"]["items"]
    for item in items:
        assert item["path"] == item["key"], "key files keep their names"
    return [str(item["key"]) for item in items]


def test_each_component_mounts_exactly_the_keys_it_loads(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The app starts with the files its Deployment mounts, and without any one of them it
    refuses: no pod holds a key it does not use (another component's private keys)."""
    everything = tmp_path / "all"
    init_keys_dir(everything)
    for component, deployment in _deployments(objects).items():
        keys_dir = _k8s_env(objects, component)["BROEN_KEYS_DIR"].value
        assert keys_dir is not None
        items = _key_items(deployment, keys_dir)
        assert items, component
        mounted = tmp_path / component
        mounted.mkdir()
        for name in items:
            shutil.copy(everything / name, mounted / name)
        settings = SETTINGS[component](
            keys_dir=mounted, database_url=f"sqlite+aiosqlite:///{tmp_path}/{component}.db"
        )
        create_app = APPS[component]
        create_app(settings)
        for name in items:
            hidden = mounted / f"{name}.hidden"
            (mounted / name).rename(hidden)
            with pytest.raises(MissingKey):
                create_app(settings)
            hidden.rename(mounted / name)


def test_the_policy_config_map_is_the_shipped_policy(objects: list[dict[str, Any]]) -> None:
    gateway = _deployments(objects)["gateway"]
    policy_path = _k8s_env(objects, "gateway")["BROEN_GATEWAY_POLICY_PATH"].value
    assert policy_path is not None
    mount, volume = _mounts(gateway)[str(Path(policy_path).parent)]
    assert mount["readOnly"] is True
    config_map = _of_kind(objects, "ConfigMap")[volume["configMap"]["name"]]
    assert config_map["data"][Path(policy_path).name] == SHIPPED_POLICY.read_text()


def test_the_gateway_writes_its_audit_head_to_a_volume(objects: list[dict[str, Any]]) -> None:
    """The root filesystem is read-only, so the exported head needs a writable mount."""
    gateway = _deployments(objects)["gateway"]
    head_file = _k8s_env(objects, "gateway")["BROEN_GATEWAY_AUDIT_HEAD_FILE"].value
    assert head_file is not None
    mount, volume = _mounts(gateway)[str(Path(head_file).parent)]
    assert not mount.get("readOnly")
    assert "emptyDir" in volume or "persistentVolumeClaim" in volume


# ------------------------------------------------------------------ the way in


def test_only_the_gateway_is_reachable_from_outside(objects: list[dict[str, Any]]) -> None:
    services = _of_kind(objects, "Service")
    assert set(services) == set(COMPONENTS)
    for name, service in services.items():
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", name
        assert "externalIPs" not in service["spec"], name
    ingresses = _of_kind(objects, "Ingress")
    assert ingresses, "no Ingress example"
    backends = {
        path["backend"]["service"]["name"]
        for ingress in ingresses.values()
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {"gateway"}
    assert "defaultBackend" not in next(iter(ingresses.values()))["spec"]
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"Route", "Gateway", "HTTPRoute", "IngressRoute"}


def test_the_ingress_routes_the_public_api_and_not_the_operators_endpoints(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    (ingress,) = _of_kind(objects, "Ingress").values()
    prefixes = [path["path"] for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]]
    keys = tmp_path / "keys"
    init_keys_dir(keys)
    gateway = create_gateway(GatewaySettings(database_url="sqlite+aiosqlite://", keys_dir=keys))
    public = [*gateway.openapi()["paths"], "/docs", "/openapi.json"]

    def routed(path: str) -> bool:
        return any(path.startswith(prefix) for prefix in prefixes)

    assert [path for path in public if not routed(path)] == []
    assert not any(routed(path) for path in ("/metrics", "/healthz", "/readyz", "/internal/"))


def test_the_issuers_name_the_ingress_host(objects: list[dict[str, Any]]) -> None:
    (ingress,) = _of_kind(objects, "Ingress").values()
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    tls_hosts = {h for entry in ingress["spec"]["tls"] for h in entry["hosts"]}
    issuer = _k8s_env(objects, "gateway")["BROEN_GATEWAY_ISSUER"].value
    assert issuer is not None
    assert urlsplit(issuer).scheme == "https"
    assert {urlsplit(issuer).hostname} == hosts == tls_hosts
    assert _k8s_env(objects, "consent")["BROEN_CONSENT_RECEIPT_ISSUER"].value == issuer


def test_network_policies_admit_only_the_configured_callers(
    objects: list[dict[str, Any]],
) -> None:
    policies = list(_of_kind(objects, "NetworkPolicy").values())
    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert len(deny) == 1 and "ingress" not in deny[0]["spec"], "no default deny"
    # Who calls whom, from the URLs the components are configured with.
    callers: dict[str, set[str]] = {c: set() for c in COMPONENTS}
    for component in COMPONENTS:
        for name, variable in _k8s_env(objects, component).items():
            if name.endswith("_URL") and (variable.value or "").startswith("http://"):
                callers[str(urlsplit(variable.value).hostname)].add(component)
    assert callers["participant"] == {"gateway", "messaging"}  # a real call graph
    for component in COMPONENTS:
        (policy,) = [
            p
            for p in policies
            if p["spec"]["podSelector"].get("matchLabels", {}).get(COMPONENT_LABEL) == component
        ]
        rules = policy["spec"]["ingress"]
        if component == "gateway":
            assert all("from" not in rule for rule in rules), "the gateway takes anyone"
            continue
        admitted = {
            peer["podSelector"]["matchLabels"][COMPONENT_LABEL]
            for rule in rules
            for peer in rule["from"]
        }
        assert admitted == callers[component], component


def test_the_retention_cron_job_runs_only_with_rules_and_one_at_a_time(
    objects: list[dict[str, Any]],
) -> None:
    """Unsuspended without rules it would fail every night (`broen retention run` refuses);
    two runs at once would judge the same participants twice."""
    (cron_job,) = _of_kind(objects, "CronJob").values()
    env = {item["name"] for item in _container(cron_job).get("env", [])}
    rules = {
        "BROEN_PARTICIPANT_RETENTION_YEARS_BY_PROGRAMME",
        "BROEN_PARTICIPANT_RETENTION_DEFAULT_YEARS",
    }
    assert cron_job["spec"]["suspend"] is True or env & rules
    assert cron_job["spec"]["concurrencyPolicy"] == "Forbid"
    assert "--operator" in _container(cron_job)["args"]  # a container user has no name
