"""WebShopEnv on a small hand-made catalog: loading, goals, pages, navigation, actions, bad input."""

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openrlhf_3spo.envs import webshop
from openrlhf_3spo.envs.webshop import WebShopEnv, load_goals, load_products

ITEMS = [
    {"asin": "B0SHOE0001", "name": "Men's Trail Running Shoes Lightweight", "query": "Running Shoes",
     "product_category": "Clothing › Shoes › Men › Running", "category": "fashion", "pricing": "$45.00",
     "full_description": "A trail shoe.", "small_description": ["Breathable mesh upper", "Rubber sole"], "images": [],
     "customization_options": {"Color": [{"value": "Navy Blue", "image": None}, {"value": "Black", "image": None}],
                               "Size": [{"value": "9", "image": None}, {"value": "10", "image": None}]}},
    {"asin": "B0SHOE0002", "name": "Men's Road Running Shoes", "query": "running shoes",
     "product_category": "Clothing › Shoes › Men › Running", "category": "fashion", "pricing": "$20.00 - $30.00",
     "full_description": "For the road.", "small_description": "Cushioned", "images": [], "customization_options": None},
    {"asin": "B0BOTTLE01", "name": "Stainless Steel Water Bottle", "query": "water bottle",
     "product_category": "Sports › Outdoors › Hydration", "category": "sports", "pricing": "",
     "full_description": "Keeps water cold.", "small_description": [], "images": [], "customization_options": None},
    {"asin": "nan", "name": "skipped", "query": "x", "product_category": "x"},
]
ATTRIBUTES = {
    "B0SHOE0001": {"attributes": ["lightweight", "rubber sole"]},
    "B0SHOE0002": {"attributes": ["cushioned"]},
    "B0BOTTLE01": {"attributes": ["stainless steel"]},
}
INSTRUCTIONS = {
    "B0SHOE0001": [{"instruction": "i want lightweight trail running shoes in navy blue, size 10",
                    "instruction_attributes": ["lightweight"], "instruction_options": ["Navy Blue", "10"]},
                   {"instruction": "no attributes: skipped", "instruction_attributes": [], "instruction_options": []}],
    "B0BOTTLE01": [{"instruction": "a stainless steel water bottle", "instruction_attributes": ["stainless steel"],
                    "instruction_options": []}],
}


def _write(root, items=ITEMS, attributes=ATTRIBUTES, instructions=INSTRUCTIONS):
    for name, data in (("items_shuffle.json", items), ("items_ins_v2.json", attributes), ("items_human_ins.json", instructions)):
        (root / name).write_text(json.dumps(data))
    webshop.catalog.cache_clear()
    return str(root)


@pytest.fixture
def root(tmp_path):
    return _write(tmp_path)


def _goal(root, asin):
    return next(i for i, g in enumerate(webshop.catalog(root).goals) if g["asin"] == asin)


def test_products_and_goals_follow_upstream(root):
    cat = webshop.catalog(root)
    assert [p["asin"] for p in cat.products] == ["B0SHOE0001", "B0SHOE0002", "B0BOTTLE01"]  # "nan" skipped
    shoe, road, bottle = cat.products
    assert shoe["price"] == 45.0 and 20.0 <= road["price"] <= 30.0 and bottle["price"] == 100.0
    assert shoe["options"] == {"color": ["navy blue", "black"], "size": ["9", "10"]} and road["query"] == "running shoes"
    assert len(cat.goals) == 2  # the instruction without attributes is skipped
    goal = cat.goals[_goal(root, "B0SHOE0001")]
    # price 45: caps 50, 60, 70, 80; the larger of two sampled is at least 60
    assert goal["price_upper"] in (60.0, 70.0, 80.0)
    assert goal["instruction_text"].endswith(f", and price lower than {goal['price_upper']:.2f} dollars")
    assert goal["goal_options"] == ["navy blue", "10"] and goal["attributes"] == ["lightweight"]
    # a price with fewer than two caps below 1000: no cap
    goals = load_goals(load_products([dict(ITEMS[2], pricing="$995.00")], ATTRIBUTES), {"B0BOTTLE01": INSTRUCTIONS["B0BOTTLE01"]})
    assert goals[0]["price_upper"] == 1e6 and "price lower" not in goals[0]["instruction_text"]


def test_pages_and_a_perfect_purchase(root):
    env = WebShopEnv(_goal(root, "B0SHOE0001"), root)
    obs = env.reset()
    assert obs.text == f"WebShop [SEP] Instruction: [SEP] {env.task} [SEP] Search"
    assert obs.admissible_actions == ["search[<your query>]"]
    obs = env.step("search[trail running shoes]")
    head = f"Instruction: [SEP] {env.task} [SEP] Back to Search"
    assert obs.text.startswith(f"{head} [SEP] Page 1 (Total results: 2) [SEP] Next > [SEP] B0SHOE0001 [SEP] Men's Trail")
    assert "[SEP] $45.00" in obs.text and "< Prev" not in obs.text
    assert obs.admissible_actions == ["click[back to search]", "click[next >]", "click[b0shoe0001]", "click[b0shoe0002]"]
    obs = env.step("click[b0shoe0001]")
    assert obs.text == (
        f"{head} [SEP] < Prev [SEP] color [SEP] navy blue [SEP] black [SEP] size [SEP] 9 [SEP] 10 [SEP] "
        "Men's Trail Running Shoes Lightweight [SEP] Price: $45.00 [SEP] Rating: N.A. [SEP] Description [SEP] "
        "Features [SEP] Reviews [SEP] Buy Now"
    )
    assert env.step("click[features]").text == f"{head} [SEP] < Prev [SEP] Breathable mesh upper [SEP] Rubber sole"
    assert env.step("click[< prev]").text.startswith(f"{head} [SEP] < Prev [SEP] color")
    before = env.step("click[navy blue]")
    after = env.step("click[10]")
    assert before.state_key != after.state_key and env.options == {"color": "navy blue", "size": "10"}
    obs = env.step("click[buy now]")
    assert obs.done and obs.won and obs.reward == 10.0
    assert obs.text == "Thank you for shopping with us! [SEP] Your score (min 0.0, max 1.0) [SEP] 1.00"


def test_score_reward_mode_and_a_partial_purchase(root):
    env = WebShopEnv(_goal(root, "B0SHOE0001"), root, reward="score")
    env.reset()
    env.step("search[running shoes]")
    env.step("click[b0shoe0001]")
    obs = env.step("click[buy now]")  # no option chosen: (1 + 0 + 1) / (1 + 2 + 1) = 0.5
    assert obs.reward == pytest.approx(0.5) and not obs.won and obs.done


def test_navigation_back_and_prev(root):
    env = WebShopEnv(_goal(root, "B0BOTTLE01"), root)
    start = env.reset()
    env.step("search[shoes]")
    env.step("click[b0shoe0001]")
    env.step("click[black]")
    assert env.step("click[< prev]").text.startswith(f"Instruction: [SEP] {env.task} [SEP] Back to Search [SEP] Page 1")
    assert env.options == {}
    env.step("click[b0shoe0002]")
    back = env.step("click[back to search]")
    assert back.state_key == start.state_key and back.text == start.text  # query, options and product cleared
    # upstream searches from any page, though only the search page lists it
    env.step("search[bottle]")
    env.step("click[b0bottle01]")
    assert env.step("search[water]").text.split(" [SEP] ")[3] == "Page 1 (Total results: 1)"


@pytest.mark.parametrize("action", ["click[buy now]", "search[]", "search[" + "x" * 500 + "]", "click[b0shoe0001]", "buy", "", "🙂"])
def test_wrong_actions_are_invalid_and_change_nothing(root, action):
    env = WebShopEnv(_goal(root, "B0SHOE0001"), root)
    start = env.reset()
    obs = env.step(action)
    assert not obs.valid and obs.reward == pytest.approx(-0.1) and obs.state_key == start.state_key and obs.text == start.text


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=st.text(max_size=300))
def test_fuzzed_actions_never_raise(root, action):
    env = WebShopEnv(_goal(root, "B0SHOE0001"), root)
    env.reset()
    env.step("search[shoes]")
    obs = env.step(action)
    assert obs.valid or obs.reward == pytest.approx(-0.1)


def test_fork_is_independent(root):
    env = WebShopEnv(_goal(root, "B0SHOE0001"), root)
    env.reset()
    env.step("search[running shoes]")
    env.step("click[b0shoe0001]")
    clone = env.fork()
    clone.step("click[black]")
    assert env.options == {} and clone.options == {"color": "black"}
    assert env.step("click[black]").state_key == clone._observe(True).state_key


def test_max_steps(root):
    env = WebShopEnv(_goal(root, "B0SHOE0001"), root, max_steps=2)
    env.reset()
    assert not env.step("search[a]").done and env.step("search[b]").done


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["items"].append({"name": "no asin"}), "record 4 has no asin"),
        (lambda d: d["attributes"].pop("B0SHOE0002"), "B0SHOE0002 has no entry in the attribute file"),
        (lambda d: d["items"][0].pop("name"), "B0SHOE0001 \\(record 0\\) has no name"),
        (lambda d: d["items"][1].update(customization_options={"Color": ["red"]}), "B0SHOE0002 has malformed customization_options"),
        (lambda d: d.update(items=[]), "holds no products"),
        (lambda d: d.update(instructions={"B0BOTTLE01": [{"instruction_attributes": ["x"]}]}), "B0BOTTLE01 has no instruction text"),
    ],
)
def test_malformed_catalogs_name_the_record(tmp_path, change, message):
    data = {"items": json.loads(json.dumps(ITEMS)), "attributes": dict(ATTRIBUTES), "instructions": INSTRUCTIONS}
    change(data)
    root = _write(tmp_path, data["items"], data["attributes"], data["instructions"])
    with pytest.raises(ValueError, match=message):
        WebShopEnv(0, root)


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch):
    webshop.catalog.cache_clear()
    with pytest.raises(ValueError, match="no items_shuffle.json or items_shuffle_1000.json"):
        WebShopEnv(0, str(tmp_path))
    monkeypatch.delenv("WEBSHOP_DATA", raising=False)
    with pytest.raises(ValueError, match="WEBSHOP_DATA"):
        WebShopEnv(0)
    (tmp_path / "items_shuffle.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        WebShopEnv(0, str(tmp_path))


def test_dataset_rows_split_the_goals(root):
    from openrlhf_3spo.agents.textenv import make_env
    from openrlhf_3spo.envs.webshop import dataset_rows

    eval_rows, train_rows = dataset_rows("eval", root, eval_goals=1), dataset_rows("train", root, eval_goals=1)
    assert [json.loads(r["label"])["goal"] for r in eval_rows + train_rows] == [0, 1]
    assert json.loads(eval_rows[0]["label"])["root"] == os.path.abspath(root)  # the folder travels with the label
    assert eval_rows[0]["input"] == webshop.catalog(root).goals[0]["instruction_text"]
    with pytest.raises(ValueError, match="eval-goals"):
        dataset_rows("eval", root, eval_goals=500)
    # the default works on a small catalog: a quarter of the shipped 164 goals is eval
    shipped_eval, shipped_train = dataset_rows("eval", "shipped"), dataset_rows("train", "shipped")
    assert (len(shipped_eval), len(shipped_train)) == (41, 123)
    with pytest.raises(ValueError, match="split"):
        dataset_rows("test", root)
    # a row's label builds its env from the folder it names, with no $WEBSHOP_DATA
    env = make_env(train_rows[0]["label"])
    assert env.goal_index == 1 and env.reset().text.startswith("WebShop [SEP] Instruction:")


def _shipped():
    webshop.catalog.cache_clear()
    return webshop.catalog("shipped")


def test_shipped_catalog_loads_with_enough_goals():
    cat = _shipped()
    assert len(cat.products) >= 200 and len({p["category"] for p in cat.products}) >= 8 and len(cat.goals) >= 100


def test_every_shipped_goal_has_a_path_that_earns_1():
    """search[its product's title] -> click the product -> click each goal option -> buy now."""
    cat = _shipped()
    for i, goal in enumerate(cat.goals):
        env = WebShopEnv(i, "shipped")
        env.reset()
        product = cat.by_asin[goal["asin"].lower()]
        path = [f"search[{product['name'].lower()}]", f"click[{goal['asin'].lower()}]"]
        path += [f"click[{option}]" for option in goal["goal_options"]] + ["click[buy now]"]
        for action in path:
            obs = env.step(action)
            assert obs.valid, (i, action, obs.text[:300])
        assert obs.done and obs.won and obs.reward == 10.0, (i, env.score)


def test_a_negative_invalid_penalty_is_refused():
    with pytest.raises(ValueError, match="invalid_penalty must be a finite number >= 0"):
        WebShopEnv(0, "shipped", invalid_penalty=-0.1)  # it would turn into a bonus
