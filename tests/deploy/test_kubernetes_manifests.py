"""The Kubernetes manifests in deploy/kubernetes: valid against the Kubernetes API schemas,
and consistent with what Loupe itself reads (its settings, its CLI options, its routes)."""

from __future__ import annotations

import copy
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
import typer
import yaml

from loupe.cli import app as cli_app
from service.app import create_app
from service.settings import ServiceSettings

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
SCHEMA_VERSION = "1.30"
"""The oldest Kubernetes release the manifests are checked against (still in support by the
large managed offerings)."""

Resource = dict[str, Any]


def read_yaml(path: Path) -> Iterator[Any]:
    yield from (doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None)


def kustomization(folder: Path) -> dict[str, Any]:
    (document,) = read_yaml(folder / "kustomization.yaml")
    return dict(document)


def base_resources() -> list[Resource]:
    """The base's resources as written, before kustomize names and labels them."""
    listed = kustomization(KUBERNETES / "base")["resources"]
    return [doc for name in listed for doc in read_yaml(KUBERNETES / "base" / name)]


def settings_literals(folder: str = "base") -> dict[str, str]:
    """The settings a kustomization's ConfigMap generator writes (an overlay's: what it
    merges into the base's)."""
    (generator,) = kustomization(KUBERNETES / folder)["configMapGenerator"]
    return dict(literal.split("=", 1) for literal in generator["literals"])


def find(resources: list[Resource], kind: str, name: str) -> Resource:
    matches = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def with_gpu_patches(resources: list[Resource]) -> list[Resource]:
    """The base with the gpu overlay's JSON patches applied to their targets."""
    patched = copy.deepcopy(resources)
    for patch in kustomization(KUBERNETES / "gpu")["patches"]:
        target = find(patched, patch["target"]["kind"], patch["target"]["name"])
        (operations,) = read_yaml(KUBERNETES / "gpu" / patch["path"])
        patched[patched.index(target)] = jsonpatch.apply_patch(target, operations)
    return patched


def validation_errors(resources: list[Resource]) -> list[str]:
    errors = []
    for resource in resources:
        try:
            kubernetes_validate.validate(resource, SCHEMA_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path)
            errors.append(
                f"{resource['kind']} {resource['metadata']['name']}: {where}: {exc.message}"
            )
    return errors


def pod_spec(resource: Resource) -> dict[str, Any]:
    return dict(resource["spec"]["template"]["spec"])


def container(resource: Resource, name: str) -> dict[str, Any]:
    spec = pod_spec(resource)
    (found,) = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name]
    return dict(found)


def environment(c: dict[str, Any]) -> dict[str, str]:
    """A container's environment: the settings ConfigMap, then its own values (which win)."""
    values = {}
    if any(source["configMapRef"]["name"] == "loupe-settings" for source in c.get("envFrom", [])):
        values.update(settings_literals())
    for variable in c.get("env", []):
        values[variable["name"]] = variable.get("value", "<from a secret>")
    return values


def cli_command(*path: str) -> Any:
    """A ``loupe`` subcommand as click sees it (typer's vendored click)."""
    command: Any = typer.main.get_command(cli_app)
    for name in path:
        command = command.commands[name]
    return command


def cli_envvars(command: Any) -> set[str]:
    return {p.envvar for p in command.params if isinstance(p.envvar, str)}


def shell_command_line(c: dict[str, Any]) -> list[str]:
    """The words a container's ``sh -c`` runs after ``exec``, with its variables filled in."""
    assert c["command"] == ["sh", "-c"]
    script = c["args"][0].split("exec ", 1)[1]
    for name, value in environment(c).items():
        script = script.replace(f'"${name}"', shlex.quote(value))
    return shlex.split(script)


def test_every_resource_is_valid_against_the_kubernetes_schemas() -> None:
    resources = base_resources()
    assert {r["kind"] for r in resources} == {
        "PersistentVolumeClaim", "Job", "Deployment", "Service", "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }  # fmt: skip
    assert validation_errors(resources) == []
    assert validation_errors(with_gpu_patches(resources)) == []


def test_the_validation_catches_a_misspelt_field() -> None:
    broken = copy.deepcopy(base_resources())
    probe = container(find(broken, "Deployment", "loupe-api"), "api")
    probe["readinessProbe"]["httpGet"]["pathh"] = probe["readinessProbe"]["httpGet"].pop("path")
    assert len(validation_errors(broken)) == 1


def test_the_replicas_serve_the_built_index_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    resources = base_resources()
    deployment = find(resources, "Deployment", "loupe-api")
    api = container(deployment, "api")
    assert api["command"] == ["loupe", "serve"]
    for name in [n for n in os.environ if n.startswith("LOUPE_")]:
        monkeypatch.delenv(name)
    for name, value in environment(api).items():
        monkeypatch.setenv(name, value)
    settings = ServiceSettings()  # as the container reads its environment
    assert settings.read_only
    assert settings.host == "0.0.0.0"
    (port,) = api["ports"]
    assert port["containerPort"] == settings.port
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    index_mounts = [m for m in api["volumeMounts"] if settings.index.is_relative_to(m["mountPath"])]
    assert [m["readOnly"] for m in index_mounts] == [True]
    claim = volumes[index_mounts[0]["name"]]["persistentVolumeClaim"]
    assert claim["readOnly"] is True

    job = find(resources, "Job", "loupe-index-build")
    build = container(job, "index-build")
    words = shell_command_line(build)
    assert words[:3] == ["loupe", "index", "build"]
    context = cli_command("index", "build").make_context("build", words[3:])
    assert Path(context.params["out"]) == settings.index  # the version the replicas serve
    assert context.params["model"] == settings.encoder
    assert context.params["reranker"] == settings.reranker
    assert context.params["token_store"] and context.params["resume"]
    build_mounts = {m["mountPath"]: m for m in build["volumeMounts"]}
    assert settings.index.is_relative_to(index_mounts[0]["mountPath"])
    assert not build_mounts[index_mounts[0]["mountPath"]].get("readOnly", False)
    assert build_mounts[str(context.params["corpus"])]["readOnly"] is True
    job_claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in pod_spec(job)["volumes"] if "persistentVolumeClaim" in v}  # fmt: skip
    assert job_claims[build_mounts["/indexes"]["name"]] == claim["claimName"]


def test_every_setting_names_something_loupe_reads() -> None:
    serve_reads = {f"LOUPE_{field.upper()}" for field in ServiceSettings.model_fields}
    serve_reads |= cli_envvars(cli_command("serve"))
    build_reads = cli_envvars(cli_command("index", "build"))
    for name in settings_literals():
        assert name in serve_reads, f"{name} is not read by loupe serve"
    for name in settings_literals("qdrant"):  # the Job and the replicas both act on it
        assert name in serve_reads and name in build_reads, name
    resources = base_resources() + with_gpu_patches(base_resources())
    for deployment in [r for r in resources if r["kind"] == "Deployment"]:
        assert set(environment(container(deployment, "api"))) <= serve_reads
    for job in [r for r in resources if r["kind"] == "Job"]:
        own = {v["name"] for v in container(job, "index-build").get("env", [])}
        assert own <= build_reads, f"{own - build_reads} are not options of loupe index build"


def test_probes_and_scrape_path_are_routes_of_the_service() -> None:
    routes = set(create_app(ServiceSettings()).openapi()["paths"])
    deployment = find(base_resources(), "Deployment", "loupe-api")
    api = container(deployment, "api")
    probes = {
        api[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert probes == {"/ready", "/health"}
    assert probes <= routes
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in routes


def test_selectors_and_targets_point_at_the_api_pods() -> None:
    resources = base_resources()
    deployment = find(resources, "Deployment", "loupe-api")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [
        deployment["spec"]["selector"]["matchLabels"],
        find(resources, "Service", "loupe-api")["spec"]["selector"],
        find(resources, "PodDisruptionBudget", "loupe-api")["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= pod_labels.items()
    service_port = find(resources, "Service", "loupe-api")["spec"]["ports"][0]
    assert service_port["targetPort"] in {p["name"] for p in container(deployment, "api")["ports"]}
    target = find(resources, "HorizontalPodAutoscaler", "loupe-api")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "loupe-api")
    gpu = with_gpu_patches(resources)
    for kind, name, container_name in (
        ("Deployment", "loupe-api", "api"),
        ("Job", "loupe-index-build", "index-build"),
    ):
        patched = container(find(gpu, kind, name), container_name)
        assert patched["resources"]["limits"]["nvidia.com/gpu"] == 1
        own = {v["name"] for v in container(find(resources, kind, name), container_name)["env"]}
        assert own < set(environment(patched))  # the patch adds to the environment
        assert environment(patched)["LOUPE_DEVICE"] == "cuda"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("overlay", ["base", "gpu", "qdrant"])
def test_kustomize_renders_valid_resources(overlay: str) -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / overlay)],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    resources = list(yaml.safe_load_all(rendered))
    assert validation_errors(resources) == []
    (config_map,) = [r for r in resources if r["kind"] == "ConfigMap"]
    assert config_map["metadata"]["name"].startswith("loupe-settings-")  # hashed: rolls pods
    expected = settings_literals()
    if overlay == "qdrant":
        expected |= settings_literals("qdrant")
        assert "LOUPE_QDRANT_URL" in expected
    assert config_map["data"] == expected
    names = [
        source["configMapRef"]["name"]
        for r in resources if r["kind"] in ("Deployment", "Job")
        for c in pod_spec(r).get("initContainers", []) + pod_spec(r)["containers"]
        for source in c.get("envFrom", [])
    ]  # fmt: skip
    assert names and set(names) == {config_map["metadata"]["name"]}
    images = {c["image"] for r in resources if r["kind"] in ("Deployment", "Job")
              for c in pod_spec(r)["containers"]}  # fmt: skip
    assert images == {f"loupe:{'gpu' if overlay == 'gpu' else 'cpu'}"}
    for r in resources:
        assert r["metadata"]["labels"]["app.kubernetes.io/part-of"] == "loupe"
