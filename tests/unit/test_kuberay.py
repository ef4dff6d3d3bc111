"""The KubeRay deployment in kuberay/, checked offline (no cluster, no network):

(a) the RayService validates against KubeRay v1.7.0's CRD schema (tests/specs), made strict the
    way `kubectl apply` is (unknown fields rejected), and its pod templates against Kubernetes';
(b) every manifest of a built-in kind validates against Kubernetes' schemas (kubernetes-validate);
(c) serveConfigV2, deployments/configs/gke.yaml and local.yaml validate as Ray Serve configs;
(d) serveConfigV2 and gke.yaml are what deployments/configs/generate.py makes of the router config;
(e) the structure the design asks for: head without CPUs, in-tree autoscaling, GPU groups that fit
    their GKE machine types and hold every vLLM deployment, one pinned image, keys only from the
    Secret, the ports and labels monitoring relies on, Workload Identity, a complete kustomization.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema
import kubernetes_validate
import pytest
import ray
import yaml
from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

from app.config import parse_config
from deployments.configs import generate
from deployments.configs.profiles import router_config, serve_env_file

ROOT = Path(__file__).resolve().parents[2]
KUBERAY = ROOT / "kuberay"
CRD_SCHEMA = ROOT / "tests" / "specs" / "kuberay-rayservice-crd.json"
K8S_VERSION = "1.31"  # the oldest Kubernetes the manifests must apply to
RAY_VERSION = "2.60.0"
BASE_IMAGE = f"rayproject/ray-llm:{RAY_VERSION}-py311-cu128"
NOT_APPLIED = {"kustomization.yaml", "secret.example.yaml"}  # manifests kustomization.yaml leaves out
CRD_KINDS = {"RayService", "PodMonitor", "PrometheusRule"}  # not built in: (a) covers RayService
KEYS_SECRET = "hybrid-router-keys"
ENV_CONFIGMAP = "hybrid-router-env"
GIB = 2**30


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def manifests() -> list[Path]:
    return sorted(p for p in KUBERAY.rglob("*") if p.suffix in (".yaml", ".yml"))


def rel(path: Path) -> str:
    return path.relative_to(KUBERAY).as_posix()


def one(kind: str, path: str) -> dict[str, Any]:
    (doc,) = [d for d in docs(KUBERAY / path) if d["kind"] == kind]
    return doc


def pod_spec(group: dict[str, Any]) -> dict[str, Any]:
    return {"nodeSelector": {}, "tolerations": [], "volumes": [], **group["template"]["spec"]}


def ray_container(group: dict[str, Any]) -> dict[str, Any]:
    return group["template"]["spec"]["containers"][0]  # KubeRay runs Ray in the first container


RAYSERVICE = one("RayService", "rayservice.yaml")
CLUSTER = RAYSERVICE["spec"]["rayClusterConfig"]
GROUPS = {"head": CLUSTER["headGroupSpec"], **{g["groupName"]: g for g in CLUSTER["workerGroupSpecs"]}}
GPU_GROUPS = {
    n: g for n, g in GROUPS.items() if "cloud.google.com/gke-accelerator" in pod_spec(g)["nodeSelector"]
}


# --- (a) the KubeRay CRD ---------------------------------------------------------------------------
def crd_json_schema(node: Any) -> Any:
    """A CRD's structural OpenAPI v3 schema as JSON Schema, read as the API server and kubectl do:
    ``nullable`` allows null; ``x-kubernetes-int-or-string`` (or ``format: int-or-string``) takes an
    integer or a string; an object with ``properties`` rejects any other field (kubectl's default
    --validate=strict) unless ``x-kubernetes-preserve-unknown-fields``; list types are kept for
    ``_list_type`` below. CEL rules (``x-kubernetes-validations``) need the server and are dropped."""
    if isinstance(node, list):
        return [crd_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: crd_json_schema(sub) for name, sub in value.items()}
        elif key in ("x-kubernetes-list-type", "x-kubernetes-list-map-keys"):
            out[key] = value
        elif not key.startswith("x-kubernetes-") and key != "nullable":
            out[key] = crd_json_schema(value)
    if node.get("x-kubernetes-int-or-string") or node.get("format") == "int-or-string":
        out.pop("type", None)
        out.pop("format", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if "properties" in out and "additionalProperties" not in out:
        if node.get("x-kubernetes-embedded-resource"):
            out["properties"] = {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                **out["properties"],
            }
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


def _list_type(validator: Any, list_type: str, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    """``set``: no two equal items; ``map``: no two items with the same key fields (defaults filled)."""
    if not validator.is_type(instance, "array") or list_type not in ("set", "map"):
        return
    names = schema.get("x-kubernetes-list-map-keys", [])
    defaults = {n: schema.get("items", {}).get("properties", {}).get(n, {}).get("default") for n in names}

    def key(item: Any) -> str:
        if list_type == "set" or not isinstance(item, dict):
            return json.dumps(item, sort_keys=True)
        return json.dumps([item.get(n, defaults[n]) for n in names])

    seen = [key(item) for item in instance]
    for dupe in sorted({k for k in seen if seen.count(k) > 1}):
        yield jsonschema.ValidationError(f"duplicate {list_type} entry {dupe} (keys {names or 'the items'})")


CRDValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"x-kubernetes-list-type": _list_type}
)


@pytest.fixture(scope="module")
def crd_validator() -> Any:
    spec = json.loads(CRD_SCHEMA.read_text(encoding="utf-8"))
    assert spec["x-source"]["crd"] == "rayservices.ray.io" and "v1.7.0" in spec["x-source"]["file"]
    schema = crd_json_schema(spec["openAPIV3Schema"])
    CRDValidator.check_schema(schema)
    return CRDValidator(schema)


def crd_errors(validator: Any, doc: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_rayservice_validates_against_the_kuberay_crd(crd_validator: Any) -> None:
    assert RAYSERVICE["apiVersion"] == "ray.io/v1"
    assert crd_errors(crd_validator, RAYSERVICE) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["spec"]["rayClusterConfig"]["headGroupSpec"].update(rayStartParam={}), "rayStartParam"),
        (
            lambda d: d["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].update(maxReplicas="6"),
            "not of type",
        ),
        (lambda d: d["spec"]["rayClusterConfig"]["autoscalerOptions"].update(upscalingMode="Fast"), "Fast"),
        (
            lambda d: ray_container(d["spec"]["rayClusterConfig"]["headGroupSpec"])["ports"].append(
                {"name": "serve2", "containerPort": 8000}
            ),
            'duplicate map entry [8000, "TCP"]',
        ),
        (lambda d: d["spec"].pop("rayClusterConfig"), "'rayClusterConfig' is a required property"),
    ],
    ids=["unknown-field", "wrong-type", "not-in-enum", "duplicate-port", "missing-required"],
)
def test_the_crd_check_catches_mistakes(crd_validator: Any, change: Any, expected: str) -> None:
    broken = copy.deepcopy(RAYSERVICE)
    change(broken)
    assert any(expected in e for e in crd_errors(crd_validator, broken)), crd_errors(crd_validator, broken)


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        ({"type": "string", "nullable": True}, [None, "x"], [1]),
        (
            {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            [1, "1"],
            [1.5],
        ),
        ({"type": "string", "format": "int-or-string"}, [1, "50%"], [True]),
        ({"type": "object", "properties": {"a": {"type": "string"}}}, [{"a": "x"}], [{"b": "x"}]),
        ({"type": "object", "properties": {}, "x-kubernetes-preserve-unknown-fields": True}, [{"b": 1}], []),
        (
            {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            [["a", "b"]],
            [["a", "a"]],
        ),
    ],
    ids=["nullable", "int-or-string", "int-or-string-format", "strict-object", "preserve-unknown", "set"],
)
def test_crd_schema_conversion(schema: dict[str, Any], good: list[Any], bad: list[Any]) -> None:
    validator = CRDValidator(crd_json_schema(schema))
    assert [v for v in good if not validator.is_valid(v)] == []
    assert [v for v in bad if validator.is_valid(v)] == []


def test_int_or_string_quantities_take_both(crd_validator: Any) -> None:
    doc = copy.deepcopy(RAYSERVICE)
    ray_container(doc["spec"]["rayClusterConfig"]["headGroupSpec"])["resources"]["limits"].update(
        cpu=2, memory="8Gi"
    )
    assert crd_errors(crd_validator, doc) == []
    ray_container(doc["spec"]["rayClusterConfig"]["headGroupSpec"])["resources"]["limits"]["memory"] = "8 GB"
    assert crd_errors(crd_validator, doc)


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_pod_templates_validate_against_kubernetes(group: str) -> None:
    """The CRD embeds the PodTemplateSpec of the Kubernetes it was built with; check ours too."""
    template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": group},
        "template": GROUPS[group]["template"],
    }
    kubernetes_validate.validate(template, K8S_VERSION, strict=True)


# --- (b) built-in kinds ----------------------------------------------------------------------------
BUILTIN = [
    (rel(p), i, d)
    for p in manifests()
    if p.name != "kustomization.yaml"
    for i, d in enumerate(docs(p))
    if d["kind"] not in CRD_KINDS
]


@pytest.mark.parametrize(
    ("path", "index", "doc"), BUILTIN, ids=[f"{p}#{i}-{d['kind']}" for p, i, d in BUILTIN]
)
def test_builtin_kinds_validate_against_kubernetes(path: str, index: int, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kubernetes_validate_has_the_pinned_version() -> None:
    """It validates against the newest schemas not newer than the version asked for: ask for one it has."""
    assert K8S_VERSION in {v.rsplit(".", 1)[0] for v in kubernetes_validate.utils.all_versions()}


def test_every_manifest_kind_is_checked() -> None:
    kinds = {d["kind"] for p in manifests() if p.name != "kustomization.yaml" for d in docs(p)}
    assert {
        "RayService",
        "ServiceAccount",
        "ConfigMap",
        "Secret",
        "StatefulSet",
        "Service",
        "NetworkPolicy",
    } <= kinds
    assert {d["kind"] for _, _, d in BUILTIN} == kinds - CRD_KINDS


def test_the_kubernetes_check_catches_mistakes() -> None:
    secret = copy.deepcopy(one("Secret", "secret.example.yaml"))
    secret["stringdata"] = secret.pop("stringData")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(secret, K8S_VERSION, strict=True)


# --- (c) Ray Serve configs -------------------------------------------------------------------------
def serve_config_v2() -> dict[str, Any]:
    return yaml.safe_load(RAYSERVICE["spec"]["serveConfigV2"])


SERVE_CONFIGS = {
    "rayservice": serve_config_v2,
    "gke.yaml": lambda: yaml.safe_load(generate.GKE_SERVE_CONFIG.read_text(encoding="utf-8")),
    "local.yaml": lambda: yaml.safe_load((generate.CONFIGS / "local.yaml").read_text(encoding="utf-8")),
}


@pytest.mark.parametrize("name", sorted(SERVE_CONFIGS))
def test_serve_configs_validate_with_ray(name: str) -> None:
    config = SERVE_CONFIGS[name]()
    ServeDeploySchema.model_validate(config)
    # Ray's schemas let unknown keys through: a misspelt one would be ignored silently.
    assert set(config) <= set(ServeDeploySchema.model_fields)
    for app in config["applications"]:
        assert set(app) <= set(ServeApplicationSchema.model_fields)


def test_gke_and_local_serve_the_same_application_on_the_same_port() -> None:
    local, gke = SERVE_CONFIGS["local.yaml"](), SERVE_CONFIGS["gke.yaml"]()
    for key in ("proxy_location", "http_options"):
        assert gke[key] == local[key]
    shape = [{k: a[k] for k in ("name", "route_prefix", "import_path")} for a in local["applications"]]
    assert [{k: a[k] for k in ("name", "route_prefix", "import_path")} for a in gke["applications"]] == shape
    assert gke["http_options"]["port"] == 8000


# --- (d) generated, never hand-kept ----------------------------------------------------------------
def test_generated_files_are_up_to_date() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "deployments.configs.generate", "--check"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr


def test_serve_config_v2_is_the_generated_config() -> None:
    want = generate.serve_config("gke")
    assert RAYSERVICE["spec"]["serveConfigV2"] == generate.dump(want)
    assert serve_config_v2() == want == SERVE_CONFIGS["gke.yaml"]()
    assert want["applications"][0]["args"] == {"config": router_config("gke")}


def test_the_inline_router_config_is_the_gke_profile() -> None:
    (app,) = serve_config_v2()["applications"]
    config = parse_config(app["args"]["config"], source="kuberay/rayservice.yaml serveConfigV2")
    assert (
        config.serving.engine == "vllm"
        and config.ledger.backend == "redis"
        and config.cache.backend == "redis"
    )
    assert set(config.serving.vllm.models) == {
        n for n, m in config.models.items() if config.providers[m.provider].kind == "self_hosted"
    }


@pytest.fixture
def copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """generate.py pointed at copies of the two generated files."""
    gke, rayservice = tmp_path / "gke.yaml", tmp_path / "rayservice.yaml"
    shutil.copy(generate.GKE_SERVE_CONFIG, gke)
    shutil.copy(generate.RAYSERVICE, rayservice)
    monkeypatch.setattr(generate, "GKE_SERVE_CONFIG", gke)
    monkeypatch.setattr(generate, "RAYSERVICE", rayservice)
    monkeypatch.setattr(generate, "PROJECT_ROOT", tmp_path)
    return gke, rayservice


def test_check_fails_on_a_hand_edit_and_generate_repairs_it(copies: tuple[Path, Path]) -> None:
    gke, rayservice = copies
    edited = rayservice.read_text().replace("target_ongoing_requests: 16", "target_ongoing_requests: 17", 1)
    assert edited != rayservice.read_text()
    rayservice.write_text(edited)
    gke.write_text(gke.read_text() + "# a stray line\n")
    assert generate.main(["--check"]) == 1
    assert rayservice.read_text() == edited  # --check writes nothing
    assert generate.main([]) == 0 and generate.main(["--check"]) == 0
    assert rayservice.read_text() == (KUBERAY / "rayservice.yaml").read_text()


def test_generate_needs_both_markers(copies: tuple[Path, Path]) -> None:
    _, rayservice = copies
    rayservice.write_text(rayservice.read_text().replace(generate.END_MARKER, "# the end"))
    with pytest.raises(ValueError, match="END serveConfigV2"):
        generate.main(["--check"])


# --- (e) structure ---------------------------------------------------------------------------------
class Machine(NamedTuple):
    vcpus: int
    memory_gb: int  # as GCE lists it; read as 10^9 bytes, the smaller reading
    gpus: int


MACHINES = {"g2-standard-8": Machine(8, 32, 1), "g2-standard-24": Machine(24, 96, 2)}  # L4 machine types
# What GKE's own DaemonSets (kube-proxy, logging and metrics agents, the GPU device plugin, the
# Workload Identity metadata server...) request on a node, with room to spare.
DAEMONSET_CPU, DAEMONSET_MEMORY_GIB = 0.5, 1.0
ACCELERATORS = {"L4": "nvidia-l4"}  # Ray accelerator_type -> GKE's cloud.google.com/gke-accelerator


def gke_allocatable(machine: Machine) -> tuple[float, float]:
    """CPUs and GiB a GKE node leaves to pods (cloud.google.com/kubernetes-engine/docs/concepts/
    plan-node-sizes): CPU 6% of the first core, 1% of the next, 0.5% of the next 2, 0.25% above 4;
    memory 25% of the first 4 GiB, 20% of the next 4, 10% of the next 8, 6% of the next 112, 2%
    above 128, plus a 100 MiB eviction threshold."""
    cpu_tiers = [(1, 0.06), (1, 0.01), (2, 0.005), (float("inf"), 0.0025)]
    memory_tiers = [(4, 0.25), (4, 0.20), (8, 0.10), (112, 0.06), (float("inf"), 0.02)]

    def reserved(amount: float, tiers: list[tuple[float, float]]) -> float:
        total = 0.0
        for size, share in tiers:
            total += min(amount, size) * share
            amount = max(0.0, amount - size)
        return total

    memory_gib = machine.memory_gb * 1e9 / GIB
    return (
        machine.vcpus - reserved(machine.vcpus, cpu_tiers),
        memory_gib - reserved(memory_gib, memory_tiers) - 100 / 1024,
    )


def quantity(value: str | float) -> float:
    """A Kubernetes quantity as a number (CPUs, or bytes)."""
    match = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(value))
    assert match, f"unexpected quantity {value!r}"
    scale = {
        None: 1,
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
    }[match.group(2)]
    return float(match.group(1)) * scale


def machine_of(group: dict[str, Any]) -> Machine:
    return MACHINES[pod_spec(group)["nodeSelector"]["node.kubernetes.io/instance-type"]]


def test_the_head_runs_no_replicas() -> None:
    assert GROUPS["head"]["rayStartParams"]["num-cpus"] == "0"
    assert "cloud.google.com/gke-accelerator" not in pod_spec(GROUPS["head"])["nodeSelector"]


def test_in_tree_autoscaling_is_on() -> None:
    assert CLUSTER["enableInTreeAutoscaling"] is True and CLUSTER["autoscalerOptions"]
    for group in CLUSTER["workerGroupSpecs"]:
        assert (
            0 <= group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
        )


def test_a_cpu_group_for_the_ingress() -> None:
    cpu = [n for n in GROUPS if n != "head" and n not in GPU_GROUPS]
    assert cpu and all("nvidia.com/gpu" not in ray_container(GROUPS[n])["resources"]["limits"] for n in cpu)


@pytest.mark.parametrize("name", sorted(GPU_GROUPS))
def test_gpu_groups_land_on_l4_nodes_with_what_vllm_needs(name: str) -> None:
    group, spec, container = GPU_GROUPS[name], pod_spec(GPU_GROUPS[name]), ray_container(GPU_GROUPS[name])
    assert spec["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-l4"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    shm = [v["name"] for v in spec["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
    assert any(m["mountPath"] == "/dev/shm" and m["name"] in shm for m in container.get("volumeMounts", []))
    gpus = machine_of(group).gpus
    assert quantity(container["resources"]["limits"]["nvidia.com/gpu"]) == gpus
    assert quantity(container["resources"].get("requests", {}).get("nvidia.com/gpu", gpus)) == gpus


@pytest.mark.parametrize("name", sorted(GPU_GROUPS))
def test_gpu_pods_fit_their_machine_type(name: str) -> None:
    cpus, memory_gib = gke_allocatable(machine_of(GPU_GROUPS[name]))
    resources = ray_container(GPU_GROUPS[name])["resources"]
    for side in ("requests", "limits"):
        assert quantity(resources[side]["cpu"]) <= cpus - DAEMONSET_CPU, (side, cpus)
        assert quantity(resources[side]["memory"]) / GIB <= memory_gib - DAEMONSET_MEMORY_GIB, (
            side,
            memory_gib,
        )


def test_gpu_groups_hold_every_vllm_deployment() -> None:
    """Per tensor-parallel size (one replica's GPUs, all in one pod): the groups with that many
    GPUs per pod hold every replica at the models' maximum, and pay for no more than their minimum."""
    vllm = parse_config(router_config("gke")).serving.vllm
    assert vllm is not None
    need: dict[int, list[int]] = {}
    for name, model in vllm.models.items():
        assert ACCELERATORS[model.accelerator_type] == "nvidia-l4", name
        pd = model.disaggregation
        low, high = (
            (pd.prefill_replicas + pd.decode_replicas, pd.prefill_max_replicas + pd.decode_max_replicas)
            if pd
            else (model.min_replicas, model.max_replicas)
        )
        tp = model.tensor_parallel_size
        need.setdefault(tp, [0, 0])
        need[tp][0] += low * tp
        need[tp][1] += high * tp
    for tp, (low, high) in need.items():
        groups = [g for g in GPU_GROUPS.values() if machine_of(g).gpus == tp]
        assert groups, f"no GPU group with {tp} GPU(s) per pod"
        assert sum(g["maxReplicas"] for g in groups) * tp >= high
        assert sum(g["minReplicas"] for g in groups) * tp <= low


def test_one_image_everywhere_pinned_to_our_ray() -> None:
    images = {c["image"] for g in GROUPS.values() for c in g["template"]["spec"]["containers"]}
    assert len(images) == 1, images
    (image,) = images
    assert re.fullmatch(rf"[a-z0-9./-]+/hybrid-router:[0-9.]+-ray{re.escape(RAY_VERSION)}", image), image
    assert CLUSTER["autoscalerOptions"].get("image", image) == image
    assert ray.__version__ == CLUSTER["rayVersion"] == RAY_VERSION
    assert re.search(rf'"ray\[[a-z,]+\]=={re.escape(RAY_VERSION)}"', (ROOT / "pyproject.toml").read_text())
    dockerfile = (KUBERAY / "Dockerfile").read_text()
    assert f"ARG BASE_IMAGE={BASE_IMAGE}\nFROM ${{BASE_IMAGE}}\n" in dockerfile
    assert f"-t {image} ." in dockerfile  # the documented build makes the image the RayService runs


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def test_every_ray_process_on_gke_runs_serve_in_the_measured_ingress_mode() -> None:
    """The RayService's pods start Ray with the same Serve ingress mode as `make run` and the tests."""
    settings = one("ConfigMap", "configmap.yaml")["data"]
    assert serve_env_file() and {k: settings.get(k) for k in serve_env_file()} == serve_env_file()


def test_every_ray_container_gets_the_same_environment() -> None:
    """Serve may place a replica on any node that has room, so every node has every key."""
    envs = [(ray_container(g).get("env"), ray_container(g).get("envFrom")) for g in GROUPS.values()]
    assert all(e == envs[0] for e in envs)
    assert {"configMapRef": {"name": ENV_CONFIGMAP}} in envs[0][1]


def test_keys_come_from_the_secret_only() -> None:
    config = parse_config(router_config("gke"))
    secret_env = {p.api_key_env for p in config.providers.values() if p.api_key_env}
    secret_env |= {config.cost_rules.webhook.url_env} - {None}
    keys = one("Secret", "secret.example.yaml")["stringData"]
    assert keys and all(value == "" for value in keys.values())  # an example: no value, fake or real
    for name, entry in env_of(ray_container(GROUPS["head"])).items():
        assert "value" not in entry, f"{name}: a literal value in a container's env"
        ref = entry["valueFrom"]["secretKeyRef"]
        assert ref["name"] == KEYS_SECRET and ref["key"] in keys
        assert ref.get("optional") is True  # a missing key makes a provider unavailable, not a pod fail
    assert secret_env <= set(env_of(ray_container(GROUPS["head"])))
    settings = one("ConfigMap", "configmap.yaml")["data"]
    needed = {p.project_env for p in config.providers.values() if p.project_env}
    assert needed | {
        config.ledger.redis_url_env,
        config.cache.redis_url_env,
        "LOG_LEVEL",
        "ROUTER_LOG_DIR",
    } <= set(settings)
    assert not set(settings) & secret_env


KEY_PATTERNS = [
    r"sk-[A-Za-z0-9_-]{20,}",
    r"sk-ant-[A-Za-z0-9_-]{10,}",
    r"AIza[0-9A-Za-z_-]{35}",
    r"hf_[A-Za-z0-9]{30,}",
    r"hooks\.slack\.com/services/\w",
    r"-----BEGIN [A-Z ]*PRIVATE KEY",
]


@pytest.mark.parametrize(
    "path", sorted(rel(p) for p in KUBERAY.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
)
def test_no_key_values_in_kuberay(path: str) -> None:
    text = (KUBERAY / path).read_text(encoding="utf-8")
    assert not [p for p in KEY_PATTERNS if re.search(p, text)]


def test_ports_for_serve_and_metrics() -> None:
    for name, group in GROUPS.items():
        ports = {p["name"]: p["containerPort"] for p in ray_container(group)["ports"]}
        assert (ports.get("serve"), ports.get("metrics")) == (8000, 8080), name
        assert group["rayStartParams"].get("metrics-export-port") == "8080", name
    (endpoint,) = one("PodMonitor", "monitoring/podmonitor.yaml")["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    assert serve_config_v2()["http_options"]["port"] == 8000


def test_the_podmonitor_selects_every_ray_pod() -> None:
    selector = one("PodMonitor", "monitoring/podmonitor.yaml")["spec"]["selector"]["matchLabels"]
    ours = {k: v for k, v in selector.items() if not k.startswith("ray.io/")}  # ray.io/*: KubeRay sets them
    assert ours == {"app.kubernetes.io/name": "hybrid-router"} and selector.get("ray.io/is-ray-node") == "yes"
    for name, group in GROUPS.items():
        assert ours.items() <= group["template"]["metadata"]["labels"].items(), name


def test_workload_identity() -> None:
    account = one("ServiceAccount", "serviceaccount.yaml")
    email = account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    assert re.fullmatch(
        r"[a-z][-a-z0-9]{4,28}[a-z0-9]@[a-z][-a-z0-9]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com", email
    )
    for name, group in GROUPS.items():
        assert pod_spec(group).get("serviceAccountName") == account["metadata"]["name"], name


def test_redis_is_where_redis_url_points_and_lets_the_router_in() -> None:
    url = one("ConfigMap", "configmap.yaml")["data"]["REDIS_URL"]
    service, deployment, policy = (one(k, "redis.yaml") for k in ("Service", "StatefulSet", "NetworkPolicy"))
    (port,) = service["spec"]["ports"]
    assert url == f"redis://{service['metadata']['name']}:{port['port']}/0"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    (rule,) = policy["spec"]["ingress"]
    allowed = [f["podSelector"]["matchLabels"] for f in rule["from"]]
    for group in GROUPS.values():
        assert any(a.items() <= group["template"]["metadata"]["labels"].items() for a in allowed)


def test_redis_keeps_its_data_on_a_persistent_volume() -> None:
    """Spend must survive the Redis pod being rescheduled: append-only file on a PVC, not an emptyDir."""
    redis = one("StatefulSet", "redis.yaml")
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes" and args[args.index("--dir") + 1] == "/data"
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/data"]
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == mount["name"]
    assert not any("emptyDir" in v for v in redis["spec"]["template"]["spec"].get("volumes", []))
    assert redis["spec"]["replicas"] == 1
    assert redis["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"


def test_kustomization_applies_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERAY / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == "production"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert set(listed) == {rel(p) for p in manifests()} - NOT_APPLIED
    for path in manifests():
        for doc in docs(path) if path.name != "kustomization.yaml" else []:
            assert doc["metadata"].get("namespace", "production") == "production", rel(path)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders_it() -> None:
    run = subprocess.run(
        ["kubectl", "kustomize", str(KUBERAY)], check=False, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    rendered = [d for d in yaml.safe_load_all(run.stdout) if d]
    assert sorted(d["kind"] for d in rendered) == sorted(
        d["kind"] for p in manifests() if rel(p) not in NOT_APPLIED for d in docs(p)
    )
    (service,) = [d for d in rendered if d["kind"] == "RayService"]
    assert service["spec"]["serveConfigV2"] == RAYSERVICE["spec"]["serveConfigV2"]
