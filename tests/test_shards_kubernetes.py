"""The StatefulSet names every shard by its stable pod name behind its headless Service, with the shared secret."""

from __future__ import annotations

import yaml

from conftest import ROOT

K8S = ROOT / "deploy" / "kubernetes"


def test_peers_template_matches_the_pods_and_the_headless_service() -> None:
    sts = yaml.safe_load((K8S / "statefulset.yaml").read_text())
    service = yaml.safe_load((K8S / "service.yaml").read_text())
    assert service["spec"]["clusterIP"] == "None", "pod names resolve only behind a headless Service"
    pod, svc = sts["metadata"]["name"], sts["spec"]["serviceName"]
    assert svc == service["metadata"]["name"]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    args = dict(a.split("=", 1) for a in container["args"] if a.startswith("--"))
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http-metrics")
    assert args["--shard.peers"] == f"http://{pod}-{{index}}.{svc}:{port}"
    mount = next(m for m in container["volumeMounts"] if args["--shard.secret-file"].startswith(m["mountPath"] + "/"))
    volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert mount["readOnly"] and volume["secret"]["secretName"] == "qualitygate-shard"
