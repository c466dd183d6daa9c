"""docs/ARCHITECTURE.md stays true: its substitution table lists exactly what the code substitutes,
and each layer imports only the layers the page puts below it."""

import os
import re

from openrlhf_3spo.plugin import compat, cpu, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "openrlhf_3spo")
# layer -> the project's modules it may import (settings and io are leaves any layer may use)
BELOW = {
    "algo": set(),
    "envs": set(),
    "state": {"algo"},
    "rollout": {"algo", "envs", "state"},
    "agents": {"algo", "envs", "state", "rollout"},
    "plugin": {"algo", "envs", "state", "rollout", "agents"},
    "demo": {"algo", "envs", "state", "rollout"},
}


def _table_rows():
    with open(os.path.join(REPO, "docs", "ARCHITECTURE.md")) as f:
        section = f.read().split("## Every substitution of an OpenRLHF symbol", 1)[1]
    rows, when = {}, None
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[1].startswith("`"):
            continue
        when = cells[0] or when
        rows.setdefault(when, []).append((cells[1].strip("`"), cells[2].strip("`")))
    return rows


def test_the_page_lists_every_substitution():
    rows = _table_rows()
    listed = {re.search(r"\(`(.+?)`\)", when).group(1): symbols for when, symbols in rows.items()}
    in_code = {
        "compat.SUBSTITUTED": [(m, s) for m, s, _ in compat.SUBSTITUTED],
        "train.CLI_SUBSTITUTED": [(m, s) for m, s, _ in train.CLI_SUBSTITUTED],
        "cpu.CPU_PATCHED": [(m, s) for m, s, _ in cpu.CPU_PATCHED],
    }
    assert listed == in_code


def test_each_layer_imports_only_the_layers_below_it():
    found = {}
    for layer, allowed in BELOW.items():
        for root, _, files in os.walk(os.path.join(PACKAGE, layer)):
            for name in files:
                if name.endswith(".py"):
                    with open(os.path.join(root, name)) as f:
                        used = set(re.findall(r"(?:from|import) openrlhf_3spo\.(\w+)", f.read())) - {layer, "settings", "io"}
                    if used - allowed:
                        found[os.path.relpath(os.path.join(root, name), REPO)] = sorted(used - allowed)
    assert found == {}


def test_nothing_patches_argparse_methods_or_rays_private_class_metadata():
    pattern = re.compile(r"ArgumentParser.parse_args|__ray_metadata__")
    hits = []
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(root, name)) as f:
                    hits += [f"{name}:{i}" for i, line in enumerate(f, 1) if pattern.search(line)]
    assert hits == []
