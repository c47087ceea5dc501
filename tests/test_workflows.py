"""The GitHub workflows: valid against the workflow schema that check-jsonschema vendors (offline), a broken copy
rejected, and doing what the build page says: ci.yml runs .ci/run; book.yml builds a profile that exists and
deploys _build/html to GitHub Pages."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"
NAMES = ["book.yml", "ci.yml"]


def _validate(path: Path) -> subprocess.CompletedProcess:
    """check-jsonschema (of the test extra) on one workflow file, with the GitHub workflow schema it ships."""
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True, timeout=120)


def _load(name: str) -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1); name it back.
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def _steps(job: dict) -> list[str]:
    """Each step as one string: what it uses, or what it runs."""
    return [step.get("uses") or step.get("run", "") for step in job["steps"]]


@pytest.mark.parametrize("name", NAMES)
def test_workflow_is_valid(name):
    done = _validate(WORKFLOWS / name)
    assert done.returncode == 0, f"{name} fails the GitHub workflow schema:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("breakage", [
    ("runs-on: ubuntu-latest", "runs-onn: ubuntu-latest"),       # a misspelt key of a job
    ("timeout-minutes: 90", "timeout-minutes: ninety"),          # a number that is not one
    ("permissions:\n  contents: read", "permissions:\n  contents: maybe"),  # a value outside the enum
])
def test_a_broken_workflow_is_rejected(tmp_path, breakage):
    text = (WORKFLOWS / "ci.yml").read_text()
    old, new = breakage
    assert old in text, f"ci.yml no longer holds {old!r}; pick another breakage"
    broken = tmp_path / "ci.yml"
    broken.write_text(text.replace(old, new, 1))
    done = _validate(broken)
    assert done.returncode != 0 and "ci.yml" in done.stdout, done.stdout + done.stderr


def test_ci_runs_the_ci_script_on_pushes_and_pull_requests():
    flow = _load("ci.yml")
    assert {"push", "pull_request"} <= set(flow["on"])
    (job,) = flow["jobs"].values()
    assert "bash .ci/run" in _steps(job) and (REPO / ".ci" / "run").is_file()
    assert job["timeout-minutes"] <= 90  # CI's limit for one run of .ci/run


def test_book_workflow_builds_an_existing_profile_and_deploys_it_to_pages():
    flow = _load("book.yml")
    assert flow["concurrency"]["group"] == "pages"
    build, deploy = flow["jobs"]["build"], flow["jobs"]["deploy"]
    profiles = flow["on"]["workflow_dispatch"]["inputs"]["profile"]
    assert profiles["default"] == "cpu" and "|| 'cpu'" in build["env"]["PROFILE"]
    assert all((REPO / "params" / p).is_dir() for p in profiles["options"]), profiles["options"]
    steps = _steps(build)
    assert 'make book PROFILE="$PROFILE"' in steps
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert any(s.startswith("actions/deploy-pages@") for s in _steps(deploy))


def test_the_build_page_names_the_profile_the_workflow_publishes():
    page = (REPO / "book" / "manual_build.md").read_text()
    assert f"`book.yml` builds the `{_load('book.yml')['on']['workflow_dispatch']['inputs']['profile']['default']}` book" in page
