"""WebShop (text mode), implemented from the benchmark's documented behaviour (../shared/specs/webshop.md):
the catalog in the upstream schema, goals, BM25 search with Lucene's parameters, the pages and
actions, and the purchase reward. Point `WEBSHOP_DATA` at the upstream files (1k or 12k products), or
use the catalog shipped with the package.
"""

import functools
import json
import logging
import os
import random
import re
import shutil
import tempfile

from .base import Observation, label_root, state_digest
from .prompting import SEARCH_TEMPLATE as SEARCH_ACTION

from rapidfuzz import fuzz, utils

logger = logging.getLogger(__name__)

SEP = " [SEP] "
MATCH_THRESHOLD = 85
# stop words of Lucene's English analyzer, also used by the noun rule below
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these they "
    "this to was will with".split()
)
# colour words an option value is normalised to (the first one it contains), as upstream does
COLORS = (
    "black", "white", "grey", "gray", "silver", "gold", "red", "pink", "purple", "blue", "navy", "green",
    "yellow", "orange", "brown", "beige", "khaki", "ivory", "cream", "tan", "multi", "clear",
)


def fuzzy_ratio(a, b):
    """thefuzz's token_set_ratio: lowercase, punctuation to spaces, rounded to an integer."""
    return round(fuzz.token_set_ratio(a, b, processor=utils.default_process))


def _bullets(product):
    bullets = product.get("small_description") or []
    return [bullets] if isinstance(bullets, str) else list(bullets)


def nouns(text):
    """The noun rule for the type score: alphabetic tokens of two letters or more that are not stop
    words (upstream uses a spaCy tagger, which this project cannot install)."""
    return {t for t in re.findall(r"[a-z]+", text.lower()) if len(t) > 1 and t not in STOP_WORDS}


def _normalize_option(value):
    value = value.lower()
    return next((color for color in COLORS if color in value.split()), value)


def options_match(wanted, have):
    """Whether the purchase reward counts option value `have` as the goal's `wanted`: the same colour
    word, or a fuzzy match over the threshold (so "pack of 2" and "pack of 24", "8" and "8.5")."""
    return fuzzy_ratio(_normalize_option(wanted), _normalize_option(have)) > MATCH_THRESHOLD


def purchase_reward(goal, product, options, price):
    """The score of buying `product` with `options` ({name: value}) at `price`, for `goal`: in [0, 1].

    total = (attributes matched + options matched + [price <= price_upper])
            / (len(goal attributes) + len(goal options) + 1) * r_type
    """
    title = product.get("name") or ""
    texts = " ".join([title, " ".join(_bullets(product)), product.get("full_description") or ""]).lower()
    attributes = product.get("attributes") or []
    n_attributes = sum(
        any(fuzzy_ratio(wanted, have) > MATCH_THRESHOLD for have in attributes) or wanted.lower() in texts
        for wanted in goal["attributes"]
    )
    goal_options = list(goal["goal_options"].values()) if isinstance(goal["goal_options"], dict) else list(goal["goal_options"])
    n_options = sum(any(options_match(wanted, have) for have in options.values()) for wanted in goal_options)
    r_price = price <= goal["price_upper"]
    total = (n_attributes + n_options + r_price) / (len(goal["attributes"]) + len(goal_options) + 1)
    return total * type_reward(goal, product)


def type_reward(goal, product):
    """r_type: 1 for the right kind of product, down to 0 when the bought title shares no noun."""
    query_match = product.get("query") == goal["query"]
    parts = lambda text: {p.strip() for p in (text or "").split("›")}  # noqa: E731
    category_match = len(parts(product.get("product_category")) & parts(goal["product_category"])) >= 2
    wanted = nouns(goal["name"])
    title_score = len(nouns(product.get("name") or "") & wanted) / len(wanted) if wanted else 0.2
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return r_type


# ---- search ------------------------------------------------------------------------------------


def option_text(product):
    options = product.get("customization_options") or {}
    return ", and ".join(f"{name}: {', '.join(v['value'] for v in values)}" for name, values in options.items())


def product_text(product):
    """What search sees: title, description, first bullet point and option text, lowercased."""
    bullets = _bullets(product)
    parts = [product.get("name") or "", product.get("full_description") or "", bullets[0] if bullets else ""]
    return " ".join(parts + [option_text(product)]).lower()


class SearchIndex:
    """BM25 with Lucene's defaults (k1 0.9, b 0.4, English stop words, Porter stemming, single
    characters and digits kept); only documents matching a query term come back, best first."""

    TOKENS = r"(?u)\b\w+\b"

    def __init__(self, texts, cache_dir=None):
        """With `cache_dir`, the index is loaded from there when it was built for the same texts, and
        saved there (atomically) otherwise. A cache that does not load (corrupt, truncated) is
        rebuilt."""
        import bm25s
        import Stemmer

        self._bm25s, self._stemmer = bm25s, Stemmer.Stemmer("english")
        self.size = len(texts)
        path = os.path.join(cache_dir, state_digest(*texts)) if cache_dir else None
        if path and os.path.exists(path):
            try:
                self.index = bm25s.BM25.load(path, show_progress=False)
                return
            except Exception as error:  # bm25s raises what its json / numpy readers raise
                logger.warning(f"rebuilding the search index: its cache {path} does not load ({error})")
                shutil.rmtree(path, ignore_errors=True)
        self.index = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
        self.index.index(self._tokenize(texts), show_progress=False)
        if path:
            os.makedirs(cache_dir, exist_ok=True)
            tmp = tempfile.mkdtemp(dir=cache_dir, prefix=".tmp-")
            self.index.save(tmp, show_progress=False)
            try:
                os.rename(tmp, path)
            except OSError:  # another process saved it first
                shutil.rmtree(tmp)

    def _tokenize(self, texts):
        return self._bm25s.tokenize(
            texts, token_pattern=self.TOKENS, stopwords="en", stemmer=self._stemmer, show_progress=False
        )

    def search(self, query, k=50):
        """Indices of the top-k matching documents."""
        if not self.size:
            return []
        tokens = self._tokenize([query])
        if not tokens.ids[0]:
            return []
        documents, scores = self.index.retrieve(tokens, k=min(k, self.size), show_progress=False)
        return [int(d) for d, score in zip(documents[0], scores[0]) if score > 0]


# ---- catalog and goals -------------------------------------------------------------------------

SHIPPED_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "webshop")
FILES = {  # upstream names, the full catalog's first
    "items": ("items_shuffle.json", "items_shuffle_1000.json"),
    "attributes": ("items_ins_v2.json", "items_ins_v2_1000.json"),
    "instructions": ("items_human_ins.json",),
}
GOAL_SEED = 233
MAX_STEPS = 15
PAGE_SIZE, TOP_K = 10, 50


def data_root(root=None):
    if root == "shipped":
        return SHIPPED_DATA
    root = root or os.environ.get("WEBSHOP_DATA")
    if not root:
        raise ValueError("WebShop data: set $WEBSHOP_DATA to the folder with the upstream JSON files, or use the shipped catalog")
    return os.path.expanduser(root)


def _read(root, kind):
    for name in FILES[kind]:
        path = os.path.join(root, name)
        if os.path.exists(path):
            try:
                with open(path) as f:
                    return json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"WebShop data: {path} is not valid JSON ({error})") from None
    raise ValueError(f"WebShop data: no {' or '.join(FILES[kind])} in {root}")


def _price(pricing, rng):
    prices = [float(p) for p in re.findall(r"\$\s*([0-9][0-9,]*\.?[0-9]*)", (pricing or "").replace(",", ""))]
    if not prices:
        return 100.0
    return prices[0] if len(prices) == 1 else round(rng.uniform(prices[0], prices[1]), 2)


def load_products(items, attributes, seed=GOAL_SEED):
    """Upstream product records -> products with price, options and attributes (skips as upstream)."""
    if not isinstance(items, list) or not items:
        raise ValueError("WebShop data: the product file holds no products")
    rng, products, seen = random.Random(seed), [], set()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("asin"), str):
            raise ValueError(f"WebShop data: product record {i} has no asin")
        asin = item["asin"]
        if asin == "nan" or len(asin) > 10 or asin in seen:
            continue
        for field, kinds in (("name", str), ("product_category", str), ("query", str)):
            if not isinstance(item.get(field), kinds):
                raise ValueError(f"WebShop data: product {asin} (record {i}) has no {field} string")
        if asin not in attributes or not isinstance(attributes[asin], dict):
            raise ValueError(f"WebShop data: product {asin} has no entry in the attribute file")
        options = item.get("customization_options") or {}
        try:
            options = {
                name.lower(): [v["value"].strip().replace("/", " | ").lower() for v in values]
                for name, values in options.items()
            }
        except (AttributeError, KeyError, TypeError):
            raise ValueError(f"WebShop data: product {asin} has malformed customization_options") from None
        seen.add(asin)
        products.append(
            dict(item, query=item["query"].lower(), price=_price(item.get("pricing"), rng), options=options,
                 attributes=list(attributes[asin].get("attributes") or []))
        )
    return products


def load_goals(products, instructions, seed=GOAL_SEED):
    """One goal per human instruction with attributes, price caps as upstream, shuffled with a fixed seed."""
    rng, goals = random.Random(seed), []
    by_asin = {p["asin"]: p for p in products}
    for asin, entries in instructions.items():
        product = by_asin.get(asin)
        if product is None:
            continue
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("instruction"), str):
                raise ValueError(f"WebShop data: an instruction of product {asin} has no instruction text")
            if not entry.get("instruction_attributes"):
                continue
            caps = [c for c in range(10, 1000, 10) if c > product["price"]][:4]
            text = entry["instruction"].strip()
            if len(caps) >= 2:
                price_upper = float(max(rng.sample(caps, 2)))
                text += f", and price lower than {price_upper:.2f} dollars"
            else:
                price_upper = 1e6
            goals.append({
                "asin": asin, "category": product.get("category"), "query": product["query"], "name": product["name"],
                "product_category": product["product_category"], "instruction_text": text,
                "attributes": list(entry["instruction_attributes"]),
                "goal_options": [o.lower() for o in entry.get("instruction_options") or []],
                "price_upper": price_upper, "weight": 1,
            })
    random.Random(seed).shuffle(goals)
    return goals


class Catalog:
    """Products, goals and the search index of one data folder (built once per process)."""

    def __init__(self, root=None):
        self.root = data_root(root)
        self.products = load_products(_read(self.root, "items"), _read(self.root, "attributes"))
        self.goals = load_goals(self.products, _read(self.root, "instructions"))
        self.by_asin = {p["asin"].lower(): p for p in self.products}
        cache = os.path.expanduser(os.environ.get("SPO3_CACHE", "~/.cache/openrlhf_3spo"))
        self.index = SearchIndex([product_text(p) for p in self.products], os.path.join(cache, "webshop-index"))

    def search(self, query):
        return [self.products[i] for i in self.index.search(query.lower(), TOP_K)]


@functools.lru_cache(maxsize=8)
def catalog(root=None):
    return Catalog(root)


def dataset_rows(split, root=None, eval_goals=None):
    """OpenRLHF prompt-dataset rows: goals [0, eval_goals) are `eval`, the rest `train`. The default
    is the published 500, or a quarter of a catalog with fewer than 2000 goals (the shipped one)."""
    if split not in ("train", "eval"):
        raise ValueError(f"WebShop split must be 'train' or 'eval', got {split!r}")
    goals = catalog(root).goals
    if eval_goals is None:
        eval_goals = 500 if len(goals) >= 2000 else max(len(goals) // 4, 1)
    if not 0 < eval_goals < len(goals):
        raise ValueError(f"--eval-goals must lie in [1, {len(goals) - 1}] for this catalog of {len(goals)} goals, got {eval_goals}")
    indices = range(eval_goals) if split == "eval" else range(eval_goals, len(goals))
    recorded = label_root(root, "WEBSHOP_DATA")
    return [
        {"input": goals[i]["instruction_text"], "label": json.dumps({"env": "webshop", "goal": i, "root": recorded})}
        for i in indices
    ]


# ---- the environment ---------------------------------------------------------------------------

SUB_PAGES = ("description", "features", "reviews")
MAX_QUERY = 200


def _money(price):
    return f"${price:.2f}"


class WebShopEnv:
    """One WebShop goal as a TextEnv. The state key: goal, page, query, results page, product,
    sub-page and chosen options."""

    def __init__(self, goal_index, root=None, max_steps=MAX_STEPS, reward="success", invalid_penalty=0.1):
        if reward not in ("success", "score"):
            raise ValueError(f"reward must be 'success' (10 x success) or 'score' (the raw score), got {reward!r}")
        self.catalog = catalog(root)
        if not 0 <= goal_index < len(self.catalog.goals):
            raise ValueError(f"WebShop goal {goal_index} does not exist ({len(self.catalog.goals)} goals)")
        self.goal_index, self.goal = goal_index, self.catalog.goals[goal_index]
        self.task_id = f"webshop/{goal_index}"
        self.task = self.goal["instruction_text"]
        if not (isinstance(invalid_penalty, (int, float)) and 0 <= invalid_penalty < float("inf")):
            raise ValueError(f"invalid_penalty must be a finite number >= 0 (it is subtracted), got {invalid_penalty!r}")
        self.max_steps, self.reward_mode, self.invalid_penalty = max_steps, reward, invalid_penalty
        self._reset_state()

    def _reset_state(self):
        self.page, self.query, self.page_num, self.asin, self.sub_page = "search", "", 1, None, None
        self.options, self.results, self.steps, self.done, self.score = {}, [], 0, False, None

    # ---- pages

    def _text(self):
        instruction = f"Instruction: [SEP] {self.task}"
        if self.page == "search":
            return f"WebShop [SEP] {instruction} [SEP] Search"
        if self.page == "done":
            return f"Thank you for shopping with us! [SEP] Your score (min 0.0, max 1.0) [SEP] {self.score:.2f}"
        head = f"{instruction} [SEP] Back to Search"
        if self.page == "results":
            shown = self.results[(self.page_num - 1) * PAGE_SIZE : self.page_num * PAGE_SIZE]
            parts = [head, f"Page {self.page_num} (Total results: {len(self.results)})"]
            parts += ["< Prev"] if self.page_num > 1 else []
            parts += ["Next >"] + [f"{p['asin']} [SEP] {p['name']} [SEP] {_money(p['price'])}" for p in shown]
            return SEP.join(parts)
        product = self.catalog.by_asin[self.asin]
        if self.page == "item":
            parts = [head, "< Prev"]
            for name, values in product["options"].items():
                parts += [name] + values
            parts += [product["name"], f"Price: {_money(product['price'])}", "Rating: N.A.", "Description",
                      "Features", "Reviews", "Buy Now"]
            return SEP.join(parts)
        content = {
            "description": product.get("full_description") or "",
            "features": SEP.join(_bullets(product)),
            "reviews": "",
        }[self.sub_page]
        return SEP.join([head, "< Prev", content])

    def clickables(self):
        if self.page == "results":
            shown = self.results[(self.page_num - 1) * PAGE_SIZE : self.page_num * PAGE_SIZE]
            return ["back to search"] + (["< prev"] if self.page_num > 1 else []) + ["next >"] + [p["asin"].lower() for p in shown]
        if self.page == "item":
            values = [v for vs in self.catalog.by_asin[self.asin]["options"].values() for v in vs]
            return ["back to search", "< prev", *SUB_PAGES, "buy now"] + values
        if self.page == "sub":
            return ["back to search", "< prev"]
        return []

    def _observe(self, valid, won=False):
        admissible = [SEARCH_ACTION] if self.page == "search" else [f"click[{c}]" for c in self.clickables()]
        self.done = self.page == "done" or self.steps >= self.max_steps
        if self.page == "done":
            reward = 10.0 * won if self.reward_mode == "success" else self.score
        else:
            reward = 0.0
        key = state_digest(self.task_id, self.page, self.query, str(self.page_num), self.asin or "", self.sub_page or "",
                           json.dumps(sorted(self.options.items())))
        return Observation(
            text=self._text(), admissible_actions=[] if self.done else admissible, state_key=key,
            reward=reward - (0.0 if valid else self.invalid_penalty), done=self.done, won=won, valid=valid,
        )

    # ---- TextEnv

    def reset(self):
        self._reset_state()
        return self._observe(valid=True)

    def step(self, action):
        if self.done:
            raise RuntimeError(f"WebShopEnv {self.task_id}: the episode is over; call reset()")
        self.steps += 1
        valid, won = self._act(action if isinstance(action, str) else ""), False
        if self.page == "done":
            won = self.score == 1.0
        return self._observe(valid, won)

    def _act(self, action):
        """Applies a valid action; False (and no change) for anything else."""
        action = action.strip()
        match = re.fullmatch(r"search\[(.*)\]", action, flags=re.IGNORECASE | re.DOTALL)
        if match:  # upstream runs a search from any page
            query = " ".join(match.group(1).split()).lower()
            if not query or len(query) > MAX_QUERY:
                return False
            self.page, self.query, self.page_num, self.asin, self.sub_page = "results", query, 1, None, None
            self.results = self.catalog.search(query)
            return True
        match = re.fullmatch(r"click\[(.*)\]", action, flags=re.IGNORECASE | re.DOTALL)
        target = " ".join(match.group(1).split()).lower() if match else None
        if target is None or target not in self.clickables():
            return False
        if target == "back to search":
            self.page, self.query, self.options, self.results, self.asin, self.sub_page = "search", "", {}, [], None, None
        elif target == "next >":
            if self.page_num * PAGE_SIZE < len(self.results):
                self.page_num += 1
        elif target == "< prev":
            if self.page == "sub":
                self.page, self.sub_page = "item", None
            elif self.page == "item":
                self.page, self.asin, self.options = "results", None, {}
            else:
                self.page_num -= 1
        elif self.page == "results":
            self.page, self.asin, self.options = "item", target, {}
        elif target in SUB_PAGES:
            self.page, self.sub_page = "sub", target
        elif target == "buy now":
            product = self.catalog.by_asin[self.asin]
            self.score = purchase_reward(self.goal, product, self.options, product["price"])
            self.page = "done"
        else:  # an option value: selected for its option name
            name = next(n for n, vs in self.catalog.by_asin[self.asin]["options"].items() if target in vs)
            self.options[name] = target
        return True

    def fork(self):
        clone = WebShopEnv.__new__(WebShopEnv)
        clone.__dict__.update(self.__dict__)
        clone.options, clone.results = dict(self.options), list(self.results)
        return clone
