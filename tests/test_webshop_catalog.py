"""The shipped WebShop catalog: schema, counts, solvable goals, near-duplicates, and reproducibility."""

import collections
import importlib.util
import json
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the generator is a development tool, outside the package
_spec = importlib.util.spec_from_file_location("make_webshop_catalog", os.path.join(REPO, "scripts", "make_webshop_catalog.py"))
webshop_catalog = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(webshop_catalog)
ATTRIBUTES_FILE, HUMAN_INSTRUCTIONS_FILE, PRODUCTS_FILE = (
    webshop_catalog.ATTRIBUTES_FILE, webshop_catalog.HUMAN_INSTRUCTIONS_FILE, webshop_catalog.PRODUCTS_FILE)
FAMILIES, SHIPPED_DATA = webshop_catalog.FAMILIES, webshop_catalog.SHIPPED_DATA

FILES = (PRODUCTS_FILE, ATTRIBUTES_FILE, HUMAN_INSTRUCTIONS_FILE)


def _load(name):
    with open(os.path.join(SHIPPED_DATA, name), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def catalog():
    return _load(PRODUCTS_FILE), _load(ATTRIBUTES_FILE), _load(HUMAN_INSTRUCTIONS_FILE)


def _goals(human):
    return [(asin, entry) for asin, entries in human.items() for entry in entries]


def _option_values(product):
    return {v["value"].lower() for values in (product["customization_options"] or {}).values() for v in values}


def test_products_schema(catalog):
    products, _, _ = catalog
    assert len(products) >= 200
    assert len({p["category"] for p in products}) >= 8
    asins = [p["asin"] for p in products]
    assert len(set(asins)) == len(asins)
    assert all(len(a) == 10 and re.fullmatch(r"B0[A-Z0-9]{8}", a) for a in asins)
    keys = {"asin", "name", "full_description", "small_description", "pricing", "images", "category", "query",
            "product_category", "customization_options"}
    for p in products:
        assert set(p) == keys
        assert p["name"] and p["full_description"] and p["small_description"]
        assert isinstance(p["small_description"], list) and isinstance(p["images"], list)
        assert p["query"] == p["query"].lower()
        assert len(p["product_category"].split(" \u203a ")) >= 3
        assert re.fullmatch(r"(\$\d+\.\d\d( - \$\d+\.\d\d)?)?", p["pricing"])
        options = p["customization_options"]
        assert options is None or all(
            values and all(set(v) == {"value", "image"} and "/" not in v["value"] for v in values)
            for values in options.values()
        )
    pricing = [p["pricing"] for p in products]
    assert 1 <= pricing.count("") <= 2 and any(" - " in x for x in pricing)


def test_every_product_has_attributes(catalog):
    products, attributes, _ = catalog
    assert set(attributes) == {p["asin"] for p in products}
    for entry in attributes.values():
        assert set(entry) == {"attributes", "instruction", "instruction_attributes"}
        assert 2 <= len(entry["attributes"]) <= 5
        assert all(a == a.lower() for a in entry["attributes"])


def test_human_instructions(catalog):
    products, attributes, human = catalog
    by_asin = {p["asin"]: p for p in products}
    nouns = {family["query"]: family["noun"] for family in FAMILIES}  # query -> the kind's noun in titles
    goals = _goals(human)
    assert len(human) >= 100 and len(goals) >= 100
    assert any(len(entries) == 2 for entries in human.values())
    assert sum(not entry["instruction_options"] for _, entry in goals) >= 15
    for asin, entry in goals:
        product = by_asin[asin]
        assert entry["asin"] == asin and entry["assignment_id"]
        text = entry["instruction"]
        assert 1 <= len(entry["instruction_attributes"]) <= 3 and len(entry["instruction_options"]) <= 2
        assert nouns[product["query"]] in text and nouns[product["query"]] in product["name"].lower()
        for attribute in entry["instruction_attributes"]:
            assert attribute in attributes[asin]["attributes"] and attribute in text
        for option in entry["instruction_options"]:
            assert option in _option_values(product) and option in text


def test_near_duplicates(catalog):
    products, attributes, human = catalog
    groups = collections.defaultdict(list)
    for p in products:
        groups[p["query"]].append(p)
    shared = [q for q, group in groups.items() if len(group) >= 3]
    assert len(shared) >= 20
    for q in shared:
        assert len({p["product_category"] for p in groups[q]}) == 1
        assert len({p["name"] for p in groups[q]}) == len(groups[q])
    by_asin = {p["asin"]: p for p in products}
    # every goal has a near-duplicate that lacks one of its attributes or options
    for asin, entry in _goals(human):
        others = [p for p in groups[by_asin[asin]["query"]] if p["asin"] != asin]
        assert any(
            not set(entry["instruction_attributes"]) <= set(attributes[p["asin"]]["attributes"])
            or not set(entry["instruction_options"]) <= _option_values(p)
            for p in others
        )


def test_goal_products_found_by_their_title(catalog):
    from openrlhf_3spo.envs.webshop import SearchIndex, product_text

    products, _, human = catalog
    index = SearchIndex([product_text(p) for p in products])
    position = {p["asin"]: i for i, p in enumerate(products)}
    for asin in human:
        i = position[asin]
        assert i in index.search(products[i]["name"].lower(), 10)


def test_small_enough():
    assert sum(os.path.getsize(os.path.join(SHIPPED_DATA, name)) for name in FILES) < 600_000


def test_generator_reproduces_shipped_files(tmp_path):
    assert webshop_catalog.main(["--out", str(tmp_path), "--no-search-check"]) == 0
    for name in FILES:
        with open(os.path.join(SHIPPED_DATA, name), "rb") as shipped, open(tmp_path / name, "rb") as made:
            assert made.read() == shipped.read(), name


def test_the_generator_judges_option_values_by_the_rewards_rule():
    """The generator counts the near-duplicates that satisfy a goal with the purchase reward's own
    option rule (it once had a colour rule of its own that took "Navy Blue" and "Royal Blue" apart,
    which the reward scores as the same colour)."""
    pairs = {("Navy Blue", "Royal Blue"): 1, ("Olive Green", "Army Green"): 1, ("pack of 2", "pack of 24"): 1,
             ("Red", "Blue"): 0, ("8", "8.5"): 1, ("Small", "X-Large"): 0}
    for (wanted, offered), satisfied in pairs.items():
        near_duplicate = (None, None, None, ["w:cotton"], [("color", [offered], "color")])
        assert webshop_catalog._satisfied_by(["w:cotton"], [("color", wanted)], [near_duplicate]) == satisfied, wanted
