"""Synthetic MIND and Amazon-M2 files in the exact real formats, deterministic for a seed.

    python -m trsr_utils.data.synth mind --out tests/fixtures/mind_smoke --preset smoke
    python -m trsr_utils.data.synth amazon-m2 --out runs/bench/data/amazon-m2 --preset large

They let the paper's path run without the real downloads: ``smoke`` writes
small fixture sets (committed under ``tests/fixtures/``) that survive the
paper's 10-25 filter with enough users for a small split; ``large`` writes
files of the real datasets' size (MIND-large train: about 100k news and 2.2M
impression rows; Amazon-M2: about 1.5M products and 3.6M sessions) so the
loaders can be timed at full scale (``python -m trsr_utils.bench --only
loaders``).

The text is readable-ish (word lists by category and language), and the
distributions look like the real ones where it matters to the loaders and the
filter: Zipf-like popularity, users with several impression rows sharing one
history, clicks and skips in every impression, a few missing abstracts and
fields, several locales, multi-line quoted descriptions with commas and
quotes, some descriptions of several hundred words, sessions of varying
length. The same seed gives byte-identical files (Python's ``random`` and
NumPy's PCG64, both seeded).
"""

from __future__ import annotations

import argparse
import bisect
import csv
import itertools
import json
import math
import random
import shutil
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .prepare import RAW_FILES

# Bumped when the generator's output changes, so cached large files (runs/bench/synth/) are written again.
VERSION = 1

# ---------------------------------------------------------------- presets


@dataclass(frozen=True)
class MindSpec:
    """Sizes and shapes of a synthetic MIND split (news.tsv + behaviors.tsv)."""

    news: int
    impressions: int  # rows of behaviors.tsv
    users: int
    history_median: float  # clicked news before the period (log-normal)
    history_sigma: float
    empty_history: float  # share of users without any history
    shown_median: float  # news per impression (log-normal, clipped)
    shown_sigma: float
    shown_min: int
    shown_max: int
    extra_clicks: float  # clicks per impression: 1 + Poisson(extra_clicks)
    abstract_share: float = 0.95
    favourite_share: float = 0.6  # picks from the user's favourite category (the rest: global popularity)


@dataclass(frozen=True)
class AmazonSpec:
    """Sizes and shapes of a synthetic Amazon-M2 release (products_train.csv + sessions_train.csv)."""

    products: int
    sessions: int
    prev_median: float  # items in prev_items (log-normal, clipped)
    prev_sigma: float
    prev_max: int
    long_desc_share: float = 0.04  # descriptions of several hundred words
    repeat_share: float = 0.12  # a session step that revisits an item it already saw
    focus_share: float = 0.7  # picks from the session's category


# The real shares (KDD Cup 2023 task 1 files): products and sessions per locale.
PRODUCT_LOCALES = {"DE": 0.334, "JP": 0.255, "UK": 0.322, "ES": 0.027, "FR": 0.029, "IT": 0.033}
SESSION_LOCALES = {"DE": 0.308, "JP": 0.272, "UK": 0.328, "ES": 0.025, "FR": 0.032, "IT": 0.035}

PRESETS: dict[str, dict[str, Any]] = {
    "mind": {
        # Sized so that the paper's filter (10-25 interactions) keeps ~40 users: enough for 12/4/6.
        "smoke": MindSpec(news=220, impressions=150, users=60, history_median=12, history_sigma=0.55,
                          empty_history=0.0, shown_median=28, shown_sigma=0.08, shown_min=24, shown_max=32,
                          extra_clicks=0.6),
        # MIND-large train: 101,527 news, 2,232,748 impressions, 711,222 users, ~37 news per impression.
        "large": MindSpec(news=101_527, impressions=2_232_748, users=711_222, history_median=18, history_sigma=0.95,
                          empty_history=0.03, shown_median=30, shown_sigma=0.6, shown_min=2, shown_max=299,
                          extra_clicks=0.5),
    },
    "amazon-m2": {
        # UK has ~70 sessions of which ~45 have 10-25 items; the other locales are there to be filtered out.
        "smoke": AmazonSpec(products=320, sessions=220, prev_median=11, prev_sigma=0.5, prev_max=40),
        # Amazon-M2 task 1: 1,551,057 products and 3,606,249 sessions over six locales.
        "large": AmazonSpec(products=1_551_057, sessions=3_606_249, prev_median=3.2, prev_sigma=0.8, prev_max=470),
    },
}
DATASETS = tuple(PRESETS)

# ---------------------------------------------------------------- word lists (MIND)

# category -> (subcategories, nouns, verbs, adjectives, names)
_MIND_WORDS: dict[str, tuple[str, str, str, str, str]] = {
    "news": ("newsus newspolitics newscrime newsworld newsscienceandtechnology",
             "senate governor election court police budget mayor vote bill law council report investigation "
             "protest jury policy agency county residents officials",
             "approves rejects announces faces delays questions blocks warns reveals charges",
             "new local federal major surprising controversial final early emergency",
             "Washington|Congress|White House|Supreme Court|California|Texas|New York|Chicago|NASA|FBI"),
    "sports": ("football_nfl basketball_nba baseball_mlb soccer golf icehockey_nhl",
               "quarterback season coach playoffs touchdown trade roster fans game win loss draft injury "
               "stadium title rookie defense record",
               "beats stuns signs loses trades wins edges rallies routs benches",
               "late big historic stunning winless unbeaten rookie veteran",
               "Patriots|Cowboys|Lakers|Yankees|Warriors|Packers|Tom Brady|LeBron James|Tiger Woods|Chiefs"),
    "finance": ("finance-companies markets personalfinance finance-real-estate finance-savings",
                "stocks shares market investors earnings rates mortgage retirement savings profit bank "
                "economy inflation dividend housing prices",
                "rises falls jumps slips cuts boosts beats misses warns plunges",
                "record strong weak quarterly annual global cheap risky",
                "Wall Street|Dow Jones|Federal Reserve|Apple|Amazon|Boeing|Tesla|Walmart|Goldman Sachs|Nasdaq"),
    "foodanddrink": ("recipes restaurantsandnews foodnews cocktails",
                     "recipe dinner pie casserole soup chicken turkey dessert cookies restaurant chef menu "
                     "breakfast salad sauce bread",
                     "makes serves bakes opens closes tops loves shares",
                     "easy crispy creamy healthy cozy classic quick homemade",
                     "Thanksgiving|McDonald's|Starbucks|Chick-fil-A|Costco|Trader Joe's|Olive Garden|Ina Garten"),
    "lifestyle": ("lifestyleroyals lifestylebuzz shop-holidays lifestylehomeandgarden lifestyleparenting",
                  "family wedding home garden gift holiday style parents kids secret tips royals dog house "
                  "makeover trend",
                  "reveals shares gets finds says tries shows stuns",
                  "royal adorable perfect simple viral surprising best cozy",
                  "Meghan Markle|Prince Harry|Queen Elizabeth|Kate Middleton|Prince William|Martha Stewart"),
    "travel": ("travelnews travel-points travelarticle",
               "flight airline airport hotel beach island city trip passengers cruise destination vacation "
               "road park tourists",
               "lands cancels reopens bans adds visits ranks delays",
               "best cheap hidden scenic crowded luxury quiet remote",
               "Hawaii|Paris|Disney World|Delta|United Airlines|Yellowstone|London|Las Vegas|Alaska|Italy"),
    "health": ("wellness medical nutrition weightloss",
               "study doctors disease heart cancer sleep diet weight brain patients vaccine symptoms "
               "exercise risk flu",
               "links finds warns lowers raises helps reveals cuts",
               "new common rare healthy daily hidden serious simple",
               "CDC|FDA|Mayo Clinic|Harvard|WHO|Johns Hopkins"),
    "autos": ("autosnews autosenthusiasts autosreview",
              "truck car engine pickup model recall driver road dealer electric sedan suv price crash",
              "unveils recalls tests beats drives adds launches",
              "new fast electric rugged affordable classic rare",
              "Ford|Tesla|Toyota|Chevrolet|Honda|Jeep|BMW|Porsche|GM|Ram"),
    "weather": ("weathertopstories weathernews",
                "storm snow rain winds forecast temperatures cold front flooding tornado hurricane ice",
                "hits brings slams moves threatens drops",
                "heavy severe record early arctic icy",
                "Midwest|Northeast|Chicago|Denver|Texas|Florida|Great Lakes|Rockies"),
    "entertainment": ("celebrity entertainment-celebrity",
                      "star actor singer fans show interview photos divorce award movie album romance",
                      "says reveals shares slams debuts confirms",
                      "new famous secret emotional rare glamorous",
                      "Kim Kardashian|Taylor Swift|Jennifer Aniston|Brad Pitt|Kanye West|Beyonce|Oprah"),
    "tv": ("tvnews tv-celebrity tvreviews",
           "episode season finale series host show cast viewers reboot premiere",
           "returns ends renews cancels reveals teases",
           "new final shocking popular beloved",
           "Netflix|Jeopardy|The Voice|Grey's Anatomy|Saturday Night Live|HBO|The Crown"),
    "video": ("viral animals news",
              "video dog cat rescue crowd moment baby bear surprise clip",
              "catches saves stuns surprises shows",
              "adorable amazing viral rare heartwarming",
              "YouTube|TikTok|Instagram"),
    "movies": ("movienews movies-celebrity",
               "movie film box office sequel trailer director role cast premiere",
               "tops debuts earns leads reveals",
               "new big final surprising classic",
               "Disney|Marvel|Star Wars|Joker|Frozen|Hollywood"),
    "music": ("musicnews music-celebrity",
              "album song tour concert singer band chart award fans",
              "drops tops releases cancels announces",
              "new surprise hit debut farewell",
              "Grammys|Billboard|Taylor Swift|Lizzo|Ariana Grande"),
}
# Real MIND: news and sports dominate.
_MIND_CATEGORY_WEIGHTS = {"news": 30, "sports": 31, "finance": 6, "foodanddrink": 4, "lifestyle": 5, "travel": 5,
                          "health": 3, "autos": 3, "weather": 3, "entertainment": 1.5, "tv": 1.5, "video": 5,
                          "movies": 1, "music": 1}
_ENTITY_TYPES = "P O G C U N"
_LINKS = "as after amid over for in at with from before"


@dataclass
class _Vocab:
    subcategories: list[str]
    nouns: list[str]
    verbs: list[str]
    adjectives: list[str]
    names: list[str]


def _mind_vocab() -> dict[str, _Vocab]:
    return {c: _Vocab(s.split(), n.split(), v.split(), a.split(), names.split("|"))
            for c, (s, n, v, a, names) in _MIND_WORDS.items()}


# ---------------------------------------------------------------- helpers


def zipf_cumulative(n: int, exponent: float = 1.05, offset: float = 5.0) -> list[float]:
    """Cumulative weights of a Zipf-like law over ranks 0..n-1 (for ``random.choices``)."""
    ranks = np.arange(n, dtype=np.float64)
    return np.cumsum(1.0 / (ranks + offset) ** exponent).tolist()


def _lognormal_counts(rng: np.random.Generator, n: int, median: float, sigma: float, low: int, high: int
                      ) -> np.ndarray:
    """``n`` integers from a clipped log-normal law (heavy right tail, like history and session lengths)."""
    values = np.rint(rng.lognormal(math.log(median), sigma, n)) if sigma > 0 else np.full(n, round(median))
    return np.clip(values, low, high).astype(np.int64)


def numpy_array_text(ids: Sequence[str]) -> str:
    """``str(numpy.array(ids))`` for ids of 10 characters (every Amazon-M2 id), without NumPy's slow printer.

    NumPy wraps its 75-character lines after five quoted 10-character ids and indents the next line by one
    space; the unit tests compare this against ``str(np.array(ids))``.
    """
    quoted = [f"'{i}'" for i in ids]
    lines = [" ".join(quoted[k:k + 5]) for k in range(0, len(quoted), 5)]
    return "[" + "\n ".join(lines) + "]"


def _sentence(words: list[str]) -> str:
    text = " ".join(words)
    return text[:1].upper() + text[1:]


# ---------------------------------------------------------------- MIND


def _mind_title(r: random.Random, v: _Vocab, link: list[str]) -> tuple[str, str | None]:
    """A headline and the entity name it mentions (if any)."""
    name = r.choice(v.names) if r.random() < 0.7 else None
    parts = [name] if name else [r.choice(v.adjectives), r.choice(v.nouns)]
    parts += [r.choice(v.verbs), r.choice(v.adjectives), r.choice(v.nouns)]
    if r.random() < 0.6:
        parts += [r.choice(link), r.choice(v.nouns)]
        if r.random() < 0.4:
            parts.append(r.choice(v.nouns))
    return _sentence(parts), name


def _mind_abstract(r: random.Random, v: _Vocab, link: list[str]) -> str:
    sentences = []
    for _ in range(r.randint(1, 3)):
        words = [r.choice(v.names) if r.random() < 0.3 else "The " + r.choice(v.nouns), r.choice(v.verbs),
                 r.choice(v.adjectives), r.choice(v.nouns), r.choice(link), r.choice(v.nouns)]
        sentences.append(_sentence(words) + ".")
    return " ".join(sentences)


def _entities(r: random.Random, text: str, name: str | None, qids: dict[str, int]) -> str:
    """MIND's entity column: a JSON list of linked entities with their offsets in ``text``."""
    if not name or name not in text:
        return "[]"
    entity = {"Label": name, "Type": r.choice(_ENTITY_TYPES.split()), "WikidataId": f"Q{qids[name]}",
              "Confidence": round(r.uniform(0.9, 1.0), 3), "OccurrenceOffsets": [text.index(name)],
              "SurfaceForms": [name]}
    return json.dumps([entity], ensure_ascii=False)


def _time_text(seconds: int) -> str:
    """Seconds after 11/9/2019 00:00 -> MIND's ``M/D/YYYY H:MM:SS AM/PM`` (no leading zeros on month, day, hour)."""
    day, rest = divmod(seconds, 86400)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    half = "AM" if hour < 12 else "PM"
    return f"11/{9 + day}/2019 {hour % 12 or 12}:{minute:02d}:{second:02d} {half}"


def generate_mind(out: str | Path, spec: MindSpec, seed: int = 0) -> dict[str, Any]:
    """Write ``news.tsv`` and ``behaviors.tsv`` (MIND's train-split format) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    r = random.Random(seed)
    rng = np.random.default_rng([seed, 1])
    vocab = _mind_vocab()
    link = _LINKS.split()
    names = sorted({n for v in vocab.values() for n in v.names})
    qids = {n: 1000 + 7919 * k % 900_000 for k, n in enumerate(names)}
    categories = list(_MIND_CATEGORY_WEIGHTS)
    cat_cum = list(itertools.accumulate(_MIND_CATEGORY_WEIGHTS.values()))

    # News ids are scattered numbers as in the real files (N88753 ...), in file order.
    id_numbers = r.sample(range(1, int(spec.news * 1.3) + 10), spec.news)
    news_ids = [f"N{k}" for k in id_numbers]
    news_cat = r.choices(range(len(categories)), cum_weights=cat_cum, k=spec.news)
    with open(out / "news.tsv", "w", encoding="utf-8", newline="") as fh:
        for news_id, c in zip(news_ids, news_cat):
            v = vocab[categories[c]]
            title, name = _mind_title(r, v, link)
            abstract = _mind_abstract(r, v, link) if r.random() < spec.abstract_share else ""
            abs_name = name if name and name in abstract else None
            code = "".join(r.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=5))
            fh.write("\t".join([news_id, categories[c], r.choice(v.subcategories), title, abstract,
                                f"https://assets.msn.com/labs/mind/AA{code}.html", _entities(r, title, name, qids),
                                _entities(r, abstract, abs_name, qids)]) + "\n")

    # Popularity: a random rank per news, Zipf over ranks; globally and within each category.
    order = r.sample(range(spec.news), spec.news)
    global_cum = zipf_cumulative(spec.news)
    by_cat: list[list[int]] = [[] for _ in categories]
    for idx in order:
        by_cat[news_cat[idx]].append(idx)
    cat_cums = [zipf_cumulative(len(pool)) for pool in by_cat]
    # "-0" and "-1" tokens made once: an impression row is then a join of ready strings.
    skipped_tok = [f"{n}-0" for n in news_ids]
    clicked_tok = [f"{n}-1" for n in news_ids]

    # Rows per user: one each, the rest spread by a heavy-tailed activity level.
    users = min(spec.users, spec.impressions)
    activity = rng.lognormal(0.0, 1.0, users)
    extra = rng.choice(users, size=spec.impressions - users, p=activity / activity.sum())
    rows_per_user = 1 + np.bincount(extra, minlength=users)
    hist_len = _lognormal_counts(rng, users, spec.history_median, spec.history_sigma, 1, 800)
    hist_len[rng.random(users) < spec.empty_history] = 0
    user_numbers = rng.permutation(np.arange(1, int(users * 1.25) + 10))[:users]
    favourite = r.choices(range(len(categories)), cum_weights=cat_cum, k=users)
    shown_all = _lognormal_counts(rng, spec.impressions, spec.shown_median, spec.shown_sigma, spec.shown_min,
                                  spec.shown_max)
    clicks_all = 1 + rng.poisson(spec.extra_clicks, spec.impressions)
    # Six days of impressions (the MIND train week: 11/9-11/14), busier in the daytime.
    seconds_all = (rng.integers(0, 6, spec.impressions) * 86400
                   + np.clip(rng.normal(14.5, 4.5, spec.impressions), 0, 23.999) * 3600).astype(np.int64)
    # Each user's rows go to a random one of these temporary files; joined in order they interleave users.
    n_buckets = 16
    bucket_of_row = rng.integers(0, n_buckets, spec.impressions)

    def pick(fav: int, k: int) -> list[int]:
        picks = []
        for _ in range(k):
            if r.random() < spec.favourite_share and by_cat[fav]:
                pool, cum = by_cat[fav], cat_cums[fav]
            else:
                pool, cum = order, global_cum
            picks.append(pool[bisect.bisect(cum, r.random() * cum[-1])])
        return picks

    tmp = out / ".synth-behaviors"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    buckets = [open(tmp / f"{b:02d}.tsv", "w", encoding="utf-8", newline="") for b in range(n_buckets)]
    try:
        row = 0
        for u in range(users):
            fav = favourite[u]
            history = list(dict.fromkeys(pick(fav, int(hist_len[u]))))
            history_text = " ".join(news_ids[i] for i in history)
            seen = set(history)
            user_text = f"U{user_numbers[u]}"
            for _ in range(int(rows_per_user[u])):
                n_shown, n_clicks = int(shown_all[row]), min(int(clicks_all[row]), int(shown_all[row]))
                # Shown news never repeat within an impression and are never already read.
                shown: dict[int, bool] = {}
                tries = 0
                while len(shown) < n_shown and tries < 4 * n_shown + 50:
                    tries += 1
                    idx = pick(fav, 1)[0] if len(shown) < n_clicks else order[bisect.bisect(
                        global_cum, r.random() * global_cum[-1])]
                    if idx not in seen and idx not in shown:
                        shown[idx] = len(shown) < n_clicks
                seen.update(i for i, c in shown.items() if c)  # a click is read: never shown again
                tokens = list(shown.items())
                r.shuffle(tokens)
                impressions = " ".join(clicked_tok[i] if c else skipped_tok[i] for i, c in tokens)
                buckets[bucket_of_row[row]].write(
                    f"{user_text}\t{_time_text(int(seconds_all[row]))}\t{history_text}\t{impressions}\n")
                row += 1
    finally:
        for fh in buckets:
            fh.close()
    with open(out / "behaviors.tsv", "w", encoding="utf-8", newline="") as fh:
        impression_id = 0
        for b in range(n_buckets):
            with open(tmp / f"{b:02d}.tsv", encoding="utf-8", newline="") as part:
                for line in part:
                    impression_id += 1
                    fh.write(f"{impression_id}\t{line}")
    shutil.rmtree(tmp)
    return {"dataset": "mind", "news": spec.news, "impressions": spec.impressions, "users": users}


# ---------------------------------------------------------------- Amazon-M2 word lists

# category -> English (nouns, adjectives, features); other locales translate nouns and adjectives.
_AMAZON_WORDS: dict[str, tuple[str, str, str]] = {
    "electronics": ("headphones charger cable speaker keyboard mouse power-bank adapter webcam earbuds "
                    "monitor router",
                    "wireless portable fast-charging noise-cancelling ergonomic compact waterproof bluetooth",
                    "long battery life|USB-C fast charging|built-in microphone|plug and play|LED indicator|"
                    "over-current protection"),
    "kitchen": ("frying-pan kettle knife-set blender cutting-board coffee-maker toaster mixing-bowls "
                "storage-jars spatula",
                "non-stick stainless dishwasher-safe heat-resistant BPA-free electric ceramic",
                "even heat distribution|easy to clean|ergonomic handle|suitable for all hobs|"
                "includes a recipe booklet"),
    "books": ("novel cookbook guide handbook notebook diary workbook biography atlas",
              "paperback hardcover illustrated bestselling revised annotated",
              "a gripping story|over 100 recipes|step-by-step instructions|full-colour photographs|"
              "from the award-winning author"),
    "toys": ("building-blocks puzzle doll action-figure board-game plush-toy train-set craft-kit",
             "educational colourful safe creative classic interactive",
             "suitable for ages 3+|hours of fun|develops motor skills|non-toxic materials|great gift idea"),
    "clothing": ("t-shirt hoodie jacket socks leggings sneakers dress scarf jeans",
                 "slim-fit breathable warm stretchy casual lightweight organic-cotton",
                 "machine washable|true to size|soft touch fabric|reinforced seams|elastic waistband"),
    "garden": ("hose planter solar-lights bird-feeder pruning-shears garden-gloves seeds watering-can",
               "weatherproof durable outdoor solar-powered UV-resistant",
               "easy assembly|rust-proof coating|lasts all season|frost resistant|eco-friendly"),
    "beauty": ("shampoo face-cream serum lipstick perfume hair-dryer nail-polish body-lotion",
               "vegan hydrating fragrance-free long-lasting natural gentle",
               "dermatologically tested|for all skin types|cruelty free|paraben free|travel size"),
    "pet": ("dog-bed cat-tree leash chew-toy pet-bowl litter scratching-post collar",
            "washable sturdy reflective adjustable calming chew-resistant",
            "non-slip base|easy to clean|suitable for small and large pets|anti-tangle design"),
    "office": ("pens stapler desk-organiser paper folders sticky-notes calculator whiteboard",
               "refillable heavy-duty recycled A4 magnetic quick-drying",
               "pack of 10|smooth writing|fits standard ring binders|acid-free paper"),
    "sports": ("yoga-mat dumbbells water-bottle resistance-bands football bike-light tent backpack",
               "lightweight insulated anti-slip adjustable foldable waterproof",
               "carry strap included|leak-proof lid|for indoor and outdoor use|BPA free"),
}
_AMAZON_CATEGORIES = list(_AMAZON_WORDS)
# Two nouns per category (in the order of _AMAZON_CATEGORIES), adjectives, features and a sentence frame per
# locale: enough for titles and descriptions that read as German, French, ...
_LOCALE_WORDS: dict[str, tuple[str, str, str, str]] = {
    "DE": ("Kopfhörer Ladegerät Pfanne Wasserkocher Roman Kochbuch Puzzle Puppe Jacke Socken Gartenschlauch "
           "Pflanzkübel Shampoo Gesichtscreme Hundebett Katzenbaum Stifte Ordner Yogamatte Rucksack",
           "kabellos tragbar schnell robust wasserdicht leicht weich elektrisch praktisch hochwertig",
           "für Damen und Herren|mit Tragetasche|einfach zu reinigen|lange Akkulaufzeit|ideal als Geschenk|"
           "spülmaschinenfest",
           "Dieses {a} Produkt ({n}) ist {b} und {c}."),
    "FR": ("casque chargeur poêle bouilloire roman livre-de-cuisine puzzle poupée veste chaussettes tuyau "
           "jardinière shampooing crème-visage panier-pour-chien arbre-à-chat stylos classeur tapis-de-yoga "
           "sac-à-dos",
           "sans-fil portable rapide robuste étanche léger doux électrique pratique",
           "facile à nettoyer|idéal pour offrir|grande autonomie|pour homme et femme|livré avec housse",
           "Ce produit ({n}) est {a}, {b} et {c}."),
    "IT": ("cuffie caricatore padella bollitore romanzo ricettario puzzle bambola giacca calzini tubo vaso "
           "shampoo crema-viso cuccia tiragraffi penne raccoglitore tappetino zaino",
           "senza-fili portatile veloce robusto impermeabile leggero morbido elettrico pratico",
           "facile da pulire|ideale come regalo|lunga durata|per uomo e donna|custodia inclusa",
           "Questo prodotto ({n}) è {a}, {b} e {c}."),
    "ES": ("auriculares cargador sartén hervidor novela recetario puzle muñeca chaqueta calcetines manguera "
           "maceta champú crema-facial cama-para-perro rascador bolígrafos carpeta esterilla mochila",
           "inalámbrico portátil rápido resistente impermeable ligero suave eléctrico práctico",
           "fácil de limpiar|ideal para regalar|larga duración|para hombre y mujer|funda incluida",
           "Este producto ({n}) es {a}, {b} y {c}."),
    "JP": ("ヘッドホン 充電器 フライパン ケトル 小説 料理本 パズル 人形 ジャケット 靴下 ホース プランター "
           "シャンプー フェイスクリーム ペットベッド キャットタワー ボールペン ファイル ヨガマット リュック",
           "ワイヤレス 軽量 防水 急速充電 高品質 コンパクト 大容量 日本製",
           "送料無料|お手入れ簡単|プレゼントに最適|長時間再生|収納袋付き",
           "{a}で{b}な{n}です。{c}。"),
}
_UK_FRAME = "This {a} {n} is {b}, {c} and {filler}."
_QUOTED = {"UK": 'Includes a "{f}" guide, {k} spare parts, and a {y}-year warranty.',
           "DE": 'Mit Anleitung "{f}", {k} Ersatzteilen, {y} Jahre Garantie.',
           "FR": 'Avec guide "{f}", {k} pièces de rechange, garantie {y} ans.',
           "IT": 'Con guida "{f}", {k} ricambi, garanzia di {y} anni.',
           "ES": 'Con guía "{f}", {k} piezas de repuesto, garantía de {y} años.',
           "JP": '「{f}」ガイド付き, 交換部品{k}個, 保証{y}年, "正規品".'}
_BRANDS = ("Acme Zenfield Norvik Brightline Kestrel Oakhaven Lumo Tideway Vantora Halden Quillon Sorrel Mapleton "
           "Ferrano Kitsu Nordbrook Calyx Everwell Solano Brixton").split()
_COLOURS = {"UK": "black white blue red grey green pink silver navy beige",
            "DE": "schwarz weiß blau rot grau grün rosa silber", "FR": "noir blanc bleu rouge gris vert rose",
            "IT": "nero bianco blu rosso grigio verde rosa", "ES": "negro blanco azul rojo gris verde rosa",
            "JP": "ブラック ホワイト ブルー レッド グレー"}
_SIZES = "S M L XL XXL 500ml 1L 2L 30cm 20x30cm 10 pack 3 pack one-size".split()
_MATERIALS = {"UK": "cotton polyester stainless-steel plastic wood aluminium silicone glass leather",
              "DE": "Baumwolle Polyester Edelstahl Kunststoff Holz Aluminium Silikon Glas",
              "FR": "coton polyester inox plastique bois aluminium silicone verre",
              "IT": "cotone poliestere acciaio plastica legno alluminio silicone vetro",
              "ES": "algodón poliéster acero plástico madera aluminio silicona vidrio",
              "JP": "綿 ポリエステル ステンレス プラスチック 木材 アルミ"}
_AUTHORS = ("Jane Harper|Tom Whitfield|Anna Berg|Luca Moretti|Claire Dubois|Carmen Ruiz|Yuki Tanaka|"
            "Oliver Grant|Sophie Keller|Marco Bianchi").split("|")
_FILLER = ("it is designed for everyday use and made to last|the package contains everything you need|"
           "please check the size chart before ordering|our customer service team is happy to help|"
           "the colour may vary slightly from the picture|each item is tested before it leaves the factory").split("|")
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _isbn10(r: random.Random) -> str:
    digits = [r.randrange(10) for _ in range(9)]
    check = (11 - sum((10 - k) * d for k, d in enumerate(digits)) % 11) % 11
    return "".join(map(str, digits)) + ("X" if check == 10 else str(check))


def _words(text: str) -> list[str]:
    return [w.replace("-", " ") for w in text.split()]


@dataclass
class _LocaleVocab:
    locale: str
    nouns: dict[str, list[str]]
    adjectives: dict[str, list[str]]
    features: dict[str, list[str]]
    frame: str
    colours: list[str]
    materials: list[str]


def _amazon_vocab(locale: str) -> _LocaleVocab:
    if locale == "UK":
        nouns = {c: _words(n) for c, (n, _, _) in _AMAZON_WORDS.items()}
        adjs = {c: _words(a) for c, (_, a, _) in _AMAZON_WORDS.items()}
        feats = {c: f.split("|") for c, (_, _, f) in _AMAZON_WORDS.items()}
        frame = _UK_FRAME
    else:
        n, a, f, frame = _LOCALE_WORDS[locale]
        words = _words(n)
        nouns = {c: words[2 * k:2 * k + 2] for k, c in enumerate(_AMAZON_CATEGORIES)}
        adjs = {c: _words(a) for c in _AMAZON_CATEGORIES}
        feats = {c: f.split("|") for c in _AMAZON_CATEGORIES}
    return _LocaleVocab(locale, nouns, adjs, feats, frame, _words(_COLOURS[locale]), _words(_MATERIALS[locale]))


def _description(r: random.Random, v: _LocaleVocab, cat: str, long: bool) -> str:
    """A product description: some multi-line, some with commas and quoted words, some hundreds of words long."""
    adjs, feats = v.adjectives[cat], v.features[cat]
    sentences = [v.frame.format(a=r.choice(adjs), n=r.choice(v.nouns[cat]), b=r.choice(adjs), c=r.choice(adjs),
                                filler=r.choice(_FILLER))]
    for _ in range(r.randint(1, 3)):
        sentences.append(_sentence([r.choice(feats)]) + ".")
    if r.random() < 0.25:
        sentences.append(_QUOTED[v.locale].format(f=r.choice(feats), k=r.randint(2, 12), y=r.randint(1, 5)))
    if long:
        # Several hundred words: the text stage must cut such fields by tokens (text.max_field_tokens).
        target = r.randint(250, 700)
        while sum(len(s.split()) for s in sentences) < target:
            sentences.append(_sentence([r.choice(feats) + ",", r.choice(adjs), r.choice(v.nouns[cat]), "-",
                                        r.choice(_FILLER)]) + ".")
    separator = "\n" if r.random() < 0.15 else " "
    return separator.join(sentences)


def _product_row(r: random.Random, item_id: str, locale: str, cat: str, v: _LocaleVocab, spec: AmazonSpec
                 ) -> list[str]:
    brand = r.choice(_BRANDS) if r.random() < 0.9 else ""
    noun = r.choice(v.nouns[cat])
    title = " ".join(x for x in (brand, r.choice(v.adjectives[cat]), r.choice(v.adjectives[cat]), noun) if x)
    if r.random() < 0.5:
        title += f", {r.choice(v.features[cat])}"
    if r.random() < 0.3:
        title += f", {r.randint(2, 10)} Pack"
    if locale == "JP":
        price = f"{float(r.randrange(300, 30000, 10))}"
    elif r.random() < 0.01:
        price = "40000000.07"  # the real files' placeholder for an unknown price
    else:
        price = repr(round(math.exp(r.uniform(1.0, 5.5)), 2))
    colour = r.choice(v.colours) if r.random() < 0.6 else ""
    size = r.choice(_SIZES) if r.random() < 0.4 else ""
    model = f"{r.choice(_ALNUM[10:])}{r.choice(_ALNUM[10:])}-{r.randint(100, 9999)}" if r.random() < 0.5 else ""
    material = r.choice(v.materials) if r.random() < 0.3 else ""
    author = r.choice(_AUTHORS) if cat == "books" else ""
    desc = _description(r, v, cat, r.random() < spec.long_desc_share) if r.random() < 0.92 else ""
    return [item_id, locale, title, price, brand, colour, size, model, material, author, desc]


def _counts(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Split ``total`` by ``shares`` (at least one each, the remainder to the largest)."""
    out = {k: max(1, int(total * s)) for k, s in shares.items()}
    biggest = max(shares, key=shares.get)
    out[biggest] += total - sum(out.values())
    return out


def generate_amazon_m2(out: str | Path, spec: AmazonSpec, seed: int = 0) -> dict[str, Any]:
    """Write ``products_train.csv`` and ``sessions_train.csv`` (Amazon-M2 task 1 format) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    r = random.Random(seed)
    per_locale = _counts(spec.products, PRODUCT_LOCALES)
    pools: dict[str, list[list[str]]] = {}  # locale -> category -> ids, most popular first
    all_ids: list[str] = []
    used: set[str] = set()

    def new_id(cat: str) -> str:
        while True:
            item_id = _isbn10(r) if cat == "books" and r.random() < 0.7 else "B0" + "".join(r.choices(_ALNUM, k=8))
            if item_id not in used:
                used.add(item_id)
                return item_id

    with open(out / "products_train.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["id", "locale", "title", "price", "brand", "color", "size", "model", "material", "author",
                         "desc"])
        for locale, n in per_locale.items():  # the real file is grouped by locale too
            v = _amazon_vocab(locale)
            local: set[str] = set()
            cats = r.choices(_AMAZON_CATEGORIES, k=n)
            pools[locale] = [[] for _ in _AMAZON_CATEGORIES]
            for cat in cats:
                # Some products are sold in several locales under one id (with the local title).
                item_id = r.choice(all_ids) if all_ids and r.random() < 0.08 else new_id(cat)
                if item_id in local:
                    item_id = new_id(cat)
                local.add(item_id)
                writer.writerow(_product_row(r, item_id, locale, cat, v, spec))
                pools[locale][_AMAZON_CATEGORIES.index(cat)].append(item_id)
            all_ids.extend(local)
            all_ids.sort()  # set order must not leak into the output
    # Zipf popularity within each (locale, category) pool and over each locale's whole pool.
    for locale in pools:
        for pool in pools[locale]:
            r.shuffle(pool)
    flat = {loc: [i for pool in cats for i in pool] for loc, cats in pools.items()}
    for loc in flat:
        r.shuffle(flat[loc])
    cums = {loc: [zipf_cumulative(len(p)) if p else [] for p in cats] for loc, cats in pools.items()}
    flat_cums = {loc: zipf_cumulative(len(ids)) for loc, ids in flat.items()}

    rng = np.random.default_rng([seed, 2])
    locales = list(SESSION_LOCALES)
    loc_cum = list(itertools.accumulate(SESSION_LOCALES.values()))
    prev_lengths = _lognormal_counts(rng, spec.sessions, spec.prev_median, spec.prev_sigma, 1, spec.prev_max)
    with open(out / "sessions_train.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["prev_items", "next_item", "locale"])
        for n_prev in prev_lengths.tolist():
            loc = locales[bisect.bisect(loc_cum, r.random() * loc_cum[-1])]
            cat = r.randrange(len(_AMAZON_CATEGORIES))
            while not pools[loc][cat]:
                cat = (cat + 1) % len(_AMAZON_CATEGORIES)
            pool, cum = pools[loc][cat], cums[loc][cat]
            fpool, fcum = flat[loc], flat_cums[loc]
            items: list[str] = []
            for _ in range(n_prev + 1):
                if items and r.random() < spec.repeat_share:
                    items.append(r.choice(items))  # back to an item seen earlier in the session
                elif r.random() < spec.focus_share:
                    items.append(pool[bisect.bisect(cum, r.random() * cum[-1])])
                else:
                    items.append(fpool[bisect.bisect(fcum, r.random() * fcum[-1])])
            while items[-1] == items[-2] and len(fpool) > 1:  # the next item is never the one just viewed
                items[-1] = fpool[bisect.bisect(fcum, r.random() * fcum[-1])]
            writer.writerow([numpy_array_text(items[:-1]), items[-1], loc])
    return {"dataset": "amazon-m2", "products": spec.products, "sessions": spec.sessions,
            "products_per_locale": per_locale}


# ---------------------------------------------------------------- entry points


def spec_for(dataset: str, preset: str = "smoke", scale: float = 1.0, **overrides: int | None) -> MindSpec | AmazonSpec:
    """The preset's spec, its counts multiplied by ``scale``, then ``overrides`` (news=, impressions=, ...) applied.

    Scaling MIND keeps impressions per user and news per impression as in the preset.
    """
    if dataset not in PRESETS:
        raise ValueError(f"unknown dataset {dataset!r}: one of {', '.join(DATASETS)}")
    if preset not in PRESETS[dataset]:
        raise ValueError(f"unknown preset {preset!r}: one of {', '.join(PRESETS[dataset])}")
    spec = PRESETS[dataset][preset]
    counts = ("news", "impressions", "users") if dataset == "mind" else ("products", "sessions")
    if scale != 1.0:
        spec = replace(spec, **{k: max(1, round(getattr(spec, k) * scale)) for k in counts})
    known = {f.name for f in fields(spec)}
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"{dataset} has no setting {unknown[0]!r}; counts: {', '.join(counts)}")
    if dataset == "mind" and "impressions" in given and "users" not in given:
        # More (or fewer) impressions: keep the preset's impressions per user.
        given["users"] = max(1, round(given["impressions"] * spec.users / spec.impressions))
    return replace(spec, **given)


def generate(dataset: str, out: str | Path, preset: str = "smoke", seed: int = 0, scale: float = 1.0,
             **overrides: int | None) -> dict[str, Any]:
    """Write one synthetic dataset into ``out``; returns its sizes, the files' bytes and the seconds it took."""
    spec = spec_for(dataset, preset, scale, **overrides)
    began, cpu = time.perf_counter(), time.process_time()
    if dataset == "mind":
        info = generate_mind(out, spec, seed)
        names = ("news.tsv", "behaviors.tsv")
    else:
        info = generate_amazon_m2(out, spec, seed)
        names = ("products_train.csv", "sessions_train.csv")
    # CPU seconds beside wall seconds: on a shared machine the wall clock says more about the neighbours.
    info.update({"preset": preset, "seed": seed, "scale": scale, "seconds": round(time.perf_counter() - began, 2),
                 "cpu_seconds": round(time.process_time() - cpu, 2),
                 "bytes": {n: (Path(out) / n).stat().st_size for n in names}})
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trsr_utils.data.synth", description=__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("--out", required=True, help="folder for the files (created)")
    parser.add_argument("--preset", default="smoke", choices=["smoke", "large"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the preset's counts (e.g. 0.1)")
    parser.add_argument("--force", action="store_true", help="overwrite files already in --out")
    for name in ("news", "impressions", "users", "products", "sessions"):
        parser.add_argument(f"--{name}", type=int, default=None, help=f"number of {name} (overrides the preset)")
    args = parser.parse_args(argv)
    overrides = {k: getattr(args, k) for k in ("news", "impressions", "users", "products", "sessions")}
    present = [name for name in RAW_FILES[args.dataset] if (Path(args.out) / name).exists()]
    if present and not args.force:  # --out may well be data/raw: never overwrite a real download unasked
        parser.error(f"{args.out} already holds {', '.join(present)}; pass --force to overwrite")
    info = generate(args.dataset, args.out, args.preset, args.seed, args.scale, **overrides)
    sizes = ", ".join(f"{n} {b / 1e6:.1f} MB" for n, b in info["bytes"].items())
    print(f"{args.dataset} ({args.preset}, seed {args.seed}) -> {args.out}: {sizes} in {info['seconds']} s "
          f"({info['cpu_seconds']} CPU s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["AmazonSpec", "MindSpec", "PRESETS", "VERSION", "generate", "generate_amazon_m2", "generate_mind",
           "numpy_array_text", "spec_for", "zipf_cumulative"]
