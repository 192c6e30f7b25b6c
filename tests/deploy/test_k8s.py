"""Static checks of the container image and the Kubernetes / KServe manifests (no docker daemon, no cluster).

Built-in kinds are validated against the Kubernetes OpenAPI schemas in their strict form (unknown fields
are errors) that ``kubernetes-validate`` ships; ``kubectl kustomize`` renders the kustomization offline when
kubectl is installed (``kubectl --dry-run=client`` would need an API server for discovery: none here). The
InferenceService is checked against a schema made from KServe's v1beta1 API (PredictorSpec = a PodSpec
plus ComponentExtensionSpec), with the PodSpec and Container parts taken from the same Kubernetes schemas.
Then the manifests are checked against each other and against the runtime (ports, probes, settings).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30"  # the oldest Kubernetes still in common support these manifests target


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_docs() -> dict[str, dict]:
    docs = {}
    for name in ("deployment.yaml", "service.yaml", "hpa.yaml"):
        (doc,) = documents(DEPLOY / "k8s" / name)
        docs[doc["kind"]] = doc
    return docs


@pytest.mark.parametrize("name", ["deployment.yaml", "service.yaml", "hpa.yaml"])
def test_builtin_kinds_validate_strictly(name):
    for doc in documents(DEPLOY / "k8s" / name):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_a_typo_is_caught_by_the_strict_schema():
    """The check can fail: an unknown field (a typo'd probe) is an error."""
    deployment = copy.deepcopy(k8s_docs()["Deployment"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readynessProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomization_renders_offline_and_validates():
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "k8s")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    rendered = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    assert sorted(doc["kind"] for doc in rendered) == ["Deployment", "HorizontalPodAutoscaler", "Service"]
    for doc in rendered:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        if doc["kind"] == "Deployment":
            assert doc["spec"]["template"]["spec"]["containers"][0]["image"] == "onnxfn-serve:0.1.0"


def settings_env_names() -> set[str]:
    """Every ``ONNXFN_*`` variable the runtime reads (the manifests may set no other)."""
    names = set()
    for path in (ROOT / "runtime").glob("*.py"):
        names |= set(re.findall(r"\"(ONNXFN_[A-Z0-9_]+)\"", path.read_text()))
    return names


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def check_container(container: dict, port: int | str) -> dict[str, dict]:
    """What every onnxfn container must get right; returns its env."""
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["port"] == port
    assert container["livenessProbe"]["httpGet"]["port"] == port
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    writable = [path for path, m in mounts.items() if not m.get("readOnly")]
    assert writable == ["/tmp"]  # the image writes nowhere else
    env = env_of(container)
    unknown = {name for name in env if name.startswith("ONNXFN_")} - settings_env_names()
    assert not unknown, f"settings the runtime does not read: {unknown}"
    return env


def test_deployment_service_and_hpa_fit_together():
    docs = k8s_docs()
    deployment, service, hpa = docs["Deployment"], docs["Service"], docs["HorizontalPodAutoscaler"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in ports
    assert ports["http"] == 8080 == int(pod["metadata"]["annotations"]["prometheus.io/port"])
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    env = check_container(container, "http")
    assert env["ONNXFN_METRICS_PUBLIC"]["value"] == "true"  # else Prometheus would need a key
    # The kubelet's SIGKILL comes after the whole drain: readiness 503 for the delay, then the shutdown bound.
    drain = float(env["ONNXFN_DRAIN_DELAY"]["value"]) + float(env["ONNXFN_SHUTDOWN_TIMEOUT"]["value"])
    assert pod["spec"]["terminationGracePeriodSeconds"] > drain
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == image_user()
    models = next(m for m in container["volumeMounts"] if m["name"] == "models")
    assert models["mountPath"] == env["ONNXFN_MODEL_DIR"]["value"] == image_env()["ONNXFN_MODEL_DIR"]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


# -- KServe ---------------------------------------------------------------------------------------------

# ComponentExtensionSpec (pkg/apis/serving/v1beta1/component.go, KServe 0.1x): what a predictor adds to a PodSpec.
_EXTENSION = {
    "minReplicas": {"type": "integer", "minimum": 0},
    "maxReplicas": {"type": "integer", "minimum": 0},
    "scaleTarget": {"type": "integer", "minimum": 1},
    "scaleMetric": {"enum": ["cpu", "memory", "concurrency", "rps"]},
    "scaleMetricType": {"enum": ["Utilization", "AverageValue"]},
    "containerConcurrency": {"type": "integer", "minimum": 0},
    "timeout": {"type": "integer", "minimum": 1},
    "canaryTrafficPercent": {"type": "integer", "minimum": 0, "maximum": 100},
    "logger": {"type": "object"},
    "batcher": {"type": "object"},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    "deploymentStrategy": {"$ref": "/api/_definitions.json#/$defs/io.k8s.api.apps.v1.DeploymentStrategy"},
}


def inference_service_schema() -> tuple[dict, object]:
    """A JSON schema for an InferenceService with a custom predictor, and the registry resolving its refs."""
    from referencing import Registry, Resource

    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    folder = base / f"v{K8S_VERSION}.0-local-strict"  # the same schemas the built-in kinds are checked with
    podspec = json.loads((folder / "podspec-v1.json").read_text())
    predictor = {
        "type": "object",
        "properties": {**podspec["properties"], **_EXTENSION},
        "required": ["containers"],
        "additionalProperties": False,
    }
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://kubernetes.io/api/inferenceservice-serving-v1beta1.json",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "serving.kserve.io/v1beta1"},
            "kind": {"const": "InferenceService"},
            "metadata": {
                "allOf": [
                    {"$ref": "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
                ],
                "required": ["name"],
                # KServe: lower-case alphanumerics and '-', starting with a letter
                "properties": {"name": {"pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$"}},
            },
            "spec": {
                "type": "object",
                "required": ["predictor"],
                "additionalProperties": False,
                "properties": {
                    "predictor": predictor,
                    "transformer": {"type": "object"},
                    "explainer": {"type": "object"},
                },
            },
        },
    }
    definitions = Resource.from_contents(json.loads((folder / "_definitions.json").read_text()))
    return schema, definitions @ Registry()


def validate_inference_service(doc: dict) -> None:
    import jsonschema

    schema, registry = inference_service_schema()
    jsonschema.Draft202012Validator(schema, registry=registry).validate(doc)


def test_inference_service_matches_kserves_api():
    import jsonschema

    (isvc,) = documents(DEPLOY / "kserve" / "inferenceservice.yaml")
    validate_inference_service(isvc)
    for broken in ("containerz", "scaleMetric"):  # the schema catches a typo and a bad enum value
        doc = copy.deepcopy(isvc)
        if broken == "scaleMetric":
            doc["spec"]["predictor"]["scaleMetric"] = "gpu"
        else:
            doc["spec"]["predictor"]["containerz"] = doc["spec"]["predictor"].pop("containers")
        with pytest.raises(jsonschema.ValidationError):
            validate_inference_service(doc)
    doc = copy.deepcopy(isvc)
    doc["spec"]["predictor"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(jsonschema.ValidationError):  # the container part is Kubernetes' strict schema
        validate_inference_service(doc)


def test_inference_service_runs_onnxfn_with_the_v2_protocol():
    (isvc,) = documents(DEPLOY / "kserve" / "inferenceservice.yaml")
    predictor = isvc["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"  # KServe finds the predictor by this name
    port = container["ports"][0]["containerPort"]
    assert port == 8080
    env = check_container(container, port)
    assert env["PROTOCOL"]["value"] == "v2"  # KServe's custom-predictor protocol switch
    # KServe's storage initializer downloads STORAGE_URI into /mnt/models; onnxfn serves that.
    assert env["STORAGE_URI"]["value"].startswith("s3://")
    assert env["ONNXFN_MODEL_DIR"]["value"] == "/mnt/models"
    assert predictor["securityContext"]["runAsUser"] == image_user()
    assert container["image"].split(":")[0] == "onnxfn-serve"
    assert predictor["minReplicas"] <= predictor["maxReplicas"]


# -- the image --------------------------------------------------------------------------------------------


def dockerfile() -> str:
    return (DEPLOY / "Dockerfile.serve").read_text()


def image_user() -> int:
    (user,) = re.findall(r"^USER (\d+):(\d+)$", dockerfile(), re.M)
    return int(user[0])


def image_env() -> dict[str, str]:
    block = re.search(r"^ENV (.+?)\n\n", dockerfile(), re.M | re.S).group(1)
    return dict(re.findall(r"([A-Z_]+)=(\S+)", block))


def test_serve_image_is_non_root_and_writes_only_to_tmp():
    text = dockerfile()
    assert image_user() >= 10000  # a numeric, non-root user (runAsNonRoot can verify a number)
    env = image_env()
    assert env["HOME"] == env["TMPDIR"] == "/tmp" and env["ONNXFN_CACHE_DIR"].startswith("/tmp/")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # bytecode compiled at build time instead
    assert "compileall" in text
    assert '"${wheel}[serve,aws]"' in text and "tensorflow" not in text.lower().replace(
        "never tensorflow", ""
    )
    (entry,) = re.findall(r"^ENTRYPOINT (.+)$", text, re.M)
    assert json.loads(entry)[:2] == ["onnxfn", "serve"] and "8080" in json.loads(entry)
    # Its own ignore file (BuildKit), not the Lambda image's .dockerignore that leaves out the CLI and client.
    lines = (DEPLOY / "Dockerfile.serve.dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for item in source.split():
            assert (ROOT / item).exists(), f"COPY {item}: not in the repository"
            assert item.rstrip("/") not in ignored, f"COPY {item}: excluded from the build context"
    # The Lambda image is another file, untouched.
    assert "public.ecr.aws/lambda/python" in (ROOT / "Dockerfile").read_text()


@pytest.mark.slow
def test_the_image_build_context_makes_a_wheel_with_the_serve_command(tmp_path):
    """The image's first stage, without Docker: the files it COPYs build a wheel with ``onnxfn serve``."""
    import sys
    import zipfile

    context = tmp_path / "src"
    context.mkdir()
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile(), re.M):
        for item in source.split():
            src = ROOT / item
            if src.is_dir():
                shutil.copytree(src, context / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy(src, context / item)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (wheel,) = (tmp_path / "wheels").glob("onnxfn-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        metadata = next(z.read(n).decode() for n in names if n.endswith("METADATA"))
    assert "onnxfn = onnxfn.cli:main" in entry_points
    assert {"onnxfn/cli.py", "onnxfn/runtime/serve.py", "onnxfn/runtime/_metrics.py"} <= names
    assert "Provides-Extra: serve" in metadata and "prometheus_client" in metadata.replace("-", "_")
