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
