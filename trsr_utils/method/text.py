"""Item -> one line of text: ``attribute: value; attribute: value``.

Each dataset has a default attribute order (the paper's, for MIND and
Amazon-M2). Empty values are skipped, whitespace inside values is normalised,
and very long fields (Amazon descriptions) are capped by tokens with a visible
ellipsis so one item cannot swallow a block's token budget.

Notebooks 01 and 02 teach it.
"""

from __future__ import annotations

from collections import Counter

from typing import Any, Mapping, Sequence

from trsr_utils.core.config import Config

DEFAULT_ATTRIBUTES: dict[str, list[str]] = {
    "mind": ["category", "subcategory", "title"],
    "amazon-m2": ["title", "price", "brand", "color", "size", "model", "material", "author", "description"],
    "movielens-100k": ["title", "year", "genres"],
}
DOMAINS = {"mind": "news", "amazon-m2": "products", "movielens-100k": "movies"}
ELLIPSIS = "…"


def attribute_order(cfg: Config) -> list[str]:
    """The attributes shown for the profile's dataset, in order."""
    if cfg.text.attributes:
        return list(cfg.text.attributes)
    order = list(DEFAULT_ATTRIBUTES[cfg.data.dataset])
    if cfg.data.dataset == "mind" and cfg.text.include_abstract:
        order.append("abstract")
    return order


def domain_of(cfg: Config) -> str:
    return cfg.prompt.domain or DOMAINS[cfg.data.dataset]


def normalise(value: Any) -> str:
    """Tabs, newlines and runs of spaces inside a value become one space."""
    if value is None:
        return ""
    text = str(value)
    if text.lower() == "nan":
        return ""
    return " ".join(text.split())


def cap_tokens(value: str, tokenizer: Any, max_tokens: int) -> str:
    """Cut ``value`` to at most ``max_tokens`` tokens, marking the cut with an ellipsis."""
    if max_tokens <= 0 or tokenizer is None:
        return value
    ids = tokenizer.encode(value, add_special_tokens=False)
    if len(ids) <= max_tokens:
        return value
    # Leave room for the ellipsis; drop a trailing partial character from the cut.
    head = tokenizer.decode(ids[: max(1, max_tokens - 1)]).rstrip("\ufffd").rstrip()
    return head + ELLIPSIS


def item_text(
    attrs: Mapping[str, Any],
    order: list[str],
    tokenizer: Any = None,
    max_field_tokens: int = 0,
) -> str:
    """``{"title": "Heat", "year": "1995"}`` -> ``"title: Heat; year: 1995"``."""
    parts = []
    for name in order:
        value = normalise(attrs.get(name))
        if not value:
            continue
        parts.append(f"{name}: {cap_tokens(value, tokenizer, max_field_tokens)}")
    return "; ".join(parts)


class ItemTexter:
    """Serialises items of one catalogue, caching each line (items recur across users)."""

    def __init__(self, items: Mapping[str, Mapping[str, Any]], order: list[str], tokenizer: Any = None,
                 max_field_tokens: int = 0):
        self.items, self.order = items, order
        self.tokenizer, self.max_field_tokens = tokenizer, max_field_tokens
        self._cache: dict[str, str] = {}

    @classmethod
    def from_config(cls, cfg: Config, items: Mapping[str, Mapping[str, Any]], tokenizer: Any = None) -> "ItemTexter":
        return cls(items, attribute_order(cfg), tokenizer, cfg.text.max_field_tokens)

    def __call__(self, item_id: str) -> str:
        line = self._cache.get(item_id)
        if line is None:
            if item_id not in self.items:
                raise KeyError(f"item {item_id!r} is not in the catalogue of this run")
            line = item_text(self.items[item_id], self.order, self.tokenizer, self.max_field_tokens)
            self._cache[item_id] = line
        return line


_CATEGORY_FIELDS = ("genres", "category", "subcategory", "brand")


def item_categories(attrs: Mapping[str, str]) -> list[str]:
    """The categories of one item: MovieLens genres, MIND category, Amazon-M2 brand (whichever exist)."""
    for name in _CATEGORY_FIELDS:
        value = (attrs.get(name) or "").strip()
        if value:
            return [v.strip() for v in value.split(",") if v.strip()] if name == "genres" else [value]
    return []


def category_counts(item_ids: Sequence[str], catalog: Mapping[str, Mapping[str, str]]) -> Counter:
    """How often each category (:func:`item_categories`) occurs among the items, in the order first seen."""
    return Counter(c for i in item_ids for c in item_categories(catalog.get(i, {})))
