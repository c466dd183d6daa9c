"""ALFWorld on the real alfworld/textworld PDDL engine, as a TextEnv.

Facts this relies on (../shared/specs/alfworld.md): reset + replay of actions is deterministic; the
engine state lives in a C library and cannot be copied; an inadmissible command gives "Nothing
happens." and no state change; step cost is dominated by rendering admissible commands through
the grammar.
"""

import copy
import functools
import json
import os
import sys
from types import SimpleNamespace

from .base import Observation, label_root, root_of_label, state_digest

WIN_REWARD = 10.0
INVALID_PENALTY = 0.1
MAX_STEPS = 50
_BANNER = "-= Welcome to TextWorld, ALFRED! =-"
_TASK_PREFIX = "Your task is to: "
_REQUIRED_KEYS = ("pddl_domain", "grammar", "pddl_problem")


@functools.cache
def _engine():
    """Imports the engine once and memoises its pure, repeated parsing steps (process-wide).

    Every reset translates the PDDL problem twice, and every step re-parses the grammar's rule
    texts for each admissible command: all pure functions of their text. Cached, a step is about
    3x faster and a reset skips the translator; copying the grammar's contexts and symbols shallowly
    (below) makes a step 3-5x faster again. Tests check the output is unchanged.
    """
    import fast_downward
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler
    from textworld.core import GameState
    from textworld.envs import PddlEnv
    from textworld.envs.pddl import logic, textgen
    from textworld.logic import Rule

    fast_downward.pddl2sas = functools.lru_cache(maxsize=256)(fast_downward.pddl2sas)
    # Each engine dlopens its own copy of the planner library (about 13 ms, 1.7 MiB, never freed by
    # textworld): closed envs hand theirs back for reuse, since loading a game resets it.
    free_libs = []
    load_new_lib = fast_downward.load_lib
    fast_downward.load_lib = lambda: free_libs.pop() if free_libs else load_new_lib()
    # parsed domain + grammar; PddlState only adds the game's own types to it, the same each time
    logic.GameLogic = functools.lru_cache(maxsize=256)(logic.GameLogic)
    parse_symbols = functools.lru_cache(maxsize=None)(textgen._parse_and_convert)

    def copy_tree(symbol):
        """derive() sets the `context` of a symbol and of its child symbol (ListSymbol.symbol,
        ConditionalSymbol.expression) but never changes a context in place: copying the symbols
        alone does what a deepcopy did."""
        clone = copy.copy(symbol)
        for name in ("symbol", "expression"):
            if isinstance(getattr(clone, name, None), textgen.Symbol):
                setattr(clone, name, copy_tree(getattr(clone, name)))
        return clone

    # derive() mutates the parsed symbols: hand out copies
    textgen._parse_and_convert = lambda *args, **kwargs: [copy_tree(s) for s in parse_symbols(*args, **kwargs)]
    Rule.parse_conjunctive_query = functools.lru_cache(maxsize=None)(Rule.parse_conjunctive_query)
    # Each derivation step copies its context, deep-copying the variables (entity infos) and the
    # mapping: 3/4 of a step's time. Only these dicts are ever updated (textgen.query), never the
    # entities or logic variables in them, so copies of the dicts do.
    textgen.copy_context = lambda context: dict(context, variables=dict(context["variables"]), mapping=dict(context["mapping"]))
    infos = textworld.EnvInfos(won=True, admissible_commands=True)
    return SimpleNamespace(
        PddlEnv=PddlEnv,
        AlfredDemangler=AlfredDemangler,
        GameState=GameState,
        infos=infos,
        Operator=fast_downward.Operator,
        free_libs=free_libs,
    )


@functools.lru_cache(maxsize=1024)
def load_game(game_file: str) -> dict:
    """Reads and checks a game.tw-pddl file; errors name the file and the cause."""
    try:
        with open(game_file) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"ALFWorld game {game_file}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"ALFWorld game {game_file}: not a valid game.tw-pddl JSON file ({error})") from None
    if not isinstance(data, dict) or any(not isinstance(data.get(k), str) for k in _REQUIRED_KEYS):
        raise ValueError(f"ALFWorld game {game_file}: missing one of {list(_REQUIRED_KEYS)}")
    return data


def task_id_of(game_file: str) -> str:
    """split/task-folder/trial: stable across machines wherever $ALFWORLD_DATA lives."""
    return "/".join(os.path.normpath(os.path.abspath(game_file)).split(os.sep)[-4:-1])


class ALFWorldEnv:
    """One ALFWorld game. Observations carry the env state key: task id + the sorted PDDL facts."""

    def __init__(self, game_file, max_steps=MAX_STEPS, win_reward=WIN_REWARD, invalid_penalty=INVALID_PENALTY):
        self.game_file = str(game_file)
        self.task_id = task_id_of(self.game_file)
        self.max_steps, self.win_reward, self.invalid_penalty = max_steps, win_reward, invalid_penalty
        game = load_game(self.game_file)
        engine = _engine()
        self._pddl = engine.PddlEnv(engine.infos)
        self._tw = engine.AlfredDemangler(self._pddl, shuffle=False)  # shuffle would renumber objects
        try:
            self._call_engine(self._tw.load, game)
        except BaseException:
            self.close()
            raise
        self.task = ""
        self._obs = None
        self._operators = []  # operator ids applied since reset: a fork replays them
        self._steps = 0

    def _call_engine(self, fn, *args):
        argv = sys.argv  # Fast Downward's translator overwrites it on load and reset
        try:
            return fn(*args)
        except KeyError as error:
            if error.args == ("val1",):
                raise ValueError(f"ALFWorld game {self.game_file}: the goal is unreachable in this scene") from None
            raise
        except Exception as error:
            if type(error).__name__ in ("ParseError", "FailedParse", "FailedToken", "FailedPattern"):
                raise ValueError(f"ALFWorld game {self.game_file}: the PDDL does not parse ({error})") from None
            raise
        finally:
            sys.argv = argv

    def _observe(self, text, valid):
        state = self._pddl.state
        # the engine also keeps the negations of deleted facts: they record the path, not the state
        facts = sorted(str(fact) for fact in state["_facts"] if not fact.is_negation)
        won = bool(state["won"])
        return Observation(
            text=text,
            admissible_actions=list(state["admissible_commands"]),
            state_key=state_digest(self.task_id, *facts),
            reward=self.win_reward * won - (0.0 if valid else self.invalid_penalty),
            done=won or self._steps >= self.max_steps,
            won=won,
            valid=valid,
        )

    def _check_open(self, call):
        if getattr(self, "_pddl", None) is None:
            raise RuntimeError(f"ALFWorldEnv {self.task_id}: {call}() after close()")

    def reset(self) -> Observation:
        self._check_open("reset")
        state = self._call_engine(self._tw.reset)
        text = state.feedback.replace(_BANNER, "").strip()
        self.task = text.rsplit(_TASK_PREFIX, 1)[-1].strip().rstrip(".") if _TASK_PREFIX in text else ""
        self._operators, self._steps = [], 0
        self._obs = self._observe(text, valid=True)
        return self._obs

    def step(self, action: str) -> Observation:
        self._check_open("step")
        if self._obs is None:
            raise RuntimeError("ALFWorldEnv.step() before reset()")
        if self._obs.done:
            raise RuntimeError(f"ALFWorldEnv {self.task_id}: the episode is over; call reset()")
        self._steps += 1
        if isinstance(action, str) and action in self._obs.admissible_actions:
            state, _, _ = self._tw.step(action)
            self._operators.append(self._pddl._last_action.id)
            self._obs = self._observe(state.feedback, valid=True)
        else:  # the engine's answer to an inadmissible command, without its cost
            self._obs = self._observe("Nothing happens.", valid=False)
        return self._obs

    def fork(self) -> "ALFWorldEnv":
        """A new engine in the same state. The engine cannot copy its C state, so the clone starts from
        the freshly loaded initial state and re-applies the recorded operators directly, rendering
        only the final state's admissible commands (textworld 1.7's PddlEnv internals)."""
        self._check_open("fork")
        if self._obs is None:
            raise RuntimeError("ALFWorldEnv.fork() before reset()")
        clone = ALFWorldEnv(self.game_file, self.max_steps, self.win_reward, self.invalid_penalty)
        engine, pddl_env = _engine(), clone._pddl
        pddl_state, lib = pddl_env._pddl_state, pddl_env._pddl_state.downward_lib
        for op_id in self._operators:
            applicable = (engine.Operator * lib.get_applicable_operators_count())()
            lib.get_applicable_operators(applicable)
            pddl_state._operators = {op.id: op for op in applicable}
            pddl_state.apply(SimpleNamespace(id=op_id))
        pddl_env.state, pddl_env._last_action, pddl_env._moves = engine.GameState(), None, len(self._operators)
        pddl_env._gather_infos()
        clone.task, clone._operators, clone._steps = self.task, list(self._operators), self._steps
        clone._obs = copy.copy(self._obs)
        return clone

    def close(self):
        """Hands the engine's planner library back for reuse; the env is unusable afterwards."""
        if getattr(self, "_pddl", None) is not None:
            _engine().free_libs.append(self._pddl.downward_lib)
            self._pddl = self._tw = self._obs = None

    def __del__(self):
        self.close()


# ---- game collections: the official layout under $ALFWORLD_DATA, or the shipped games -----------

TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
SPLITS = ("train", "valid_seen", "valid_unseen")
SHIPPED_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "alfworld")


def data_root(root=None):
    """`root`, "shipped" for the games in this package, or $ALFWORLD_DATA (default ~/.cache/alfworld)."""
    if root == "shipped":
        return SHIPPED_DATA
    return os.path.expanduser(root or os.environ.get("ALFWORLD_DATA") or "~/.cache/alfworld")


def find_games(split, root=None, task_types=TASK_TYPES):
    """The playable games of a split, with ALFWorld's own skip rules; sorted."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    unknown = set(task_types) - set(TASK_TYPES)
    if unknown:
        raise ValueError(f"unknown ALFWorld task types {sorted(unknown)}; known: {TASK_TYPES}")
    split_dir = os.path.join(data_root(root), "json_2.1.1", split)
    if not os.path.isdir(split_dir):
        raise ValueError(
            f"ALFWorld data: no folder {split_dir} (set $ALFWORLD_DATA to the folder holding json_2.1.1/, "
            f"or use the shipped games)"
        )
    games = []
    for folder, _, files in os.walk(split_dir):
        if "traj_data.json" not in files or "movable" in folder or "Sliced" in folder:
            continue
        traj_file, game_file = os.path.join(folder, "traj_data.json"), os.path.join(folder, "game.tw-pddl")
        try:
            with open(traj_file) as f:
                task_type = json.load(f)["task_type"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise ValueError(f"ALFWorld data: {traj_file} is not a valid traj_data.json ({error!r})") from None
        if task_type in task_types and os.path.exists(game_file) and load_game(game_file).get("solvable") is True:
            games.append(game_file)
    if not games:
        raise ValueError(f"ALFWorld data: no playable game under {split_dir} for task types {list(task_types)}")
    return sorted(games)


def dataset_rows(split, root=None, task_types=TASK_TYPES):
    """OpenRLHF prompt-dataset rows; the label identifies the game relative to its data root."""
    base = data_root(root)
    rows = []
    for game_file in find_games(split, root, task_types):
        with open(os.path.join(os.path.dirname(game_file), "traj_data.json")) as f:
            task_type = json.load(f)["task_type"]
        label = {
            "env": "alfworld",
            "game": os.path.relpath(game_file, base),
            "root": label_root(root, "ALFWORLD_DATA"),
            "task_type": task_type,
        }
        rows.append({"input": f"ALFWorld {task_id_of(game_file)}", "label": json.dumps(label)})
    return rows


def game_file_of(label):
    """The game file a dataset label names (a JSON string or a dict, as written by dataset_rows)."""
    if isinstance(label, str):
        try:
            label = json.loads(label)
        except json.JSONDecodeError:
            raise ValueError(f"ALFWorld label is not JSON: {label[:200]!r}") from None
    if not isinstance(label, dict) or not isinstance(label.get("game"), str):
        raise ValueError(f"ALFWorld label has no 'game' path: {label!r}")
    return os.path.join(data_root(root_of_label(label)), label["game"])
