"""deploy/kubernetes: schema-valid manifests, shards wired to pod ordinals, generated PrometheusRule."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from exporter.config.model import load_config

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
K8S_VERSION = "1.30.0"


def resources() -> list[dict]:
    """The base as kustomize would emit it: listed resources plus the generated ConfigMap."""
    docs = [yaml.safe_load((K8S / r).read_text()) for r in KUSTOMIZATION["resources"]]
    for gen in KUSTOMIZATION["configMapGenerator"]:
        data = {Path(f).name: (K8S / f).read_text() for f in gen["files"]}
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
    return docs


def by_kind(kind: str) -> dict:
    (doc,) = [d for d in resources() if d["kind"] == kind]
    return doc


@pytest.mark.parametrize("kind", ["Service", "StatefulSet", "ConfigMap"])
def test_builtin_manifests_validate_against_kubernetes_schemas(kind: str):
    doc = by_kind(kind)
    doc.setdefault("metadata", {})["namespace"] = KUSTOMIZATION["namespace"]
    # validate() raises ValidationError on any schema violation; it returns the schema version used.
    assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True).startswith("1.30")


def test_invalid_manifest_is_caught_by_the_validator():
    doc = by_kind("StatefulSet")
    doc["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_shards_follow_pod_ordinals_and_count_matches_replicas():
    sts = by_kind("StatefulSet")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert int(env["SHARD_COUNT"]["value"]) == sts["spec"]["replicas"]
    assert "--shard.index=$(SHARD_INDEX)" in container["args"]
    assert "--shard.count=$(SHARD_COUNT)" in container["args"]


def test_pod_hardening_probes_and_state_volume():
    sts = by_kind("StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert c["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert c["resources"]["requests"] and c["resources"]["limits"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
    assert "--storage.path=/var/lib/qualitygate/state.db" in c["args"]
    assert mounts["state"] == "/var/lib/qualitygate"
    assert mounts["trackers"] == "/etc/qualitygate/trackers"
    assert any(a.startswith("--config.watch-interval=") for a in c["args"]), "ConfigMap edits reload without restart"


def test_service_and_servicemonitor_agree():
    svc, sm, sts = by_kind("Service"), by_kind("ServiceMonitor"), by_kind("StatefulSet")
    assert svc["spec"]["clusterIP"] == "None"
    port_name = svc["spec"]["ports"][0]["name"]
    assert sm["spec"]["endpoints"][0]["port"] == port_name
    assert sts["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"] == port_name
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert set(svc["spec"]["selector"].items()) <= set(labels.items())
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]


def test_tracker_configmap_files_are_valid_configs():
    for gen in KUSTOMIZATION["configMapGenerator"]:
        for f in gen["files"]:
            assert load_config(str(K8S / f)).gates


def test_prometheusrule_is_generated_from_rules_without_drift():
    proc = subprocess.run([sys.executable, str(K8S / "generate.py"), "--check"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is installed by scripts/system-deps.sh")
def test_prometheusrule_groups_pass_promtool(tmp_path: Path):
    rule = by_kind("PrometheusRule")
    path = tmp_path / "groups.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    proc = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [r.get("alert") for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert "QualityGateStale" in names and "QualityGateExporterDown" in names
