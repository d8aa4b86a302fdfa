"""Synthetic MIND: ``news.tsv`` and ``behaviors.tsv`` in the train split's exact format (see :mod:`trsr_synth`)."""

from __future__ import annotations

import bisect
import itertools
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trsr_synth.common import lognormal_counts, sentence, zipf_cumulative


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


# ---------------------------------------------------------------- word lists

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



# ---------------------------------------------------------------- generator


def _mind_title(r: random.Random, v: _Vocab, link: list[str]) -> tuple[str, str | None]:
    """A headline and the entity name it mentions (if any)."""
    name = r.choice(v.names) if r.random() < 0.7 else None
    parts = [name] if name else [r.choice(v.adjectives), r.choice(v.nouns)]
    parts += [r.choice(v.verbs), r.choice(v.adjectives), r.choice(v.nouns)]
    if r.random() < 0.6:
        parts += [r.choice(link), r.choice(v.nouns)]
        if r.random() < 0.4:
            parts.append(r.choice(v.nouns))
    return sentence(parts), name


def _mind_abstract(r: random.Random, v: _Vocab, link: list[str]) -> str:
    sentences = []
    for _ in range(r.randint(1, 3)):
        words = [r.choice(v.names) if r.random() < 0.3 else "The " + r.choice(v.nouns), r.choice(v.verbs),
                 r.choice(v.adjectives), r.choice(v.nouns), r.choice(link), r.choice(v.nouns)]
        sentences.append(sentence(words) + ".")
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
    hist_len = lognormal_counts(rng, users, spec.history_median, spec.history_sigma, 1, 800)
    hist_len[rng.random(users) < spec.empty_history] = 0
    user_numbers = rng.permutation(np.arange(1, int(users * 1.25) + 10))[:users]
    favourite = r.choices(range(len(categories)), cum_weights=cat_cum, k=users)
    shown_all = lognormal_counts(rng, spec.impressions, spec.shown_median, spec.shown_sigma, spec.shown_min,
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

