"""Regenerate the JSON schemas under deploy/schemas/ (run by hand when moving to a new Kubernetes or KubeRay version;
deploy/check.py only reads the results, offline).

    python deploy/schemas/vendor.py kubernetes 1.34            # needs `pip install kubernetes-validate==1.37.0`
    python deploy/schemas/vendor.py kuberay v1.7.0 CRD_DIR     # CRD_DIR: a kuberay checkout's
                                                               # ray-operator/config/crd/bases at tag v1.7.0

Kubernetes: the `-strict` schema of each kind we render (unknown fields are errors, as with `kubectl apply`'s
default server-side field validation), made self-contained: only the definitions it reaches are copied.
KubeRay: each CRD's `openAPIV3Schema` (served version v1), descriptions dropped (they are 80% of the bytes and do not
take part in validation); deploy/check.py adds `additionalProperties: false` at load time, see there.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# kind -> kubernetes-validate file stem
K8S_KINDS = {
    "ConfigMap": "configmap-v1",
    "ServiceAccount": "serviceaccount-v1",
    "Role": "role-rbac-v1",
    "RoleBinding": "rolebinding-rbac-v1",
    "CronJob": "cronjob-batch-v1",
}
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
CRDS = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml",
        "RayCronJob": "ray.io_raycronjobs.yaml", "RayService": "ray.io_rayservices.yaml"}
PREFIX = "/api/_definitions.json#/$defs/"  # refs from a kind's file into _definitions.json
LOCAL = "#/$defs/"  # refs inside _definitions.json


def _refs(node, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            for prefix in (PREFIX, LOCAL):
                if ref.startswith(prefix):
                    out.add(ref[len(prefix):])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)


def _rewrite(node):
    if isinstance(node, dict):
        return {k: ("#/$defs/" + v[len(PREFIX):] if k == "$ref" and isinstance(v, str) and v.startswith(PREFIX)
                    else _rewrite(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def _closure(root, defs: dict) -> dict:
    todo: set[str] = set()
    _refs(root, todo)
    seen: dict = {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = defs[name]
        more: set[str] = set()
        _refs(defs[name], more)
        todo |= more - set(seen)
    return {k: seen[k] for k in sorted(seen)}


def vendor_kubernetes(version: str) -> None:
    import kubernetes_validate

    src = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}.0-local-strict"
    defs = json.loads((src / "_definitions.json").read_text())["$defs"]
    out = HERE / f"kubernetes-v{version}"
    out.mkdir(exist_ok=True)
    for kind, stem in {**K8S_KINDS, "ObjectMeta": None}.items():
        root = {"$ref": PREFIX + OBJECT_META} if stem is None else json.loads((src / f"{stem}.json").read_text())
        schema = _rewrite(dict(root))
        schema["$defs"] = _rewrite(_closure(root, defs))
        schema.pop("$id", None)
        (out / f"{kind.lower()}.json").write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        print(f"wrote {out / (kind.lower() + '.json')}")


def _strip(node):
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def vendor_kuberay(tag: str, crd_dir: str) -> None:
    import yaml

    out = HERE / f"kuberay-{tag}"
    out.mkdir(exist_ok=True)
    for kind, name in CRDS.items():
        raw = (Path(crd_dir) / name).read_bytes()
        crd = yaml.safe_load(raw)
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        schema = _strip(version["schema"]["openAPIV3Schema"])
        schema["x-source"] = {"repository": "ray-project/kuberay", "tag": tag,
                              "path": f"ray-operator/config/crd/bases/{name}",
                              "sha256": hashlib.sha256(raw).hexdigest()}
        (out / f"{kind.lower()}.json").write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        print(f"wrote {out / (kind.lower() + '.json')} from {name} ({hashlib.sha256(raw).hexdigest()[:12]})")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "kubernetes":
        vendor_kubernetes(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "kuberay":
        vendor_kuberay(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)
