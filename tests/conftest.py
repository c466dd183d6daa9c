import glob
import os
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# vLLM's engine core runs in this process: spawning a child would re-import the test session.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def param_id(value):
    """A parametrized case's id from its arguments (pytest's default for a dict or a list is its
    position, as in `args7`); a string stands as it is, an absolute path as its file name."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "defaults"
    if isinstance(value, (list, tuple)):
        return " ".join(os.path.basename(v) if isinstance(v, str) and os.path.isabs(v) else str(v) for v in value)
    return None


def pytest_addoption(parser):
    parser.addoption(
        "--flip-advantage-sign", action="store_true",
        help="test_trainer_learning.py: train with every advantage negated (the test must then fail)",
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The package's tiny random Llama (`openrlhf-3spo tiny-model`): nothing is downloaded."""
    from openrlhf_3spo.demo.smollm2 import write_tiny_model

    return write_tiny_model(str(tmp_path_factory.mktemp("tiny-llama")))


def unpack_openrlhf_wheel(root):
    """OpenRLHF 0.11.2 as its wheel installs it, in `root`: the `openrlhf` package and the tests it
    ships (a top-level `tests` package). scripts/setup_cpu_env.sh keeps the wheel in the venv."""
    wheels = glob.glob(os.path.join(sys.prefix, "wheels", "openrlhf-0.11.2-*.whl"))
    assert wheels, f"no OpenRLHF 0.11.2 wheel in {sys.prefix}/wheels: run scripts/setup_cpu_env.sh"
    tests_prefix = "openrlhf-0.11.2.data/purelib/"
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name in wheel.namelist():
            target = name[len(tests_prefix):] if name.startswith(tests_prefix) else name
            if target.startswith(("openrlhf/", "tests/")):
                os.makedirs(os.path.dirname(os.path.join(root, target)), exist_ok=True)
                with open(os.path.join(root, target), "wb") as f:
                    f.write(wheel.read(name))
    return str(root)


@pytest.fixture(scope="session")
def patched_openrlhf(tmp_path_factory):
    """A copy of OpenRLHF 0.11.2's wheel tree with the patch series of patches/ applied, in order;
    a patch that stops applying fails here, naming itself."""
    root = unpack_openrlhf_wheel(tmp_path_factory.mktemp("openrlhf-patched"))
    patches = sorted(glob.glob(os.path.join(REPO, "patches", "*.patch")))
    assert patches, "patches/ holds no patch"
    for patch in patches:
        check = subprocess.run(["git", "apply", "--check", patch], cwd=root, capture_output=True, text=True)
        assert check.returncode == 0, f"{os.path.basename(patch)} no longer applies to OpenRLHF 0.11.2: {check.stderr}"
        subprocess.run(["git", "apply", patch], cwd=root, check=True)
    return root


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="marked gpu: needs a CUDA GPU, none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def pytest_terminal_summary(terminalreporter):
    gpu = [r for r in terminalreporter.stats.get("skipped", []) if "marked gpu" in str(r.longrepr)]
    terminalreporter.write_line(f"gpu-marked tests skipped for lack of CUDA: {len(gpu)}")
