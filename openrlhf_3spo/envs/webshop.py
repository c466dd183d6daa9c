"""WebShop (text mode), implemented from the benchmark's documented behaviour (../shared/specs/webshop.md).

This part: the catalog in the upstream schema (products, attributes, human instructions), goal
construction, BM25 search with Lucene's parameters, and the purchase reward. The pages, actions and
the TextEnv itself are to come.
"""

import random
import re

from rapidfuzz import fuzz, utils

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


def _fuzzy(a, b):
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


def purchase_reward(goal, product, options, price):
    """The score of buying `product` with `options` ({name: value}) at `price`, for `goal`: in [0, 1].

    total = (attributes matched + options matched + [price <= price_upper])
            / (len(goal attributes) + len(goal options) + 1) * r_type
    """
    title = product.get("name") or ""
    texts = " ".join([title, " ".join(_bullets(product)), product.get("full_description") or ""]).lower()
    attributes = product.get("attributes") or []
    n_attributes = sum(
        any(_fuzzy(wanted, have) > MATCH_THRESHOLD for have in attributes) or wanted.lower() in texts
        for wanted in goal["attributes"]
    )
    goal_options = list(goal["goal_options"].values()) if isinstance(goal["goal_options"], dict) else list(goal["goal_options"])
    chosen = [_normalize_option(v) for v in options.values()]
    n_options = sum(
        any(_fuzzy(_normalize_option(wanted), have) > MATCH_THRESHOLD for have in chosen) for wanted in goal_options
    )
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

    def __init__(self, texts):
        import bm25s
        import Stemmer

        self._bm25s, self._stemmer = bm25s, Stemmer.Stemmer("english")
        self.size = len(texts)
        self.index = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
        self.index.index(self._tokenize(texts), show_progress=False)

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
