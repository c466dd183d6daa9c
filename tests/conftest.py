import os

import pytest

# vLLM's engine core runs in this process: spawning a child would re-import the test session.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The package's tiny random Llama (`openrlhf-3spo tiny-model`): nothing is downloaded."""
    from openrlhf_3spo.demo.smollm2 import write_tiny_model

    return write_tiny_model(str(tmp_path_factory.mktemp("tiny-llama")))


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
