"""A small WebShop catalog in the upstream schema, generated deterministically, and the set this project ships.

The real WebShop data (1k or 12k products scraped from Amazon) comes from an external drive, so the
project ships its own small catalog for tests and demos, written in the same three files:

- ``items_shuffle.json``: a JSON list of product records (asin, name, full_description,
  small_description, pricing, images, category, query, product_category, customization_options);
- ``items_ins_v2.json``: the attribute file, ``{asin: {"attributes": [...], "instruction": "",
  "instruction_attributes": []}}`` for every product;
- ``items_human_ins.json``: the human instruction file, ``{asin: [{"instruction", "instruction_attributes",
  "instruction_options", "assignment_id", "asin"}]}`` for the goal products.

Products come from a table of product *families* (a kind of product found with one search query, under one
"A › B › C" category path). Each family yields 3-6 near-duplicates: one per title modifier ("trail",
"road", "for kids", ...), each with its own subset of the family's attribute phrases, its own option
values and its own price, so the right purchase for an instruction is not the first one that looks right.
Titles, bullet points and descriptions are built from templates and the vocabulary tables below.

Everything is drawn from ``random.Random(seed)`` over lists (never sets or hashes), so the files do not
depend on PYTHONHASHSEED. Generation checks its own output (see ``validate``): within a family, an
attribute a product lacks never appears in its text and is never a fuzzy match (token-set ratio > 85) of
one it has, so a near-duplicate really misses it; ``search_check`` checks that every goal product is in
the top 10 BM25 results for its own lowercased title.

A development tool, outside the package: regenerate the shipped catalog with
``python scripts/make_webshop_catalog.py`` (or ``--out DIR``).
"""

import argparse
import json
import os
import random
import string
import sys

from openrlhf_3spo.envs.webshop import MATCH_THRESHOLD, SHIPPED_DATA, SearchIndex, fuzzy_ratio, options_match, product_text
from openrlhf_3spo.io import atomic_write_text

PRODUCTS_FILE = "items_shuffle.json"
ATTRIBUTES_FILE = "items_ins_v2.json"
HUMAN_INSTRUCTIONS_FILE = "items_human_ins.json"
SEED = 20240611

# ---- vocabulary ---------------------------------------------------------------------------------

# option pools: key -> (option name, how an instruction asks for a value, values)
OPTION_POOLS = {
    "color/apparel": ("color", "in {v} color", [
        "Black", "White", "Navy Blue", "Heather Grey", "Olive Green", "Burgundy", "Khaki", "Royal Blue"]),
    "color/shoe": ("color", "in {v} color", [
        "Black", "White", "Navy Blue", "Grey", "Red", "Olive", "Pink", "Beige"]),
    "color/device": ("color", "in {v} color", [
        "Black", "White", "Midnight Blue", "Silver", "Rose Gold", "Forest Green"]),
    "color/lip": ("color", "in the shade {v}", [
        "Ruby Red", "Nude Pink", "Berry", "Coral", "Mauve", "Plum", "Brick Red"]),
    "color/nail": ("color", "in {v} color", [
        "Cherry Red", "Baby Pink", "Lilac", "Mint Green", "Navy", "Gold Glitter", "Nude"]),
    "color/home": ("color", "in {v} color", [
        "Beige", "Charcoal Grey", "Sage Green", "Navy Blue", "Ivory", "Terracotta", "Mustard Yellow"]),
    "color/bright": ("color", "in {v} color", [
        "Blue", "Red", "Yellow", "Green", "Orange", "Purple", "Pink"]),
    "color/gear": ("color", "in {v} color", [
        "Black", "Army Green", "Orange", "Grey", "Navy Blue", "Desert Tan"]),
    "size/shoe": ("size", "size {v}", [
        "6", "6.5", "7", "7.5", "8", "8.5", "9", "9.5", "10", "10.5", "11", "12"]),
    "size/apparel": ("size", "size {v}", ["X-Small", "Small", "Medium", "Large", "X-Large", "XX-Large"]),
    "size/jeans": ("size", "size {v}", ["28W x 30L", "30W x 30L", "32W x 32L", "34W x 32L", "36W x 34L"]),
    "size/belt": ("size", "size {v}", ["30", "32", "34", "36", "38", "40"]),
    "size/helmet": ("size", "size {v}", ["Small", "Medium", "Large"]),
    "size/pack": ("size", "{v}", ["Pack of 2", "Pack of 4", "Pack of 6", "Pack of 12", "Pack of 24"]),
    "size/fl oz": ("size", "in the {v} size", ["8 Fl Oz", "12 Fl Oz", "16 Fl Oz", "33.8 Fl Oz"]),
    "size/cream": ("size", "in the {v} size", ["1 Oz", "1.7 Oz", "2.5 Oz", "4 Oz"]),
    "size/coffee": ("size", "in a {v} bag", ["12 Ounce", "20 Ounce", "32 Ounce", "2 Pound", "5 Pound"]),
    "size/tea": ("size", "{v}", ["20 Count", "40 Count", "100 Count", "200 Count"]),
    "size/oil": ("size", "in a {v} bottle", ["16.9 Fl Oz", "25.5 Fl Oz", "33.8 Fl Oz", "68 Fl Oz"]),
    "size/hose": ("size", "{v} long", ["25 Ft", "50 Ft", "75 Ft", "100 Ft"]),
    "size/pot": ("size", "in the {v} size", ["4 Inch", "6 Inch", "8 Inch", "10 Inch", "12 Inch"]),
    "size/bottle": ("size", "in the {v} size", ["18 Oz", "24 Oz", "32 Oz", "40 Oz", "64 Oz"]),
    "size/mug": ("size", "in the {v} size", ["12 Oz", "14 Oz", "16 Oz", "20 Oz"]),
    "size/weights": ("size", "in {v}", ["5 Lb", "10 Lb", "15 Lb", "20 Lb", "25 Lb"]),
    "size/pillow": ("size", "in {v}", ["16x16 Inch", "18x18 Inch", "20x20 Inch", "12x20 Inch"]),
    "size/plush": ("size", "in the {v} size", ["8 Inch", "12 Inch", "16 Inch", "24 Inch"]),
    "size/towel": ("size", "in the {v} size", ["27x54 Inch", "30x56 Inch", "35x70 Inch"]),
    "size/cable": ("size", "{v} long", ["3 Ft", "6 Ft", "10 Ft", "15 Ft", "25 Ft"]),
    "size/curtain": ("size", "in the {v} size", ["70x72 Inch", "72x84 Inch", "72x96 Inch"]),
    "size/basket": ("size", "in the {v} size", ["Small", "Medium", "Large", "Set of 3"]),
    "size/mat": ("size", "in the {v} thickness", ["4mm", "6mm", "8mm", "10mm"]),
    "size/lights": ("size", "{v}", ["Pack of 2", "Pack of 4", "Pack of 6", "Pack of 8", "Pack of 12"]),
    "size/gloves": ("size", "size {v}", ["Small", "Medium", "Large", "X-Large"]),
    "size/puzzle": ("size", "{v}", ["300 Pieces", "500 Pieces", "1000 Pieces"]),
    "flavor/bar": ("flavor name", "in {v} flavor", [
        "Chocolate Peanut Butter", "Cookies and Cream", "Salted Caramel", "Birthday Cake", "Mint Chocolate",
        "Blueberry Muffin"]),
    "flavor/trail": ("flavor name", "in {v} flavor", [
        "Honey Roasted", "Dark Chocolate Cherry", "Sea Salt", "Maple Pecan", "Cranberry Almond"]),
    "flavor/chocolate": ("flavor name", "in {v} flavor", [
        "Sea Salt Almond", "Orange Zest", "Raspberry", "Toffee Crunch", "Espresso Bean", "Coconut"]),
    "scent/candle": ("scent", "with {v} scent", [
        "Lavender", "Vanilla", "Eucalyptus Mint", "Sea Salt Orchid", "Cinnamon Apple", "Sandalwood"]),
    "scent/hair": ("scent", "with {v} scent", ["Coconut", "Tea Tree", "Lavender", "Citrus", "Unscented"]),
}

# A family (one record each in webshop_families.json): category, query, product category path, title
# noun, title modifiers (one per product; those starting with "for " go after the noun), attribute
# phrases ("w:" marks a noun phrase, said "with ..."), option pools, price range, plural (the title
# noun is plural: no article), and a blurb about the product.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "webshop_families.json"), encoding="utf-8") as _f:
    FAMILIES = json.load(_f)

BRANDS = {
    "beauty": ["Lumiere", "Velour Lab", "Petal & Pine", "Aurelle", "Bloomwell", "Silkra", "Nuvessa", "Oakleaf",
               "Maison Clair", "Dewdrop"],
    "electronics": ["Voltrix", "Soundcore Lane", "Nexlink", "Auralite", "Kinetiq", "Pixelon", "Zentech",
                    "Brightwave", "Orbisound", "Tekvolt"],
    "fashion": ["Northwind", "Urban Thread", "Coastline", "Hollis & Vane", "Kindred Co", "Marlowe", "Stitchworks",
                "Arbor Lane", "Bellcove", "Ridgeway"],
    "food": ["Harvest Table", "Golden Acre", "Wildgrove", "Sunny Hollow", "Brookfield Farms", "Cedar & Salt",
             "Mesa Verde", "Orchard Row", "Highland Pantry", "Little Bee"],
    "garden": ["Greenthumb", "Backyard Bloom", "Fernhill", "Yardmaster", "Meadowlark", "Sproutly", "Rainleaf",
               "Stonebrook", "Gardenia Co", "Terraverde"],
    "home": ["Hearth & Home", "Linenly", "Cozynest", "Ashford", "Casa Lumo", "Willowmere", "Tidyhaus",
             "Everhaven", "Dwellwise", "Maple & Moss"],
    "sports": ["Trailhawk", "Peakform", "Strideon", "Summit Gear", "Ironcore", "Flexline", "Basecamp", "Velocis",
               "Apex Motion", "Rivertrek"],
    "toys": ["Wonderbox", "Tiny Tinkers", "Playnest", "Brickly", "Giggle Grove", "Funforge", "Starling Kids",
             "Puzzlecraft", "Hoppy", "Cubbie"],
}

# generic text per category: these never contain an attribute phrase (``validate`` checks)
CATEGORY_TEXT = {
    "beauty": (["Suitable for daily use at home or on the go.",
                "Formulated and filled in small batches.",
                "A thoughtful gift for birthdays and holidays."],
               ["part of a simple daily routine", "loved by beauty editors and first time users alike",
                "made to feel good from the first use", "easy to use at home",
                "gentle enough for everyday use", "a favorite in our customer reviews"]),
    "electronics": (["Backed by a 12 month warranty and friendly customer support.",
                     "Works with iOS, Android and most laptops.",
                     "Packed in a recyclable box with a quick start guide."],
                    ["built for everyday use", "ready to go straight out of the box",
                     "tested for reliable performance", "designed for work, travel and play",
                     "simple to set up in minutes", "a smart upgrade for any desk or bag"]),
    "fashion": (["Model is 6 feet tall and wears a size medium.",
                 "See the size chart in the images before ordering.",
                 "Designed in California and made with care."],
                ["looks great on its own or layered", "easy to pair with everyday outfits",
                 "holds its shape after many wears", "made for all day comfort",
                 "a wardrobe staple for every season", "finished with careful stitching"]),
    "food": (["Store in a cool, dry place away from sunlight.",
              "Produced in a facility that follows strict quality standards.",
              "Enjoy at home, at work or on the road."],
             ["tastes as good as it sounds", "a pantry favorite for busy families",
              "made from simple, recognizable ingredients", "perfect for sharing",
              "a treat the whole family enjoys", "carefully sourced from trusted growers"]),
    "garden": (["Ideal for patios, balconies, lawns and flower beds.",
                "Backed by a one year replacement promise.",
                "Makes a practical gift for any gardener."],
               ["made for seasons of outdoor use", "built to handle daily yard work",
                "simple to set up and use", "a favorite of home gardeners",
               "made for small yards and large gardens", "helps your garden look its best"]),
    "home": (["Fits bedrooms, living rooms, dorms and guest rooms.",
              "Backed by a 30 day satisfaction guarantee.",
              "A welcome housewarming gift."],
             ["adds warmth to any room", "made to last through daily use", "easy to care for",
              "complements modern and classic decor",
              "a simple way to refresh your space", "thoughtfully designed for everyday living"]),
    "sports": (["Great for beginners and seasoned athletes alike.",
                "Backed by a one year warranty.",
                "Tested by our team on trails, tracks and in the gym."],
               ["built for training days and race days", "ready for indoor and outdoor workouts",
                "made to keep up with an active life", "trusted by coaches and athletes",
               "helps you reach your fitness goals", "ready for the next adventure"]),
    "toys": (["Recommended for ages 3 and up; adult supervision advised.",
              "Meets applicable toy safety standards.",
              "A wonderful gift for birthdays and holidays."],
             ["sparks imagination and creative play", "fun for kids and grown ups",
              "encourages hands-on learning", "built for busy little hands",
              "great for playdates and family game nights", "keeps kids busy for hours"]),
}

INSTRUCTION_OPENERS = [
    "i am looking for", "i need", "i want to buy", "find me", "i'm looking for", "please help me find",
    "i would like", "get me", "i'm searching for", "show me",
]

# words a title spells their own way (lowercasing gives the word back)
SPECIAL_WORDS = {
    "4k": "4K", "8k": "8K", "60hz": "60Hz", "20000mah": "20000mAh", "10000mah": "10000mAh", "2.4ghz": "2.4GHz",
    "hdmi": "HDMI", "usb": "USB", "led": "LED", "rgb": "RGB", "spf": "SPF", "bpa": "BPA", "gmo": "GMO", "uv": "UV",
    "dpi": "DPI", "sk5": "SK5", "iphone": "iPhone", "s23": "S23", "3d": "3D",
}
SMALL_WORDS = {"a", "an", "and", "for", "in", "of", "on", "or", "the", "to", "with"}

# ---- construction -------------------------------------------------------------------------------


def _phrase(attr):
    """The attribute phrase without its "w:" marker."""
    return attr[2:] if attr.startswith("w:") else attr


def _title_case(text):
    words = text.split()
    out = []
    for i, w in enumerate(words):
        if i and w in SMALL_WORDS:
            out.append(w)
        elif w in SPECIAL_WORDS:
            out.append(SPECIAL_WORDS[w])
        elif w[:1].isdigit():
            out.append(w)
        else:
            out.append("-".join(part[:1].upper() + part[1:] for part in w.split("-")))
    return " ".join(out)


def _spell(text):
    """Lowercase text with the special words spelled as in titles (USB, LED, iPhone, ...)."""
    return " ".join(SPECIAL_WORDS.get(w, w) for w in text.split())


def kind_phrase(noun, mod):
    """The product kind: the family noun with its title modifier, e.g. "trail running shoe", "running
    shoe for kids"."""
    if not mod:
        return noun
    return f"{noun} {mod}" if mod.startswith("for ") else f"{mod} {noun}"


def _article(word, plural):
    if plural:
        return ""
    return "an " if word[:1] in "aeiou" else "a "


def _join(items):
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _asin(rng, taken):
    alphabet = string.ascii_uppercase + string.digits
    while True:
        asin = "B0" + "".join(rng.choice(alphabet) for _ in range(8))
        if asin not in taken:
            taken.add(asin)
            return asin


def _price(rng, lo, hi):
    cents = rng.choice([0.99, 0.95, 0.49, 0.0, 0.89])
    return int(rng.uniform(lo, hi)) + cents


def _make_product(rng, family, mod, attrs, options, asin, brand):
    kind = kind_phrase(family["noun"], mod)
    adjs = [a for a in attrs if not a.startswith("w:")]
    nouns = [_phrase(a) for a in attrs if a.startswith("w:")]
    phrases = [_phrase(a) for a in attrs]
    # title: brand, up to two adjective attributes, the kind, up to one "with" attribute, sometimes a detail
    in_title = adjs[:2]
    title = f"{brand} " + _title_case(" ".join(in_title + [kind]))
    if nouns:
        title += " with " + _title_case(nouns[0])
    if options and rng.random() < 0.3:
        first = options[0]
        title += f", {len(first[1])} {'Colors' if first[0] == 'color' else 'Options'}"
    intro_lines, benefits = CATEGORY_TEXT[family["category"]]
    # bullet points: the kind and blurb first, then one per attribute
    bullets = [f"{_title_case(kind).upper()}: {family['blurb']}"]
    for phrase, benefit in zip(phrases, rng.sample(benefits, len(phrases))):
        bullets.append(f"{phrase.upper()}: {benefit[:1].upper() + benefit[1:]}.")
    if options:
        names = " and ".join(name for name, _ in options)
        bullets.append(f"CHOOSE YOURS: available in several {names} options to suit your needs.")
    bullets.append(f"WHAT YOU GET: 1 x {brand} {_spell(kind)}. {rng.choice(intro_lines)}")
    # description
    sentences = [f"Meet the {brand} {_spell(kind)}. {family['blurb']}"]
    if adjs:
        subject = "They are" if family["plural"] else "It is"
        sentences.append(f"{subject} {_spell(_join(adjs))}, and {rng.choice(benefits)}.")
    if nouns:
        sentences.append(f"Comes with {_spell(_join(nouns))}.")
    sentences.append(rng.choice(intro_lines))
    return {
        "asin": asin,
        "name": title,
        "full_description": " ".join(sentences),
        "small_description": bullets,
        "pricing": f"${_price(rng, *family['price']):.2f}",
        "images": [f"https://images.example.com/webshop/{asin}_{i}.jpg" for i in range(rng.randint(0, 3))],
        "category": family["category"],
        "query": family["query"],
        "product_category": family["path"],
        "customization_options": (
            {name: [{"value": v, "image": None} for v in values] for name, values in options} if options else None
        ),
    }


def _instruction(rng, family, mod, attrs, options, plural):
    """A WebShop-style instruction asking for `attrs` (1-3 attribute phrases, "w:"-marked) and `options`
    ([(option key, value)]) of the product kind."""
    kind = kind_phrase(family["noun"], mod)
    adjs = [a for a in attrs if not a.startswith("w:")]
    nouns = [_phrase(a) for a in attrs if a.startswith("w:")]
    opener = rng.choice(INSTRUCTION_OPENERS)
    if adjs and rng.random() < 0.3:
        text = f"{opener} {_article(kind, plural)}{kind} that {'are' if plural else 'is'} {_join(adjs)}"
    else:
        style = rng.choice([" ".join, ", ".join, _join])
        lead = f"{style(adjs)} {kind}" if adjs else kind
        text = f"{opener} {_article(lead, plural)}{lead}"
    if nouns:
        text += " with " + _join(nouns)
    if options:
        parts = [OPTION_POOLS[key][1].format(v=value.lower()) for key, value in options]
        text += (", " if nouns or rng.random() < 0.5 else " ") + ", ".join(parts)
    return text


def _draw_request(rng, attrs, options, others):
    """1-3 of the product's attributes (one of them, where possible, one that some near-duplicate lacks)
    and 0-2 of its option values [(pool key, value)]."""
    rare = [a for a in attrs if any(a not in o[3] for o in others)]
    k = rng.randint(1, min(3, len(attrs)))
    picked = rng.sample(rare, 1) if rare else []
    rest = [a for a in attrs if a not in picked]
    picked += rng.sample(rest, k - len(picked)) if k > len(picked) else []
    picked = sorted(picked, key=attrs.index)
    wanted = []
    if options and rng.random() > 0.15:
        n_opts = rng.choice([1, 1, 2, 2, 2]) if len(options) > 1 else 1
        for _, values, key in sorted(rng.sample(options, n_opts), key=options.index):
            wanted.append((key, rng.choice(values)))
    return picked, wanted


def _satisfied_by(attrs, wanted, others):
    """How many near-duplicates have all of `attrs` and, as far as the reward can tell, the `wanted`
    option values."""
    return sum(
        set(attrs) <= set(o_attrs)
        and all(any(options_match(w, v) for _, vs, _ in o_options for v in vs) for _, w in wanted)
        for _, _, _, o_attrs, o_options in others
    )


def _assignment_id(rng):
    return "3" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(29))


def generate(seed=SEED):
    """The catalog: (products, attribute file dict, human instruction file dict)."""
    rng = random.Random(seed)
    taken = set()
    families = FAMILIES
    products, attributes, variants = [], {}, []  # variants: (product, family, mod, attrs, options)
    for family in families:
        n_attrs = len(family["attrs"])
        for mod in family["mods"]:
            attrs = sorted(rng.sample(family["attrs"], rng.randint(2, min(5, n_attrs))),
                           key=family["attrs"].index)
            options = []
            if family["options"] and rng.random() < 0.88:
                for key in family["options"]:
                    name, _, pool = OPTION_POOLS[key]
                    k = rng.randint(2, min(6, len(pool)))
                    values = sorted(rng.sample(pool, k), key=pool.index)
                    options.append((name, values, key))
            asin = _asin(rng, taken)
            brand = rng.choice(BRANDS[family["category"]])
            product = _make_product(rng, family, mod, attrs, [(n, v) for n, v, _ in options], asin, brand)
            products.append(product)
            attributes[asin] = {"attributes": [_phrase(a) for a in attrs], "instruction": "",
                                "instruction_attributes": []}
            variants.append((product, family, mod, attrs, options))
    # a few price ranges and missing prices, as in the scraped data
    ranged = rng.sample([v for v in variants if v[4]], 8)
    for product, *_ in ranged:
        low = float(product["pricing"][1:])
        product["pricing"] = f"${low:.2f} - ${low * rng.choice([1.25, 1.4, 1.6]):.2f}"
    for product, *_ in rng.sample([v for v in variants if v not in ranged], 2):
        product["pricing"] = ""

    # goals: most products get one human instruction, some two
    human = {}
    siblings = {}
    for v in variants:
        siblings.setdefault(v[1]["query"], []).append(v)
    chosen = rng.sample(variants, 140)
    twice = rng.sample(chosen, 24)
    for v in sorted(chosen, key=variants.index):
        product, family, mod, attrs, options = v
        others = [o for o in siblings[family["query"]] if o is not v]
        entries = []
        for _ in range(2 if v in twice else 1):
            # of a few drawn instructions, keep the one the fewest near-duplicates also satisfy
            for _round in range(10):
                drawn = [_draw_request(rng, attrs, options, others) for _ in range(4)]
                drawn = [(_satisfied_by(p, w, others), i, p, w) for i, (p, w) in enumerate(drawn)]
                drawn = [d for d in drawn if d[0] < len(others) and (tuple(d[2]), tuple(d[3])) not in
                         [e[0] for e in entries]]
                if drawn:
                    _, _, picked, wanted = min(drawn)
                    signature = (tuple(picked), tuple(wanted))
                    break
            else:
                raise ValueError(f"no distinguishing instruction for {product['asin']}")
            entries.append((signature, {
                "instruction": _instruction(rng, family, mod, picked, wanted, family["plural"]),
                "instruction_attributes": [_phrase(a) for a in picked],
                "instruction_options": [value.lower() for _, value in wanted],
                "assignment_id": _assignment_id(rng),
                "asin": product["asin"],
            }))
        human[product["asin"]] = [e[1] for e in entries]

    rng.shuffle(products)
    validate(products, attributes, human)
    return products, attributes, human


# ---- checks -------------------------------------------------------------------------------------


def _text(product):
    return " ".join([product["name"], " ".join(product["small_description"]), product["full_description"]]).lower()


def _option_values(product):
    return [v["value"].lower() for values in (product["customization_options"] or {}).values() for v in values]


def validate(products, attributes, human):
    """Raises ValueError unless the catalog keeps its promises (schema, attributes, goals, near-duplicates)."""
    by_asin = {p["asin"]: p for p in products}
    if len(by_asin) != len(products) or any(len(a) != 10 for a in by_asin):
        raise ValueError("asins must be unique and 10 characters long")
    noun_of = {family["query"]: family["noun"] for family in FAMILIES}
    families = {}
    for p in products:
        families.setdefault(p["query"], []).append(p)
    for query, group in families.items():
        pool = sorted({a for p in group for a in attributes[p["asin"]]["attributes"]})
        for i, a in enumerate(pool):
            for b in pool[i + 1:]:
                if fuzzy_ratio(a, b) > MATCH_THRESHOLD:
                    raise ValueError(f"{query}: attributes {a!r} and {b!r} are a fuzzy match")
        for p in group:
            have = attributes[p["asin"]]["attributes"]
            text = _text(p)
            for a in pool:
                if a not in have and a in text:
                    raise ValueError(f"{p['asin']} ({query}) lacks {a!r} but its text says it")
    for asin, entries in human.items():
        product = by_asin[asin]
        have = attributes[asin]["attributes"]
        values = _option_values(product)
        noun = noun_of[product["query"]]
        others = [p for p in families[product["query"]] if p["asin"] != asin]
        for e in entries:
            text = e["instruction"]
            if not 1 <= len(e["instruction_attributes"]) <= 3 or len(e["instruction_options"]) > 2:
                raise ValueError(f"{asin}: wrong number of attributes or options")
            for a in e["instruction_attributes"]:
                if a not in have or a not in text:
                    raise ValueError(f"{asin}: instruction attribute {a!r} missing")
            for o in e["instruction_options"]:
                if o not in values or o not in text:
                    raise ValueError(f"{asin}: instruction option {o!r} missing")
            if noun not in text or noun not in product["name"].lower():
                raise ValueError(f"{asin}: kind {noun!r} missing from instruction or title")
            if not any(
                not set(e["instruction_attributes"]) <= set(attributes[o["asin"]]["attributes"])
                or not set(e["instruction_options"]) <= set(_option_values(o))
                for o in others
            ):
                raise ValueError(f"{asin}: every near-duplicate satisfies {text!r}")


def search_check(products, human, k=10):
    """Asins of goal products that are not in the top-k BM25 results for their own lowercased title."""
    index = SearchIndex([product_text(p) for p in products])
    position = {p["asin"]: i for i, p in enumerate(products)}
    return [asin for asin in human if position[asin] not in index.search(products[position[asin]]["name"].lower(), k)]


# ---- files --------------------------------------------------------------------------------------


def _dump_list(rows):
    return "[\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]\n"


def _dump_dict(mapping):
    return "{\n" + ",\n".join(f"{json.dumps(key)}: {json.dumps(value)}" for key, value in mapping.items()) + "\n}\n"


def write_catalog(out, catalog):
    """Writes the catalog (products, attributes, human instructions) into the three files in `out`,
    each one atomically."""
    products, attributes, human = catalog
    atomic_write_text(os.path.join(out, PRODUCTS_FILE), _dump_list(products))
    atomic_write_text(os.path.join(out, ATTRIBUTES_FILE), _dump_dict(attributes))
    atomic_write_text(os.path.join(out, HUMAN_INSTRUCTIONS_FILE), _dump_dict(human))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write the small WebShop catalog (upstream schema).")
    parser.add_argument("--out", default=SHIPPED_DATA, help="folder for the three JSON files")
    parser.add_argument("--seed", type=int, default=SEED, help="random seed (the shipped catalog uses the default)")
    parser.add_argument("--no-search-check", action="store_true", help="skip the BM25 check of the goals")
    args = parser.parse_args(argv)
    products, attributes, human = generate(args.seed)
    if not args.no_search_check:
        missed = search_check(products, human)
        if missed:
            print(f"goal products not in the top 10 for their own title: {missed}", file=sys.stderr)
            return 1
    write_catalog(args.out, (products, attributes, human))
    goals = sum(len(entries) for entries in human.values())
    print(f"{len(products)} products, {goals} goals for {len(human)} products -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
