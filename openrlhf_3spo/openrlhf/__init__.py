"""Everything that touches OpenRLHF. There are two ways in, and `openrlhf_has_plugin_hooks` picks one:

- OpenRLHF with the patch series of patches/ applied: OpenRLHF loads `plugin.register` through its
  `openrlhf.plugins` entry point, in the driver and in every Ray worker, and 3SPO runs through
  OpenRLHF's own estimator registry, trainer components and callbacks. `python -m
  openrlhf.cli.train_ppo_ray --algo.advantage.estimator 3spo ...` trains with it; nothing is replaced.
- OpenRLHF 0.11.2 as released: `openrlhf-3spo train` registers the plugin by substitution at run
  time (`register.py`, whose `PATCHED` lists every replaced symbol).
"""

import functools
import importlib.util
import os

PLUGIN_ESTIMATORS = ("3spo", "gigpo")  # the --advantage_estimator names the plugin adds to OpenRLHF's


@functools.cache
def openrlhf_has_plugin_hooks():
    """True where the installed OpenRLHF carries the patch series (its `openrlhf.utils.plugins`).
    Looks at the files only: importing OpenRLHF here would pull in DeepSpeed and vLLM."""
    spec = importlib.util.find_spec("openrlhf")
    locations = spec.submodule_search_locations if spec is not None else None
    return bool(locations) and any(os.path.isfile(os.path.join(d, "utils", "plugins.py")) for d in locations)
