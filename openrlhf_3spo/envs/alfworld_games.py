"""ALFWorld games from compact scene descriptions, in the official layout, and the set this project ships.

The official games (`alfworld-download`) cannot be fetched everywhere, so the project ships its own small
set for tests and demos. A scene is a small dict (see `openrlhf_3spo/envs/data/alfworld/scenes.json`):

    {"name": "kitchen-mug-coffeemachine", "split": "train", "scene_num": 12,
     "task_type": "pick_and_place_simple", "object_target": "Mug", "parent_target": "CoffeeMachine",
     "toggle_target": "", "mrecep_target": "", "template": 0,
     "receptacles": {"CounterTop": 2, "Cabinet": 4, "CoffeeMachine": 1},
     "objects": [["Mug", "Cabinet", 3], ["Apple", "CounterTop", 1]],
     "opened": [["Cabinet", 1]]}

`objects` entries are (class, receptacle class, receptacle number by declaration); `opened` lists openable
receptacles that start open (the others start closed). Each scene becomes
`<root>/json_2.1.1/<split>/<task_type>-<Object>-<Mrecep|None>-<Parent>-<scene_num>/trial_T.../` holding
`game.tw-pddl` and `traj_data.json`. The game is checked with the engine's planner, its plan is stored as
`walkthrough`, and a replay in a fresh env must win exactly at the last command.

Regenerate the shipped set with `python -m openrlhf_3spo.envs.alfworld_games` (or `--out DIR`).
"""

import argparse
import hashlib
import json
import os
import re
import sys
from datetime import datetime, timedelta

import alfworld
import textworld
from alfworld.agents.environment.alfred_tw_env import AlfredDemangler
from alfworld.gen import constants, goal_library
from textworld.envs import PddlEnv
from tqdm import tqdm

from openrlhf_3spo.envs.alfworld import SHIPPED_DATA, SPLITS, TASK_TYPES
from openrlhf_3spo.io import atomic_write_text

SCENES_FILE = os.path.join(SHIPPED_DATA, "scenes.json")
GAMES_DIRNAME = "json_2.1.1"

# The domain and grammar the alfworld wheel ships; each game embeds its own copy.
DOMAIN_FILE = os.path.join(os.path.dirname(alfworld.__file__), "data", "alfred.pddl")
GRAMMAR_FILE = os.path.join(os.path.dirname(alfworld.__file__), "data", "alfred.twl2")

LAMPS = {"DeskLamp", "FloorLamp"}
# Static receptacles the text game knows: the keys of the compatibility table, less the ones you can carry.
RECEPTACLE_CLASSES = set(constants.VAL_RECEPTACLE_OBJECTS) - set(constants.MOVABLE_RECEPTACLES)
# Receptacles whose AI2-THOR id is "<Parent>|x|y|z|<Basin>": the demangler names them "<parent>basin".
BASINS = {"SinkBasin": "Sink", "BathtubBasin": "Bathtub"}

_PDDL_CHARS = {"-": "_minus_", "#": "-", "|": "_bar_", "+": "_plus_", ".": "_dot_", ",": "_comma_"}
_PDDL_CHARS_RE = re.compile("|".join(re.escape(c) for c in _PDDL_CHARS))


def fix_pddl_chars(text):
    """The official generator's character fixing, all at once: AI2-THOR ids become PDDL names
    (Apple|-01.23|+00.95|-00.05 -> Apple_bar__minus_01_dot_23_bar__plus_00_dot_95_bar__minus_00_dot_05)
    and goal_library's '#' type separators become '-'."""
    return _PDDL_CHARS_RE.sub(lambda m: _PDDL_CHARS[m.group(0)], text)


def _digest(*parts):
    """A stable integer from strings (no dependence on PYTHONHASHSEED or the random module)."""
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest(), "big")


def _unit(*parts):
    return (_digest(*parts) % 10**6) / 10**6


def _thor_id(cls, x, y, z):
    coords = f"{x:+06.2f}|{y:+06.2f}|{z:+06.2f}"
    if cls in BASINS:
        return f"{BASINS[cls]}|{coords}|{cls}"
    return f"{cls}|{coords}"


def _instance_ids(scene_name, kind, cls, count):
    """PDDL ids for `count` instances of a class. The demangler numbers a class in reverse sorted-id
    order, so the first coordinate decreases with the declaration number: instance k is displayed "cls k"."""
    ids = []
    for k in range(1, count + 1):
        x = 0.3 * (count - k) + 0.05 + 0.2 * _unit(scene_name, kind, cls, k, "x")
        y = 2.0 * _unit(scene_name, kind, cls, k, "y")
        z = 6.0 * _unit(scene_name, kind, cls, k, "z") - 3.0
        ids.append(fix_pddl_chars(_thor_id(cls, x, y, z)))
    return ids


def room_type(scene_num):
    for room, numbers in constants.SCENE_TYPE.items():
        if scene_num in numbers:
            return room
    raise ValueError(f"scene number {scene_num} is in no room range {dict(constants.SCENE_TYPE)}")


def validate_scene(scene):
    """Raises ValueError for a malformed description. Whether the goal can be reached is left to the planner."""
    name = scene.get("name", "<unnamed>")

    def fail(msg):
        raise ValueError(f"scene {name!r}: {msg}")

    for key in ("name", "split", "scene_num", "task_type", "object_target", "receptacles", "objects"):
        if key not in scene:
            fail(f"missing key {key!r}")
    if scene["split"] not in SPLITS:
        fail(f"split {scene['split']!r} is not one of {SPLITS}")
    task_type = scene["task_type"]
    if task_type not in TASK_TYPES:
        fail(f"task_type {task_type!r} is not one of {TASK_TYPES}")
    try:
        room = room_type(scene["scene_num"])
    except ValueError as e:
        fail(str(e))
    if room not in constants.GOALS_VALID[task_type]:
        fail(f"{task_type} is not a {room} task (scene_num {scene['scene_num']})")
    template = scene.get("template", 0)
    if not isinstance(template, int) or not 0 <= template < len(goal_library.gdict[task_type]["templates"]):
        fail(f"template {template} out of range for {task_type}")
    if scene.get("mrecep_target"):
        fail("movable-receptacle tasks are not supported (the text engine skips them)")
    if task_type == "look_at_obj_in_light":
        if scene.get("toggle_target") not in LAMPS or scene.get("parent_target"):
            fail(f"look_at_obj_in_light needs toggle_target in {sorted(LAMPS)} and an empty parent_target")
    elif not scene.get("parent_target") or scene.get("toggle_target"):
        fail(f"{task_type} needs a parent_target and an empty toggle_target")

    receptacles = scene["receptacles"]
    for cls, count in receptacles.items():
        if cls not in RECEPTACLE_CLASSES:
            fail(f"unknown receptacle class {cls!r} (known: {sorted(RECEPTACLE_CLASSES)})")
        if not isinstance(count, int) or count < 1:
            fail(f"receptacle count for {cls} must be a positive int, got {count!r}")
    for entry in scene["objects"]:
        if len(entry) != 3:
            fail(f"object entry {entry!r} is not (class, receptacle class, receptacle number)")
        cls, rcls, number = entry
        if cls not in constants.OBJECTS_SET or cls in RECEPTACLE_CLASSES:
            fail(f"unknown object class {cls!r}")
        if rcls not in receptacles or not 1 <= number <= receptacles[rcls]:
            fail(f"object {cls} is in {rcls} {number}, which the scene does not declare")
        # Lamps stand where they are; every other object must fit where it starts.
        if cls not in LAMPS and cls not in constants.VAL_RECEPTACLE_OBJECTS[rcls]:
            fail(f"a {cls} cannot be in a {rcls} (alfworld.gen.constants.VAL_RECEPTACLE_OBJECTS)")
    for rcls, number in scene.get("opened", []):
        if rcls not in constants.OPENABLE_CLASS_SET or not 1 <= number <= receptacles.get(rcls, 0):
            fail(f"opened entry {rcls} {number} is not a declared openable receptacle")


def task_text(scene):
    template = goal_library.gdict[scene["task_type"]]["templates"][scene.get("template", 0)]
    return template.format(
        obj=scene["object_target"].lower(),
        recep=scene.get("parent_target", "").lower(),
        toggle=scene.get("toggle_target", "").lower(),
        mrecep=scene.get("mrecep_target", "").lower(),
    )


def trial_name(scene):
    """An official-looking, stable trial folder name (trial_TYYYYMMDD_HHMMSS_micro)."""
    d = _digest(scene["name"], "trial")
    when = datetime(2019, 6, 1) + timedelta(seconds=d % (120 * 86400))
    return f"trial_T{when:%Y%m%d_%H%M%S}_{(d >> 64) % 10**6:06d}"


def game_relpath(scene):
    """json_2.1.1/<split>/<task folder>/<trial>, the folder that holds the game's two files. As in the
    official data, the slot after Mrecep names the parent receptacle, or the lamp for the light task."""
    parent = scene.get("parent_target") or scene.get("toggle_target")
    mrecep = scene.get("mrecep_target") or "None"
    folder = "-".join([scene["task_type"], scene["object_target"], mrecep, parent, str(scene["scene_num"])])
    return os.path.join(GAMES_DIRNAME, scene["split"], folder, trial_name(scene))


def _locations(scene_name, count):
    """`count` distinct navigation points loc|x|z|rotation|horizon (as in the official games)."""
    seen, locs = set(), []
    attempt = 0
    while len(locs) < count:
        d = _digest(scene_name, "loc", attempt)
        attempt += 1
        loc = (d % 31 - 15, (d >> 8) % 31 - 15, (d >> 16) % 4, 15 * ((d >> 24) % 5))
        if loc[:2] not in seen:
            seen.add(loc[:2])
            locs.append(fix_pddl_chars("loc|%d|%d|%d|%d" % loc))
    return locs


def build_problem(scene):
    """The PDDL problem text for a (validated) scene."""
    name, task_type = scene["name"], scene["task_type"]

    receptacles = {}  # (class, number) -> id
    for cls, count in scene["receptacles"].items():
        for k, rid in enumerate(_instance_ids(name, "receptacle", cls, count), start=1):
            receptacles[cls, k] = rid
    # One location per receptacle, plus the agent's start, which no receptacle shares.
    *recep_locs, start_loc = _locations(name, len(receptacles) + 1)
    recep_loc = dict(zip(receptacles.values(), recep_locs))

    counts = {}
    for cls, _, _ in scene["objects"]:
        counts[cls] = counts.get(cls, 0) + 1
    ids_by_class = {cls: iter(_instance_ids(name, "object", cls, n)) for cls, n in counts.items()}
    objects = [(cls, next(ids_by_class[cls]), receptacles[rcls, number]) for cls, rcls, number in scene["objects"]]

    # Declare every type the goal names too, so that a missing one reads as an unreachable goal.
    rtypes = sorted(set(scene["receptacles"]) | {scene.get("parent_target", "")} - {""})
    otypes = sorted({cls for cls, _, _ in objects} | {scene["object_target"], scene.get("toggle_target", "")} - {""})

    opened = {receptacles[rcls, number] for rcls, number in scene.get("opened", [])}
    rclass = {rid: cls for (cls, _), rid in receptacles.items()}

    decl = ["agent1 - agent"]
    decl += [f"{t}Type - otype" for t in otypes]
    decl += [f"{t}Type - rtype" for t in rtypes]
    decl += [f"{oid} - object" for _, oid, _ in objects]
    decl += [f"{rid} - receptacle" for rid in receptacles.values()]
    decl += [f"{loc} - location" for loc in recep_locs + [start_loc]]

    init = [f"(receptacleType {rid} {rclass[rid]}Type)" for rid in receptacles.values()]
    init += [f"(objectType {oid} {cls}Type)" for cls, oid, _ in objects]
    # Without canContain, `move X to Y` is never admissible: one fact per compatible (receptacle, object) type.
    scene_otypes = sorted({cls for cls, _, _ in objects})
    init += [
        f"(canContain {r}Type {o}Type)"
        for r in rtypes
        for o in scene_otypes
        if o in constants.VAL_RECEPTACLE_OBJECTS.get(r, ())
    ]
    init += [f"(openable {rid})" for rid in receptacles.values() if rclass[rid] in constants.OPENABLE_CLASS_SET]
    init += [f"(opened {rid})" for rid in receptacles.values() if rid in opened]
    init += [f"(pickupable {oid})" for cls, oid, _ in objects if cls not in LAMPS]
    for fact, group in (("cleanable", "Cleanable"), ("heatable", "Heatable"), ("coolable", "Coolable")):
        init += [f"({fact} {oid})" for cls, oid, _ in objects if cls in constants.VAL_ACTION_OBJECTS[group]]
    init += [f"(toggleable {oid})" for cls, oid, _ in objects if cls in LAMPS]
    init += [f"(inReceptacle {oid} {rid})" for _, oid, rid in objects]
    init += [f"(objectAtLocation {oid} {recep_loc[rid]})" for _, oid, rid in objects]
    init += [f"(receptacleAtLocation {rid} {recep_loc[rid]})" for rid in receptacles.values()]
    init.append(f"(atLocation agent1 {start_loc})")

    goal = goal_library.gdict[task_type]["pddl"].format(
        obj=scene["object_target"],
        recep=scene.get("parent_target", ""),
        toggle=scene.get("toggle_target", ""),
        mrecep=scene.get("mrecep_target", ""),
    )
    indent = "\n        "
    # The goal template closes the `(define` itself, as in the official generator.
    return (
        f"(define (problem plan_{trial_name(scene)})\n"
        "    (:domain alfred)\n"
        f"    (:objects{indent}{indent.join(decl)}\n    )\n"
        f"    (:init{indent}{indent.join(init)}\n    )\n"
        f"{fix_pddl_chars(goal).strip()}\n"
    )


def new_env():
    """A PddlEnv as the official loader wraps it, with the planner's plan in `extra.walkthrough` (used when the
    game has none). shuffle=False keeps the display numbers fixed (object k of a class is "cls k")."""
    infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["walkthrough"])
    return AlfredDemangler(PddlEnv(infos), shuffle=False)


def _load_and_reset(env, game, scene_name):
    """Load + reset. Fast Downward's translator overwrites sys.argv, so it is restored; an unreachable goal
    makes the translator drop the goal variable and the engine fail with KeyError: 'val1'."""
    argv = sys.argv
    try:
        env.load(game)
        return env.reset()
    except KeyError as e:
        raise ValueError(
            f"scene {scene_name!r}: the goal is unreachable from the initial state (engine: KeyError {e})"
        ) from e
    finally:
        sys.argv = argv


def plan_and_verify(game, scene_name, expected_receptacles=None):
    """Plans the game with the engine's planner and replays the plan in a fresh env.

    Returns the walkthrough (list of commands). Raises ValueError (naming the scene) when the goal is
    unreachable or already true at the start, when a plan step is not admissible or the replay is not won
    exactly at its last step, or when the start does not offer `go to` for every declared receptacle."""
    game = {k: v for k, v in game.items() if k != "walkthrough"}  # without one, the engine plans
    state = _load_and_reset(new_env(), game, scene_name)
    walkthrough = list(state["extra.walkthrough"])
    if state["won"]:
        raise ValueError(f"scene {scene_name!r}: the goal already holds in the initial state")
    if not walkthrough:
        raise ValueError(f"scene {scene_name!r}: the planner found no plan (unsolvable scene)")

    env = new_env()
    state = _load_and_reset(env, dict(game, walkthrough=walkthrough), scene_name)
    go_to = [c for c in state["admissible_commands"] if c.startswith("go to ")]
    if expected_receptacles is not None and len(go_to) != expected_receptacles:
        raise ValueError(
            f"scene {scene_name!r}: {expected_receptacles} receptacles declared, the start offers {len(go_to)} `go to`"
        )
    for i, command in enumerate(walkthrough):
        if command not in state["admissible_commands"]:
            raise ValueError(f"scene {scene_name!r}: plan step {i} {command!r} is not admissible")
        state, _, _ = env.step(command)
        last = i == len(walkthrough) - 1
        if state["won"] != last:
            raise ValueError(
                f"scene {scene_name!r}: the replay {'is not won' if last else 'is won early'} at step {i} ({command!r})"
            )
    return walkthrough


def make_game(scene):
    """-> (relative game folder, game.tw-pddl dict, traj_data dict) for a scene, checked by the planner."""
    validate_scene(scene)
    text = task_text(scene)
    with open(DOMAIN_FILE) as f:
        domain = f.read()
    with open(GRAMMAR_FILE) as f:
        grammar = f.read().replace("UNKNOWN GOAL", text)
    game = {
        "pddl_domain": domain,
        "grammar": grammar,
        "pddl_problem": build_problem(scene),
        "solvable": True,
    }
    game["walkthrough"] = plan_and_verify(game, scene["name"], sum(scene["receptacles"].values()))

    relpath = game_relpath(scene)
    traj_data = {
        "task_id": os.path.basename(relpath),
        "task_type": scene["task_type"],
        "scene": {"scene_num": scene["scene_num"], "floor_plan": f"FloorPlan{scene['scene_num']}"},
        "scene_name": scene["name"],
        "pddl_params": {
            "object_target": scene["object_target"],
            "parent_target": scene.get("parent_target", ""),
            "toggle_target": scene.get("toggle_target", ""),
            "mrecep_target": scene.get("mrecep_target", ""),
            "object_sliced": False,
        },
        "turk_annotations": {"anns": [{"task_desc": scene.get("task_desc") or text[0].upper() + text[1:] + "."}]},
    }
    return relpath, game, traj_data


def write_game(scene, root):
    """Generates, checks and writes one scene's game under root; returns the game folder."""
    relpath, game, traj_data = make_game(scene)
    folder = os.path.join(root, relpath)
    # The official loader looks for traj_data.json, so it is written last: its presence means a complete game.
    atomic_write_text(os.path.join(folder, "game.tw-pddl"), json.dumps(game, indent=2) + "\n")
    atomic_write_text(os.path.join(folder, "traj_data.json"), json.dumps(traj_data, indent=2) + "\n")
    return folder


def load_scenes(path=SCENES_FILE):
    with open(path) as f:
        scenes = json.load(f)
    names = [scene["name"] for scene in scenes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate scene names {duplicates}")
    folders = [game_relpath(scene) for scene in scenes]
    clashes = sorted({f for f in folders if folders.count(f) > 1})
    if clashes:
        raise ValueError(f"{path}: several scenes map to the same game folder: {clashes}")
    return scenes


def main(argv=None):
    parser = argparse.ArgumentParser(description="Regenerate the shipped ALFWorld games from their scene descriptions.")
    parser.add_argument("--out", default=SHIPPED_DATA, help="root folder; games go to OUT/json_2.1.1/<split>/...")
    parser.add_argument("--scenes", default=SCENES_FILE, help="JSON list of scene descriptions")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="regenerate only these scenes")
    # Parse before the first game loads: Fast Downward's translator overwrites sys.argv.
    args = parser.parse_args(argv)

    scenes = load_scenes(args.scenes)
    if args.only:
        unknown = sorted(set(args.only) - {scene["name"] for scene in scenes})
        if unknown:
            parser.error(f"unknown scene names: {unknown}")
        scenes = [scene for scene in scenes if scene["name"] in args.only]
    for scene in tqdm(scenes, desc="ALFWorld games", unit="game"):
        write_game(scene, args.out)
    print(f"wrote {len(scenes)} games under {os.path.join(args.out, GAMES_DIRNAME)}")


if __name__ == "__main__":
    main()
