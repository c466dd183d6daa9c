"""`openrlhf-3spo train --cpu`: OpenRLHF's real trainer (Ray, DeepSpeed, vLLM, the agent functions)
on a machine with no GPU, to check a configuration end to end before GPU time. A debugging mode for
tiny models: every stage of the pipeline runs, slowly, and nothing worth keeping is trained.

OpenRLHF 0.11.2 assumes CUDA in a few places. `apply()` makes them CPU-safe in each process that runs
them: the driver (`train.py`), every Ray worker (the plugin's `register`, which Ray's worker setup
hook calls) and vLLM's engine-core process (vLLM's general-plugin entry point, `vllm_plugin`).
`CPU_PATCHED` lists what it changes.
"""

import functools
import importlib.util
import os
import sys

CPU_MODE_VAR = "OPENRLHF_3SPO_CPU"
SHIM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cpu_shims")

# Every process of the run gets these: Ray workers through the runtime env, vLLM's engine core by inheritance.
ENV = {
    CPU_MODE_VAR: "1",
    "DS_ACCELERATOR": "cpu",
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB per engine
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # engines and trainer ranks share the cores
}

# flag: the value --cpu sets (None: a switch it turns on)
FLAGS = {
    "--ds.attn_implementation": "sdpa",  # flash-attn has no CPU build
    "--vllm.enforce_eager": None,  # no CUDA graphs
    "--vllm.sync_backend": "gloo",  # not nccl, and so no CUDA IPC under --train.colocate_all
}

# (parsed setting, is it set, why --cpu refuses it)
REFUSED = (
    ("vllm.enable_sleep", bool, "vLLM cannot sleep on CPU: drop --vllm.enable_sleep"),
    ("ds.enable_sleep", bool, "there is no GPU memory to free on CPU: drop --ds.enable_sleep"),
    ("vllm.tensor_parallel_size", lambda size: size > 1, "use --vllm.tensor_parallel_size 1 on CPU"),
    ("ds.tensor_parallel_size", lambda size: size > 1, "use --ds.tensor_parallel_size 1 on CPU"),
    ("ds.ring_attn_size", lambda size: size > 1, "ring attention needs flash-attn: drop --ds.ring_attn_size"),
    ("ds.packing_samples", bool, "sample packing needs flash-attn's varlen kernels: drop --ds.packing_samples"),
    ("ds.load_in_4bit", bool, "4-bit loading needs bitsandbytes' CUDA kernels: drop --ds.load_in_4bit"),
    ("ds.adam_offload", bool, "the optimizer is already on CPU: drop --ds.adam_offload"),
    ("train.enable_ema", bool, "OpenRLHF keeps the EMA model on CUDA: drop --train.enable_ema"),
)

CPU_PATCHED = (
    ("torch.cuda", "current_device", "'cpu' (formats as index 0 inside f\"cuda:{...}\")"),
    ("torch.cuda", "set_device, synchronize, current_stream", "no-ops"),
    ("openrlhf.utils.deepspeed.deepspeed", "init_device_mesh", "builds the mesh on CPU"),
    ("openrlhf.utils.deepspeed.deepspeed", "DeepspeedStrategy.get_ds_train_config", "torch's AdamW, not FusedAdam"),
    ("deepspeed.comm.torch", "build_shm_op", "skipped: a 2-3 minute compile; gloo does the work"),
    ("openrlhf.trainer.ppo_utils.replay_buffer", "NaiveReplayBuffer.__init__", "target device CPU"),
    ("openrlhf.utils.distributed_util", "stateless_init_process_group", "weights over the TCP store, not NCCL"),
    ("openrlhf.trainer.ray.ppo_actor", "stateless_init_process_group", "the same"),
    ("openrlhf.trainer.ray.vllm_worker_wrap", "WorkerWrap.update_weight", "receives the weight on CPU"),
    ("vllm._custom_ops", "_supports_onednn", "False in vLLM's processes: weights stay loadable (keep_vllm_weights_loadable)"),
    ("vllm.model_executor.layers.utils", "check_cpu_sgl_kernel", "the same"),
)


def problems(args):
    """One line per setting that cannot work on CPU (OpenRLHF's hierarchical args)."""
    return [why for dest, is_set, why in REFUSED if is_set(functools.reduce(getattr, dest.split("."), args))]


def cpu_argv(argv):
    """The user's flags and those --cpu needs; a user's flag that contradicts one is a ValueError."""
    argv = [part for arg in argv for part in (arg.split("=", 1) if arg.startswith("--") else [arg])]
    for flag, value in FLAGS.items():
        if value is None:
            if flag not in argv:
                argv.append(flag)
            continue
        given = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]
        wrong = [v for v in given if v != value]
        if wrong:
            raise ValueError(f"--cpu runs with {flag} {value}, not {wrong[0]}")
        if not given:
            argv += [flag, value]
    return argv


def enter():
    """In the driver, before OpenRLHF is imported: the environment of every process of the run, and
    a flash_attn stand-in where flash-attn is not installed (OpenRLHF imports it at module level)."""
    os.environ.update(ENV)
    flash_attn_stand_in()
    apply()


def flash_attn_stand_in():
    """Where flash-attn is not installed, the stand-in, for this process and those it starts (a
    --dry-run imports OpenRLHF's trainer to register the plugin, and runs nothing)."""
    if importlib.util.find_spec("flash_attn") is None:
        sys.path.insert(0, SHIM_DIR)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (SHIM_DIR, os.environ.get("PYTHONPATH")) if p)


def runtime_env_vars():
    """What the Ray workers need of the driver's environment under --cpu."""
    return {k: os.environ[k] for k in (*ENV, "PYTHONPATH") if k in os.environ}


def ray_init_resources():
    """Placeholder counts: OpenRLHF places its actors in bundles of one GPU and one CPU each. Here
    they are bookkeeping only (every process shares the machine's cores), with room for the actor,
    reference and vLLM groups of a small layout."""
    return {"num_gpus": 16, "num_cpus": 16}


class _CpuDevice(str):
    """'cpu' wherever OpenRLHF passes torch.cuda.current_device() as a device. replay_buffer.py builds
    torch.device(f"cuda:{...}") from it, so it formats as index 0; that buffer's device is then reset."""

    def __format__(self, spec):
        return "0"


class _StoreBroadcast:
    """PyNccl's in-place broadcast(tensor, src, stream), over the TCP store of vLLM's
    StatelessProcessGroup: the DeepSpeed-to-vLLM weight sync on CPU."""

    def __init__(self, group):
        self.group = group

    def broadcast(self, tensor, src, stream=None):
        received = self.group.broadcast(tensor, src)
        if self.group.rank != src:
            tensor.copy_(received)


def _store_process_group(master_address, master_port, rank, world_size, device=None):
    from vllm.distributed.utils import StatelessProcessGroup

    group = StatelessProcessGroup.create(host=master_address, port=master_port, rank=rank, world_size=world_size)
    return _StoreBroadcast(group)


def _update_weight_on_cpu(self, name, dtype, shape, empty_cache=False):
    import torch

    assert dtype == self.model_config.dtype, f"mismatch dtype: src {dtype}, dst {self.model_config.dtype}"
    weight = torch.empty(shape, dtype=dtype)
    self._model_update_group.broadcast(weight, src=0)
    load_weight_on_cpu(self.model_runner, name, weight)


def load_weight_on_cpu(model_runner, name, weight):
    """One weight of a DeepSpeed-to-vLLM sync, into vLLM's CPU worker, in place."""
    model = model_runner.model
    repacked = [n for n, p in model.named_parameters() if p.numel() == 0]
    if repacked:
        raise RuntimeError(
            f"--cpu weight sync: vLLM's CPU worker re-packed {len(repacked)} weights for its CPU kernels "
            f"({repacked[0]}, ...), so they cannot be loaded; keep_vllm_weights_loadable() did not run in it"
        )
    model.load_weights(weights=[(name, weight)])


def keep_vllm_weights_loadable():
    """vLLM's CPU linear layers re-pack their weights for oneDNN or AMX kernels, where the CPU has
    them (AVX-512 or AMX), and drop the parameters that OpenRLHF's weight sync loads into. Under
    --cpu they run torch's linear on the weights as loaded, on every CPU alike."""
    import vllm._custom_ops as vllm_ops
    import vllm.model_executor.layers.utils as vllm_layer_utils

    vllm_ops._supports_onednn = False
    vllm_layer_utils.check_cpu_sgl_kernel = lambda n, k, dtype: False


def apply():
    """Idempotent. Patches only what is imported in this process, and what it imports later."""
    import torch

    if getattr(torch.cuda, "_spo3_cpu", False):
        return
    torch.cuda._spo3_cpu = True
    torch.cuda.current_device = lambda: _CpuDevice("cpu")
    torch.cuda.set_device = lambda device: None
    torch.cuda.synchronize = lambda device=None: None
    torch.cuda.current_stream = lambda device=None: None
    import deepspeed.comm.torch
    import openrlhf.trainer.ppo_utils.replay_buffer as replay_buffer
    import openrlhf.trainer.ray.ppo_actor as ppo_actor
    import openrlhf.trainer.ray.vllm_worker_wrap as vllm_worker_wrap
    import openrlhf.utils.deepspeed.deepspeed as ds_strategy
    import openrlhf.utils.distributed_util as distributed_util

    deepspeed.comm.torch.build_shm_op = lambda: None
    init_device_mesh = ds_strategy.init_device_mesh
    ds_strategy.init_device_mesh = lambda device_type, *args, **kwargs: init_device_mesh("cpu", *args, **kwargs)

    get_ds_train_config = ds_strategy.DeepspeedStrategy.get_ds_train_config

    def ds_train_config_with_torch_adam(self, *args, **kwargs):
        config = get_ds_train_config(self, *args, **kwargs)
        optimizer = config.get("optimizer") or {}
        if optimizer.get("type") == "AdamW":  # DeepSpeed's own switch to torch.optim.AdamW
            optimizer["params"]["torch_adam"] = True
        return config

    ds_strategy.DeepspeedStrategy.get_ds_train_config = ds_train_config_with_torch_adam

    buffer_init = replay_buffer.NaiveReplayBuffer.__init__

    def buffer_on_cpu(self, *args, **kwargs):
        buffer_init(self, *args, **kwargs)
        self.target_device = torch.device("cpu")

    replay_buffer.NaiveReplayBuffer.__init__ = buffer_on_cpu
    distributed_util.stateless_init_process_group = _store_process_group
    ppo_actor.stateless_init_process_group = _store_process_group
    vllm_worker_wrap.WorkerWrap.update_weight = _update_weight_on_cpu


def vllm_plugin():
    """vLLM's `vllm.general_plugins` entry point: it runs in every vLLM process, the engine core
    included. A no-op unless this is a --cpu run."""
    if os.environ.get(CPU_MODE_VAR) == "1":
        apply()
        keep_vllm_weights_loadable()
