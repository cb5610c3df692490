"""The distributed-training component: the rank Job template filled in for one job, and the files
the component lists."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fermion.events import DatasetRef, Recipe
from fermion.functions.trainer.kubernetes import job_name, rank_job
from fermion.training.rank import RankSpec

COMPONENT = Path(__file__).resolve().parents[2] / "infra" / "k8s" / "components" / "distributed-training"


def _spec() -> RankSpec:
    ref = DatasetRef(name="digits", sha256="0" * 64, uri="s3://b/datasets/digits.npz", format="npz", size=1)
    return RankSpec(
        job_id="5933CEAD15ef4157.b9d5850a40eb8c4a",
        tenant="default",
        dataset=ref,
        recipe=Recipe(architecture="cnn", workers=4),
        store_url="s3://fermion-models",
        workdir="/tmp/somewhere",
    )


def test_the_template_is_filled_in_for_one_job() -> None:
    template = yaml.safe_load((COMPONENT / "rank-job-template.yaml").read_text())
    job = rank_job(template, _spec(), 4)
    name = job["metadata"]["name"]
    assert name == job_name("5933CEAD15ef4157.b9d5850a40eb8c4a") == "fermion-ranks-5933cead15ef4157-b9d5850a40eb8c4a"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 4
    assert job["spec"]["completionMode"] == "Indexed"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {v["name"]: v.get("value") for v in container["env"]}
    assert env["WORKERS"] == "4"
    assert env["RDZV_ENDPOINT"] == f"{name}-0.fermion-ranks:29400"
    spec = RankSpec.model_validate_json(env["FERMION_RANK_SPEC"])
    assert (spec.single_host, spec.workdir, spec.recipe.workers) == (False, None, 4)  # env:// across pods
    assert container["args"][-2:] == ["fermion.training.rank", "$(FERMION_RANK_SPEC)"]
    assert template["metadata"]["name"] != name  # the mounted template is left as it was


def test_the_rank_pods_run_the_image_the_trainer_is_given() -> None:
    """Kustomize rewrites no image inside ConfigMap data: the trainer sets the one it runs itself."""
    template = yaml.safe_load((COMPONENT / "rank-job-template.yaml").read_text())
    job = rank_job(template, _spec(), 2, image="registry.example/fermion-trainer:1.2.3")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/fermion-trainer:1.2.3"


def test_a_template_without_the_variables_is_refused() -> None:
    template = yaml.safe_load((COMPONENT / "rank-job-template.yaml").read_text())
    template["spec"]["template"]["spec"]["containers"][0]["env"] = []
    with pytest.raises(ValueError, match="lacks the variables"):
        rank_job(template, _spec(), 2)


def test_the_component_lists_files_that_exist_and_the_ranks_meet_through_its_service() -> None:
    component = yaml.safe_load((COMPONENT / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    listed = component["resources"] + [p["path"] for p in component["patches"]]
    listed += [f.split("=")[-1] for g in component["configMapGenerator"] for f in g["files"]]
    assert all((COMPONENT / f).is_file() for f in listed), listed
    service = yaml.safe_load((COMPONENT / "ranks-service.yaml").read_text())
    template = yaml.safe_load((COMPONENT / "rank-job-template.yaml").read_text())
    pod = template["spec"]["template"]
    assert service["spec"]["clusterIP"] == "None" and pod["spec"]["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
