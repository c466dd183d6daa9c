"""WebShop purchase reward and search, against values worked out by hand."""


import pytest

from openrlhf_3spo.envs.webshop import SearchIndex, nouns, product_text, purchase_reward, type_reward

GOAL = {
    "asin": "B0SHOE0001",
    "query": "running shoes",
    "product_category": "Clothing › Shoes › Men › Running",
    "name": "Men's Trail Running Shoes",  # nouns: men, trail, running, shoes
    "attributes": ["lightweight", "rubber sole"],
    "goal_options": ["navy blue", "size 10"],
    "price_upper": 50.0,
}
SHOE = {
    "asin": "B0SHOE0001",
    "name": "Men's Trail Running Shoes Lightweight",
    "query": "running shoes",
    "product_category": "Clothing › Shoes › Men › Running",
    "small_description": ["Breathable mesh upper"],
    "full_description": "A trail shoe.",
    "attributes": ["lightweight", "rubber sole", "breathable"],
}
RIGHT = {"color": "Navy Blue", "size": "10"}


def test_perfect_purchase():
    # attributes 2/2, options 2/2 ("navy blue" and "Navy Blue" both normalise to "blue"; "size 10" and
    # "10": token-set ratio 100), price 45 <= 50: (2 + 2 + 1) / (2 + 2 + 1) * r_type 1 = 1
    assert purchase_reward(GOAL, SHOE, RIGHT, 45.0) == 1.0


def test_wrong_option():
    # "blue" against "black": token-set ratio 44, against "10": 0 -> one option of two: (2 + 1 + 1) / 5
    assert purchase_reward(GOAL, SHOE, {"color": "Black", "size": "10"}, 45.0) == pytest.approx(0.8)


def test_over_the_price_cap():
    assert purchase_reward(GOAL, SHOE, RIGHT, 60.0) == pytest.approx(0.8)  # (2 + 2 + 0) / 5


def test_wrong_product_in_the_same_category():
    road = {
        "name": "Men's Road Running Shoes",
        "query": "running shoes",
        "product_category": "Clothing › Shoes › Men › Running",
        "full_description": "Rubber sole for the road.",
        "attributes": ["cushioned"],
    }
    # "lightweight": no attribute near it, not in the text; "rubber sole": in the description (substring)
    # options 2, price 1: (1 + 2 + 1) / 5 = 0.8; query matches, nouns {men, road, running, shoes}: 3/4 -> r_type 1
    assert type_reward(GOAL, road) == 1.0
    assert purchase_reward(GOAL, road, RIGHT, 40.0) == pytest.approx(0.8)


def test_wrong_category_and_query_gets_the_type_penalty():
    bottle = {
        "name": "Stainless Steel Water Bottle",
        "query": "water bottle",
        "product_category": "Sports › Outdoors › Hydration",
        "attributes": ["lightweight"],
    }
    # raw (1 attribute + 0 options + price) / 5 = 0.4, but no shared noun: r_type 0
    assert type_reward(GOAL, bottle) == 0.0 and purchase_reward(GOAL, bottle, {}, 20.0) == 0.0
    # one shared noun of four (0.25 > 0.2): r_type stays 1 even with another query and category
    assert type_reward(GOAL, dict(bottle, name="Trail Water Bottle")) == 1.0
    # one of seven (0.14): none of query, category, title > 0.2 -> 0.5
    long_goal = dict(GOAL, name="Men's Trail Running Shoes with Breathable Mesh Upper")
    assert len(nouns(long_goal["name"])) == 7
    assert type_reward(long_goal, dict(bottle, name="Trail Water Bottle")) == 0.5
    # one of eleven (0.09 < 0.1): 0.1
    longer_goal = dict(long_goal, name=long_goal["name"] + " Grip Outsole Heel Toe")
    assert len(nouns(longer_goal["name"])) == 11
    assert type_reward(longer_goal, dict(bottle, name="Trail Water Bottle")) == 0.1
    # two "›" parts in common is a category match: 0.5 does not apply
    assert type_reward(long_goal, dict(bottle, name="Trail Water Bottle", product_category="Clothing › Shoes › Kids")) == 1.0


def test_goal_without_options():
    goal = dict(GOAL, goal_options=[])
    assert purchase_reward(goal, SHOE, {}, 45.0) == 1.0  # (2 + 0 + 1) / (2 + 0 + 1)
    assert purchase_reward(goal, SHOE, {}, 51.0) == pytest.approx(2 / 3)


def test_noun_rule():
    assert nouns("Men's Trail-Running Shoes, for the 2 of us") == {"men", "trail", "running", "shoes", "us"}


def test_search_ranks_by_bm25_with_lucene_parameters():
    docs = ["red running shoes", "running shoes running shoes", "blue water bottle", "the x 10 pack"]
    index = SearchIndex(docs)
    assert index.search("running shoes") == [1, 0]  # bottle and pack match no term: not returned
    assert index.search("shoe") == [1, 0]  # Porter stemming: shoe = shoes
    assert index.search("the bottle") == [2]  # "the" is a stop word
    assert index.search("x") == [3] and index.search("10") == [3]  # single characters and digits kept
    assert index.search("the") == [] and index.search("zzz") == []
    # by hand: term weight tf (k1 + 1) / (tf + k1 (1 - b + b dl / avgdl)), avgdl = (3 + 4 + 3 + 3) / 4 = 3.25
    # (stop words out); both query terms have the same idf, so doc 1 / doc 0 = w(2, 4) / w(1, 3)
    def weight(tf, dl):
        return tf * 1.9 / (tf + 0.9 * (0.6 + 0.4 * dl / 3.25))

    docs_, scores = index.index.retrieve(index._tokenize(["running shoes"]), k=2, show_progress=False)
    assert scores[0][0] / scores[0][1] == pytest.approx(weight(2, 4) / weight(1, 3), rel=1e-5)


def test_product_text_for_search():
    product = dict(SHOE, customization_options={"Color": [{"value": "Navy Blue"}, {"value": "Black"}], "Size": [{"value": "10"}]})
    assert product_text(product) == (
        "men's trail running shoes lightweight a trail shoe. breathable mesh upper color: navy blue, black, and size: 10"
    )


def test_search_index_is_cached_on_disk(tmp_path):
    docs = ["red running shoes", "running shoes running shoes", "blue water bottle"]
    built = SearchIndex(docs, str(tmp_path))
    (folder,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    loaded = SearchIndex(docs, str(tmp_path))  # from the cache
    assert loaded.search("running shoes") == built.search("running shoes") == [1, 0]
    assert loaded.search("bottle") == [2]
    SearchIndex(docs + ["green tea"], str(tmp_path))  # other texts, another cache entry
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 2 and folder.exists()
