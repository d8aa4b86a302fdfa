"""Filtering, user splits and negative sampling: counts, exclusions, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trsr_utils.data import UserSequence, build_samples, draw_negatives, filter_sequences, split_users


def seqs(lengths):
    return [UserSequence(f"u{i}", [f"i{i}_{k}" for k in range(n)], [float(k) for k in range(n)])
            for i, n in enumerate(lengths)]


def test_filter_drop_and_keep_recent():
    data = seqs([5, 10, 25, 26, 40])
    kept, rep = filter_sequences(data, 10, 25, "drop")
    assert [len(s.items) for s in kept] == [10, 25]
    assert (rep.too_short, rep.too_long_dropped, rep.truncated, rep.kept) == (1, 2, 0, 2)
    kept, rep = filter_sequences(data, 10, 25, "keep_recent")
    assert [len(s.items) for s in kept] == [10, 25, 25, 25]
    assert kept[3].items == data[4].items[-25:] and kept[3].timestamps == data[4].timestamps[-25:]
    assert rep.truncated == 2
    with pytest.raises(ValueError, match="long_history"):
        filter_sequences(data, 10, 25, "cut")


def test_split_sizes_disjoint_deterministic():
    users = [f"u{i}" for i in range(100)]
    a = split_users(users, {"train": 50, "valid": 10, "test": 20}, seed=3)
    b = split_users(list(reversed(users)), {"train": 50, "valid": 10, "test": 20}, seed=3)
    assert a == b  # input order does not matter
    assert [len(a[s]) for s in ("train", "valid", "test")] == [50, 10, 20]
    assert len(set(a["train"]) | set(a["valid"]) | set(a["test"])) == 80
    assert split_users(users, {"train": 50, "valid": 10, "test": 20}, seed=4) != a
    with pytest.raises(ValueError, match="asks for 101 users .* only 100 users remain"):
        split_users(users, {"train": 101}, seed=0)


@settings(max_examples=60, deadline=None)
@given(
    catalog_size=st.integers(30, 300),
    n=st.integers(0, 20),
    exclude=st.sets(st.integers(0, 29), max_size=9),
    seed=st.integers(0, 2**31),
)
def test_negatives_property(catalog_size, n, exclude, seed):
    ids = np.array([f"x{i}" for i in range(catalog_size)])
    ex = {f"x{i}" for i in exclude}
    neg, topped = draw_negatives(np.random.default_rng(seed), ids, ex, n)
    assert len(neg) == n == topped
    assert len(set(neg)) == n  # distinct
    assert not set(neg) & ex  # never the history or the positive
    assert set(neg) <= set(ids.tolist())
    again, _ = draw_negatives(np.random.default_rng(seed), ids, ex, n)
    assert again == neg  # same seed -> same draw


def test_negatives_preferred_pool_then_top_up():
    ids = np.array([f"x{i}" for i in range(50)])
    neg, topped = draw_negatives(np.random.default_rng(0), ids, {"x0", "x1"}, 5, preferred=["x1", "x2", "x3"])
    assert set(neg[:2]) == {"x2", "x3"} and topped == 3 and "x1" not in neg
    with pytest.raises(ValueError, match="only 1 catalogue items"):
        draw_negatives(np.random.default_rng(0), ids[:3], {"x0", "x1"}, 2)


def test_build_samples_shape_and_stability():
    data, _ = filter_sequences(seqs([12] * 40), 10, 25)
    catalog = sorted({i for s in data for i in s.items})
    sizes = {"train": 20, "valid": 5, "test": 10}
    s1, c = build_samples(data, catalog, sizes, 1, 20, seed=0)
    assert s1["split"].value_counts().to_dict() == {"train": 20, "test": 10, "valid": 5}
    assert c == {"negatives_topped_up": 0}
    for row in s1.itertuples():
        assert len(row.history) == 11 and row.positive == f"{row.user_id.replace('u', 'i')}_11"
        assert len(row.negatives) == (1 if row.split == "train" else 20)
        assert not set(row.negatives) & set(row.history) | {row.positive} & set(row.negatives)
    s2, _ = build_samples(data, catalog, sizes, 1, 20, seed=0)
    assert s1.equals(s2)
    # a user's candidates depend on (seed, user) only, not on the split sizes
    s3, _ = build_samples(data, catalog, {"train": 10, "valid": 5, "test": 10}, 1, 20, seed=0)
    both = set(s1.user_id) & set(s3.user_id)
    same_split = [u for u in both if (s1.set_index("user_id").loc[u, "split"] == s3.set_index("user_id").loc[u, "split"])]
    for u in same_split:
        assert s1.set_index("user_id").loc[u, "negatives"] == s3.set_index("user_id").loc[u, "negatives"]
    assert not build_samples(data, catalog, sizes, 1, 20, seed=1)[0].equals(s1)


def test_upstream_negatives_are_the_official_draw_seeded_and_may_hit_the_users_own_items():
    from trsr_utils.data.sampling import collisions, upstream_negatives, user_rng

    ids = np.array([f"i{k:02d}" for k in range(30)])
    drawn = upstream_negatives(user_rng(0, "u1"), ids, 20)
    assert drawn == [str(ids[i]) for i in user_rng(0, "u1").choice(30, 20, replace=False)]  # pandas' sample(n)
    assert len(set(drawn)) == 20 and drawn == upstream_negatives(user_rng(0, "u1"), ids, 20)
    with pytest.raises(ValueError, match="catalogue of 30 items"):
        upstream_negatives(user_rng(0, "u1"), ids, 31)
    # two thirds of a small catalogue: the users' own items cannot all be missed
    data = [UserSequence(f"u{u}", [f"i{k:02d}" for k in range(u, u + 12)]) for u in range(10)]
    samples, counters = build_samples(data, list(ids), {"train": 0, "valid": 0, "test": 10}, 1, 20, seed=0,
                                      negative_source="upstream")
    hits = [len(set(r.negatives) & set(r.history)) for r in samples.itertuples()]
    assert counters["negatives_in_history"] == sum(hits) > 0 and counters == {"negatives_topped_up": 0,
                                                                                **collisions(samples)}
    assert counters["users_with_positive_negative"] == sum(r.positive in r.negatives for r in samples.itertuples())
    assert counters["users_with_positive_negative"] > 0
    assert collisions(build_samples(data, list(ids), {"test": 10}, 1, 10, seed=0)[0]) == {  # ours: never
        "negatives_in_history": 0, "users_with_history_negative": 0, "users_with_positive_negative": 0}
