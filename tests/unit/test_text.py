from trsr_utils.method import text
from trsr_utils.core.config import resolve_config


def test_item_text_order_skips_empty_and_normalises():
    attrs = {"year": "1995", "title": "Heat\tand\nlight", "genres": "", "extra": "ignored"}
    assert text.item_text(attrs, ["title", "year", "genres"]) == "title: Heat and light; year: 1995"
    assert text.item_text({"title": None, "year": float("nan")}, ["title", "year"]) == ""


def test_long_fields_are_capped_with_a_visible_ellipsis(smol_tokenizer):
    long = "word " * 300
    line = text.item_text({"title": "T", "description": long}, ["title", "description"], smol_tokenizer, 20)
    value = line.split("description: ")[1]
    assert value.endswith(text.ELLIPSIS)
    assert len(smol_tokenizer.encode(value, add_special_tokens=False)) <= 21
    assert text.item_text({"title": "Short"}, ["title"], smol_tokenizer, 20) == "title: Short"


def test_default_attribute_orders_follow_the_paper():
    assert text.attribute_order(resolve_config("demo")) == ["title", "year", "genres"]
    mind = resolve_config("paper-mind")
    assert text.attribute_order(mind) == ["category", "subcategory", "title"]
    mind.text.include_abstract = True
    assert text.attribute_order(mind)[-1] == "abstract"
    amazon = resolve_config("paper-amazon")
    assert text.attribute_order(amazon)[0] == "title" and text.attribute_order(amazon)[-1] == "description"
    assert text.domain_of(amazon) == "products" and text.domain_of(mind) == "news"


def test_item_texter_caches_and_names_missing_items():
    texter = text.ItemTexter({"a": {"title": "A"}}, ["title"])
    assert texter("a") == "title: A" and texter("a") is texter("a")
    try:
        texter("zz")
    except KeyError as exc:
        assert "zz" in str(exc)
    else:
        raise AssertionError("missing item must raise")
