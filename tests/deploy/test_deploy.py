"""deploy/: the kustomize overlays render and validate offline (deploy/check.py), everything the manifests reference
exists in the project, and the checker catches the mistakes it is there for. Fast, no network, no cluster."""

from __future__ import annotations

import copy
import importlib.util
import shlex
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("deploy_check", ROOT / "deploy" / "check.py")
check = importlib.util.module_from_spec(_spec)
sys.modules["deploy_check"] = check
_spec.loader.exec_module(check)

OVERLAYS = check.overlays()


def _jobs() -> list[tuple[str, dict]]:
    return [(p.name, obj) for p in sorted(check.JOBS.glob("*.yaml")) for obj in check.load_objects(p)]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: check.render(check.OVERLAYS / name) for name in OVERLAYS}


def _kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def test_overlays_exist():
    assert OVERLAYS == ["dev", "prod"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_the_checker(overlay):
    report = check.run([overlay], lint=False)
    assert report.ok(), "\n".join(report.problems)


def test_dockerfiles_lint_clean_and_images_consistent():
    report = check.Report()
    check.lint_dockerfiles(report)
    check.check_images(report)
    assert report.ok(), "\n".join(report.problems)


def test_overlay_shapes(rendered):
    dev, prod = (_kind(rendered[o], "RayCluster")[0]["spec"] for o in ("dev", "prod"))
    assert [g["groupName"] for g in dev["workerGroupSpecs"]] == ["decode"]  # CPU only
    assert [g["groupName"] for g in prod["workerGroupSpecs"]] == ["decode", "embed-gpu"]
    gpu = prod["workerGroupSpecs"][1]
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["rayStartParams"]["num-gpus"] == "1"
    assert prod["enableInTreeAutoscaling"] is True
    for spec in (dev, prod):
        for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            assert g["rayStartParams"]["metrics-export-port"] == "8080"
            c = g["template"]["spec"]["containers"][0]
            assert c["image"] in ("tara-batch-cpu:0.1.0", "tara-batch-gpu:0.1.0")
            # credentials only by reference to a Secret the user creates, never inline
            assert c["envFrom"] == [{"secretRef": {"name": "tara-batch-s3", "optional": True}}]
            assert not any("AWS" in e.get("name", "") for e in c.get("env", []))
    assert prod["workerGroupSpecs"][1]["maxReplicas"] > dev["workerGroupSpecs"][0]["maxReplicas"]


def test_scheduler_may_only_create_rayjobs(rendered):
    for objs in rendered.values():
        (role,) = _kind(objs, "Role")
        assert role["rules"] == [{"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create"]}]
        (cron,) = _kind(objs, "CronJob")
        pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        (binding,) = _kind(objs, "RoleBinding")
        assert binding["subjects"][0]["name"] == pod["serviceAccountName"] == "tara-batch-scheduler"
        assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_every_job_runs_an_existing_script_with_accepted_flags():
    seen = set()
    for name, job in _jobs():
        tokens = shlex.split(job["spec"]["entrypoint"])
        assert tokens[0] == "python" and tokens[1].startswith("/app/ray_jobs/"), name
        script = Path(tokens[1]).stem
        assert (ROOT / "ray_jobs" / f"{script}.py").is_file()
        args = check.parse_script_args(script, tokens[2:])  # the script's own argparse parser
        assert args.config.startswith("/etc/tara-batch/")
        seen.add(script)
    assert seen == {"embed", "reembed", "train", "evaluate"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mounted_configs_load_with_the_project_loader(overlay, rendered, tmp_path):
    """Every config the jobs mount loads with tara_batch.config.load_config, overrides included."""
    from tara_batch.config import EmbedJobConfig, load_config
    from tara_batch.train.config import TrainConfig

    (cm,) = [o for o in _kind(rendered[overlay], "ConfigMap") if o["metadata"]["name"] == "tara-batch-config"]
    assert set(cm["data"]) == {"embed.yaml", "train.yaml", "eval.yaml"}
    loaded = 0
    for _name, job in _jobs():
        tokens = shlex.split(job["spec"]["entrypoint"])
        script = Path(tokens[1]).stem
        args = check.parse_script_args(script, tokens[2:])
        text = cm["data"][Path(args.config).name]
        check.check_config(script, args, text)  # raises ConfigError on a bad file, field or override
        loaded += 1
    assert loaded == 4
    (tmp_path / "embed.yaml").write_text(cm["data"]["embed.yaml"])
    cfg = load_config(EmbedJobConfig, tmp_path / "embed.yaml", [])
    assert cfg.embed.concurrency and cfg.decode.concurrency  # autoscaling from zero needs explicit actor counts
    (tmp_path / "train.yaml").write_text(cm["data"]["train.yaml"])
    assert load_config(TrainConfig, tmp_path / "train.yaml", []).scaling.num_workers >= 1


def test_config_copies_stay_valid():
    """The copies of ray_jobs/*.yaml under deploy/ load, and have the same sections as the originals."""
    from tara_batch.config import EmbedJobConfig, load_config
    from tara_batch.train.config import TrainConfig

    base = ROOT / "deploy/kuberay/base/config"
    load_config(EmbedJobConfig, base / "embed.yaml", [])
    load_config(TrainConfig, base / "train.yaml", [])
    for overlay in OVERLAYS:
        for f in (ROOT / "deploy/kuberay/overlays" / overlay / "config").glob("*.yaml"):
            assert f.name in {"embed.yaml", "train.yaml", "eval.yaml"}
    original = yaml.safe_load((ROOT / "ray_jobs/train.yaml").read_text())
    assert yaml.safe_load((base / "train.yaml").read_text()) == original


def test_schedule_template_is_checked(rendered):
    (cm,) = [o for o in _kind(rendered["prod"], "ConfigMap") if o["metadata"]["name"] == "tara-batch-schedule"]
    job = yaml.safe_load(cm["data"]["reembed.yaml"])
    assert job["kind"] == "RayJob" and job["metadata"]["generateName"]
    assert "ray_jobs/reembed.py" in job["spec"]["entrypoint"]


# ------------------------------------------------------------------------------------------------ negative tests


def _problems(objs: list[dict], extra_jobs=()) -> list[str]:
    report = check.Report()
    check.check_rendered(objs, "test", report, "2.60.0", extra_jobs=list(extra_jobs))
    return report.problems


def test_catches_wrong_field_type_in_raycluster(rendered):
    objs = copy.deepcopy(rendered["prod"])
    (cluster,) = _kind(objs, "RayCluster")
    cluster["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "eight"
    problems = _problems(objs)
    assert any("workerGroupSpecs.0.maxReplicas" in p and "is not of type 'integer'" in p for p in problems), problems


def test_catches_unknown_field_in_raycluster(rendered):
    objs = copy.deepcopy(rendered["prod"])
    (cluster,) = _kind(objs, "RayCluster")
    cluster["spec"]["headGroupSpec"]["rayStartParam"] = {}  # typo
    problems = _problems(objs)
    assert any("rayStartParam" in p and "Additional properties" in p for p in problems), problems


def test_catches_core_schema_violation(rendered):
    objs = copy.deepcopy(rendered["prod"])
    (cron,) = _kind(objs, "CronJob")
    cron["spec"]["schedule"] = 2
    assert any("CronJob/tara-batch-reembed-nightly: spec.schedule" in p for p in _problems(objs))


def test_catches_missing_script(rendered):
    job = copy.deepcopy(dict(_jobs())["embed.yaml"])
    job["spec"]["entrypoint"] = "python /app/ray_jobs/embedd.py --config /etc/tara-batch/embed.yaml"
    problems = _problems(rendered["prod"], [("embed.yaml", job)])
    assert any("ray_jobs/embedd.py, which does not exist" in p for p in problems), problems


def test_catches_unknown_flag_and_bad_override(rendered):
    job = copy.deepcopy(dict(_jobs())["embed.yaml"])
    job["spec"]["entrypoint"] += " --retry-everything"
    problems = _problems(rendered["prod"], [("embed.yaml", job)])
    assert any("rejects its arguments" in p and "--retry-everything" in p for p in problems), problems
    job["spec"]["entrypoint"] = job["spec"]["entrypoint"].replace(" --retry-everything", " decode.bakend=decord")
    problems = _problems(rendered["prod"], [("embed.yaml", job)])
    assert any("decode.bakend" in p and "unknown field" in p for p in problems), problems


def test_catches_unmounted_config_and_wrong_cluster(rendered):
    job = copy.deepcopy(dict(_jobs())["train.yaml"])
    job["spec"]["entrypoint"] = "python /app/ray_jobs/train.py --config /etc/other/train.yaml"
    assert any("is not a file of a ConfigMap mounted" in p for p in _problems(rendered["prod"], [("t", job)]))
    job["spec"]["clusterSelector"] = {"ray.io/cluster": "other"}
    assert any("matches no rendered RayCluster" in p for p in _problems(rendered["prod"], [("t", job)]))


def test_catches_ray_version_mismatch(rendered):
    objs = copy.deepcopy(rendered["dev"])
    _kind(objs, "RayCluster")[0]["spec"]["rayVersion"] = "2.51.0"
    assert any("spec.rayVersion" in p for p in _problems(objs))


def test_lint_catches_a_bad_dockerfile(tmp_path, monkeypatch):
    bad = tmp_path / "docker"
    bad.mkdir()
    for f in check.DOCKERFILES:
        (bad / f).write_text("FROM python:latest\nRUN pip install requests\n")
    (bad / "hadolint.yaml").write_text((check.DOCKER / "hadolint.yaml").read_text())
    monkeypatch.setattr(check, "DOCKER", bad)
    report = check.Report()
    check.lint_dockerfiles(report)
    assert any("DL3007" in p for p in report.problems) and any("DL3013" in p for p in report.problems)


def test_rayservice_is_checked(rendered):
    (svc,) = _kind(rendered["prod"], "RayService")
    assert "tara_batch.serve.ray_app:build_app" in svc["spec"]["serveConfigV2"]
    objs = copy.deepcopy(rendered["prod"])
    s = _kind(objs, "RayService")[0]
    s["spec"]["serveConfigV2"] = s["spec"]["serveConfigV2"].replace("embedder_num_gpus: 1", "embedder_gpus: 1")
    assert any("args" in p and "embedder_gpus" in p for p in _problems(objs)), _problems(objs)
    s["spec"]["serveConfigV2"] = s["spec"]["serveConfigV2"].replace("ray_app:build_app", "ray_app:build_it")
    assert any("does not resolve" in p for p in _problems(objs))
    objs = copy.deepcopy(rendered["prod"])
    _kind(objs, "RayService")[0]["spec"]["rayClusterConfig"]["rayVersion"] = "2.51.0"
    assert any("rayClusterConfig" in p and "rayVersion" in p for p in _problems(objs))
    objs = copy.deepcopy(rendered["prod"])
    _kind(objs, "RayService")[0]["spec"]["serveConfigv2"] = "x"  # a misspelled field: strict schema rejects it
    assert any("serveConfigv2" in p for p in _problems(objs))
