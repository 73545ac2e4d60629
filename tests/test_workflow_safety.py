"""The Pages workflow never builds untrusted code with write permissions (issue 9 §1)."""

from __future__ import annotations

from typing import Any

import yaml

from tests.conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "pages.yml"


def _workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_only_main_and_manual_runs_build() -> None:
    triggers = _workflow()[True]  # YAML 1.1 reads the key `on` as True
    assert set(triggers) == {"push", "workflow_dispatch"}, "no pull_request / pull_request_target builds"
    assert triggers["push"] == {"branches": ["main"]}


def test_permissions_are_minimal_per_job() -> None:
    workflow = _workflow()
    assert workflow["permissions"] == {}
    jobs = workflow["jobs"]
    assert jobs["build"]["permissions"] == {"contents": "read"}
    assert jobs["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}
    # The job that writes runs no project code: no checkout, no make.
    steps = jobs["deploy"]["steps"]
    assert all("run" not in step and "checkout" not in step.get("uses", "") for step in steps)


def test_checkout_leaves_no_token_behind() -> None:
    for job in _workflow()["jobs"].values():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout"):
                assert step.get("with", {}).get("persist-credentials") is False
