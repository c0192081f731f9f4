"""The GPU image's Dockerfile, checked without a Docker engine.

The Dockerfile is parsed into instructions and checked for what the Docker
work pool relies on (CUDA base matching the torch wheel, the pinned packages,
a non-root user, no secrets, the flow code at the pull step's folder) and
linted for the usual mistakes (apt lists left behind, floating tags, a COPY
order that reinstalls torch on every code edit).
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# torch's PyPI wheel for this version is a CUDA 13.0 build (torch.version.cuda == "13.0");
# bumping torch means re-checking the CUDA major of the base image.
TORCH_CUDA_MAJOR = {"2.14.1": 13}


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            buf += stripped[:-1].rstrip() + " "
            continue
        buf += stripped
        if buf:
            word, _, rest = buf.partition(" ")
            out.append((word.upper(), rest.strip()))
        buf = ""
    if buf.strip():
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


INSTR = parse_dockerfile((ROOT / "Dockerfile").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def final_stage() -> list[tuple[str, str]]:
    starts = [i for i, (op, _) in enumerate(INSTR) if op == "FROM"]
    return INSTR[starts[-1]:]


def index_of(op: str, predicate=lambda args: True, stage=None) -> int:
    items = stage if stage is not None else final_stage()
    for i, (o, args) in enumerate(items):
        if o == op and predicate(args):
            return i
    raise AssertionError(f"no {op} instruction matching the check")


def pins() -> dict[str, str]:
    reqs = list(PYPROJECT["project"]["dependencies"]) + list(PYPROJECT["project"]["optional-dependencies"]["orchestration"])
    out = {}
    for r in reqs:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+)\s*==\s*([^\s;,]+)\s*", r)
        if m:
            out[m.group(1).split("[")[0].lower()] = m.group(2)
    return out


def test_parser_handles_continuations_and_comments() -> None:
    parsed = parse_dockerfile("# c\nFROM a:1 AS b\nRUN x \\\n  # inner\n  && y\n\nUSER z\n")
    assert parsed == [("FROM", "a:1 AS b"), ("RUN", "x && y"), ("USER", "z")]


def test_base_image_is_cuda_and_matches_the_torch_wheel() -> None:
    base = final_stage()[0][1].split()[0]
    m = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.(\d+)-(base|runtime|cudnn-runtime)-ubuntu(\d+\.\d+)", base)
    assert m, f"final stage must build on an nvidia/cuda runtime-class image, got {base!r}"
    torch_pin = pins()["torch"]
    assert torch_pin in TORCH_CUDA_MAJOR, f"torch {torch_pin}: record the CUDA major of its wheel in this test"
    assert int(m.group(1)) == TORCH_CUDA_MAJOR[torch_pin], "CUDA major of the base differs from the torch wheel's"


def test_no_floating_tags() -> None:
    for op, args in INSTR:
        if op == "FROM":
            image = args.split()[0]
            name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
            assert tag and tag != "latest", f"FROM {image}: pin a version tag"
        if op == "COPY" and "--from=" in args:
            src = re.search(r"--from=(\S+)", args).group(1)
            assert ":" not in src or not src.endswith(":latest"), src


def test_installs_the_project_with_pyproject_pins() -> None:
    stage = final_stage()
    runs = " ".join(args for op, args in stage if op == "RUN")
    # Dependencies come from pyproject.toml itself (so every pin applies), with the orchestration extra.
    assert re.search(r"pip install[^&]*-r pyproject\.toml[^&]*--extra orchestration", runs), runs
    assert re.search(r"pip install[^&]*--no-deps[^&]*\.", runs)
    # Any version spelled out in the Dockerfile must be pyproject's.
    for name, version in re.findall(r"([A-Za-z0-9_\-]+)==([0-9][^\s\"']*)", runs):
        assert pins().get(name.lower()) == version, f"{name}=={version} differs from pyproject.toml"
    assert pins()["prefect"] == "3.8.8" and pins()["torch"] == "2.14.1"
    assert re.search(r"ARG PYTHON_VERSION=3\.11\b", "\n".join(f"{o} {a}" for o, a in stage))


def test_layer_order_keeps_the_dependency_layer_cached() -> None:
    stage = final_stage()
    copy_pyproject = index_of("COPY", lambda a: a.split()[0] == "pyproject.toml")
    install_deps = index_of("RUN", lambda a: "-r pyproject.toml" in a)
    first_code = index_of("COPY", lambda a: a.split()[0].rstrip("/") in {"spira_lib", "spira_cli", "tasks", "flows", "deployments"})
    assert copy_pyproject < install_deps < first_code
    for op, args in stage:
        if op in ("COPY", "ADD"):
            sources = [s for s in args.split()[:-1] if not s.startswith("--")]
            assert "." not in sources and "./" not in sources, f"{op} {args}: copies the whole context"


def test_flow_code_lives_where_prefect_yaml_pulls_it() -> None:
    import yaml

    workdir = [a for o, a in final_stage() if o == "WORKDIR"][-1]
    copied = {a.split()[0].rstrip("/") for o, a in final_stage() if o == "COPY" and "--from" not in a}
    assert {"spira_lib", "spira_cli", "tasks", "flows", "deployments", "configs"} <= copied
    raw = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for dep in raw["deployments"]:
        if dep["name"] == "gpu":
            assert dep["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == workdir


def test_apt_is_lean_and_cleaned() -> None:
    apt_runs = [a for o, a in INSTR if o == "RUN" and "apt-get install" in a]
    assert apt_runs
    for args in apt_runs:
        assert "apt-get update" in args, "update and install in one layer, or the cache goes stale"
        assert "--no-install-recommends" in args
        assert re.search(r"rm -rf /var/lib/apt/lists/\*", args), "apt lists must be removed in the same layer"
        assert " -y " in f" {args} "


def test_runs_as_a_non_root_user() -> None:
    stage = final_stage()
    users = [(i, a) for i, (o, a) in enumerate(stage) if o == "USER"]
    assert users, "no USER: the container would run as root"
    last_i, last_user = users[-1]
    assert last_user.split(":")[0] not in ("root", "0")
    for op in ("CMD", "ENTRYPOINT"):
        for i, (o, _) in enumerate(stage):
            if o == op:
                assert last_i < i, f"{op} before the final USER"
    home = dict(re.findall(r"(\w+)=(\S+)", " ".join(a for o, a in stage if o == "ENV")))
    assert home["PREFECT_HOME"].startswith(home["HOME"] + "/")
    assert home["PYTHONUNBUFFERED"] == "1"


SECRET_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL)", re.I)


def test_no_secrets_or_site_settings_baked_in() -> None:
    for op, args in INSTR:
        if op in ("ENV", "ARG"):
            for name in re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", args):
                assert not SECRET_NAME.search(name), f"{op} {name}: secrets must come from the runtime environment"
                assert name not in ("PREFECT_API_URL", "AWS_ENDPOINT_URL", "AWS_PROFILE"), f"{op} {name}: site-specific"
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: '**/' spans folders, '*' and '?' stay within one."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins, and excluding a folder excludes its contents."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pat in dockerignore_patterns():
        negate = pat.startswith("!")
        rx = _pattern_regex(pat.lstrip("!").strip("/"))
        if any(rx.fullmatch(p) for p in prefixes):
            result = not negate
    return result


@pytest.mark.parametrize(
    "path",
    [".venv/bin/python", "demo/data/metadata.csv", "tests/e2e/conftest.py", ".git/HEAD", ".env",
     "spira_lib/__pycache__/x.cpython-311.pyc", "spira_ct.egg-info/PKG-INFO", ".aws/credentials", "bench/run_all.py"],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert ignored(path), path


def test_dockerignore_keeps_what_the_image_copies() -> None:
    for op, args in final_stage():
        if op == "COPY" and "--from" not in args:
            for src in args.split()[:-1]:
                assert not ignored(src.rstrip("/")), f"{src} is copied but ignored"
                assert (ROOT / src).exists(), f"{src} does not exist"
    for path in ("spira_lib/config.py", "flows/retrain.py", "tasks/retrain.py", "deployments/s3_bridge.py", "configs/default.yaml"):
        assert not ignored(path), path
