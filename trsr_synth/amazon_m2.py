"""Synthetic Amazon-M2: ``products_train.csv`` and ``sessions_train.csv`` in task 1's exact format (see
:mod:`trsr_synth`)."""

from __future__ import annotations

import bisect
import csv
import itertools
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trsr_synth.common import lognormal_counts, numpy_array_text, sentence, zipf_cumulative


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


# ---------------------------------------------------------------- word lists

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


# ---------------------------------------------------------------- generator


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
        sentences.append(sentence([r.choice(feats)]) + ".")
    if r.random() < 0.25:
        sentences.append(_QUOTED[v.locale].format(f=r.choice(feats), k=r.randint(2, 12), y=r.randint(1, 5)))
    if long:
        # Several hundred words: the text stage must cut such fields by tokens (text.max_field_tokens).
        target = r.randint(250, 700)
        while sum(len(s.split()) for s in sentences) < target:
            sentences.append(sentence([r.choice(feats) + ",", r.choice(adjs), r.choice(v.nouns[cat]), "-",
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
    prev_lengths = lognormal_counts(rng, spec.sessions, spec.prev_median, spec.prev_sigma, 1, spec.prev_max)
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

