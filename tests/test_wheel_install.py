"""The package as a pip user gets it: the built wheel, installed into a fresh venv that has only the
heavy dependencies besides (this environment's site-packages, on the path), and used from outside
the repository: --help, --version, the README's dataset commands exactly as written, the recipes
copied out and dry-run, the agent-file lookup."""

import glob
import os
import re
import subprocess
import sys
import sysconfig

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the fresh venv's bin folder, a work folder outside the repository)."""
    root = tmp_path_factory.mktemp("wheel-install")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), REPO],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = (root / "dist").glob("openrlhf_3spo-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=600)
    # the heavy dependencies, without this checkout's editable install (no .pth of theirs runs);
    # the wheel's own flash_attn stand-in where a GPU box has flash-attn
    heavy = sysconfig.get_paths()["purelib"]
    with open(os.path.join(site, "heavy_dependencies.pth"), "w") as f:
        f.write(f"{heavy}\n{os.path.join(site, 'openrlhf_3spo', 'openrlhf', 'cpu_shims')}\n")
    work = root / "work"
    work.mkdir()
    return venv / "bin", work, site


def _run(installed, command, **extra_env):
    bin_dir, work, _ = installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **extra_env)
    result = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_the_package_comes_from_the_wheel(installed):
    _, _, site = installed
    out = _run(installed, "python -c 'import openrlhf_3spo; print(openrlhf_3spo.__file__)'")
    assert out.strip().startswith(site)
    assert _run(installed, "command -v openrlhf-3spo").strip() == str(installed[0] / "openrlhf-3spo")


def test_help_and_version(installed):
    assert "make-dataset" in _run(installed, "openrlhf-3spo --help")
    assert re.fullmatch(r"openrlhf-3spo \d+\.\d+\.\d+\n", _run(installed, "openrlhf-3spo --version"))


def test_the_readmes_dataset_commands_as_written(installed):
    """Every `make-dataset` line of the README; the shipped data stand in for the downloads that
    $ALFWORLD_DATA and $WEBSHOP_DATA name on a GPU box."""
    _, work, site = installed
    with open(os.path.join(REPO, "README.md")) as f:
        commands = [line.split("#")[0].strip() for line in f if line.startswith("openrlhf-3spo make-dataset")]
    assert len(commands) >= 6
    shipped = os.path.join(site, "openrlhf_3spo", "envs", "data")
    for command in commands:
        out = _run(installed, command, ALFWORLD_DATA=os.path.join(shipped, "alfworld"),
                   WEBSHOP_DATA=os.path.join(shipped, "webshop"))
        written = work / command.split("--out ")[1].split()[0]
        assert written.stat().st_size > 0 and "tasks" in out, command
    for env in ("alfworld", "webshop"):  # --data shipped, no other flag: the train split where the recipes read
        _run(installed, f"cd {work} && mkdir -p default && cd default && openrlhf-3spo make-dataset {env} --data shipped")
        assert (work / "default" / "data" / env / "train.jsonl").stat().st_size > 0


def test_recipes_copy_out_and_dry_run(installed):
    _run(installed, "openrlhf-3spo make-dataset alfworld --data shipped --split train --out data/alfworld/train.jsonl")
    _run(installed, "openrlhf-3spo make-dataset alfworld --data shipped --split valid_seen --out data/alfworld/eval.jsonl")
    out = _run(installed, "openrlhf-3spo recipes --copy r && bash r/alfworld_3spo_1.5b.sh --dry-run")
    config = out[out.index("{"):]
    assert '"estimator": "3spo"' in config and installed[2] in config  # the installed agent file


def test_the_wheel_carries_the_root_recipes(installed):
    """recipes/ lives at the repository's root; the package reaches it (openrlhf_3spo/recipes links there)."""
    shipped = os.path.join(installed[2], "openrlhf_3spo", "recipes")
    root = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "recipes", "*.sh")))
    assert len(root) >= 9 and sorted(os.listdir(shipped)) == root and not os.path.islink(shipped)


def test_agent_file_lookup(installed):
    path = _run(installed, "openrlhf-3spo agent-file alfworld 3spo").strip()
    assert path == os.path.join(installed[2], "openrlhf_3spo", "agents", "alfworld_3spo.py") and os.path.isfile(path)


def test_the_sdists_tests_run(tmp_path):
    """The sdist carries what its tests need (conftest.py, the scripted agents, the patches); a
    quick part of its suite runs from it, on the package it holds."""
    import tarfile

    from setuptools import build_meta

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        name = build_meta.build_sdist(str(tmp_path / "dist"))
    finally:
        os.chdir(cwd)
    with tarfile.open(tmp_path / "dist" / name) as sdist:
        sdist.extractall(tmp_path, filter="data")
    root = tmp_path / name[: -len(".tar.gz")]
    for needed in ("tests/conftest.py", "tests/agents/scripted.py", "tests/openrlhf_advantages_probe.py",
                   "scripts/setup_cpu_env.sh", "LICENSE"):
        assert (root / needed).is_file(), needed
    assert sorted(p.name for p in (root / "patches").glob("*.patch")) == sorted(
        p for p in os.listdir(os.path.join(REPO, "patches")) if p.endswith(".patch"))
    env = dict(os.environ, PYTHONPATH=str(root))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_algo_formulas.py", "tests/test_faults.py"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and " passed" in result.stdout, result.stdout[-3000:]
    where = subprocess.run([sys.executable, "-c", "import openrlhf_3spo; print(openrlhf_3spo.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(root))


def test_the_patch_series_ships_with_the_package(installed):
    _run(installed, "openrlhf-3spo patches --copy p")
    work = installed[1]
    shipped = sorted(n for n in os.listdir(os.path.join(REPO, "patches")) if n.endswith((".patch", ".md")))
    assert sorted(os.listdir(work / "p")) == shipped
    for name in shipped:
        with open(os.path.join(REPO, "patches", name), "rb") as ours:
            assert (work / "p" / name).read_bytes() == ours.read(), name
    assert "feat(ppo): advantage-estimator registry" in _run(installed, "openrlhf-3spo patches")
