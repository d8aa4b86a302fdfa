"""Baselines score exactly our candidates; RecBole trains and scores on this stack (NumPy < 2, weights_only)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trsr_utils import baselines
from trsr_utils.method import metrics

ITEMS = [str(i) for i in range(1, 41)]


def _samples(rows):
    return pd.DataFrame(rows, columns=["user_id", "split", "history", "positive", "negatives"])


def _cyclic_samples(n_users: int = 60, length: int = 8, seed: int = 0) -> pd.DataFrame:
    """Users walk a cycle of 20 items (i -> i+1): the next item is perfectly predictable from the last one."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(0, 20))
        seq = [str((start + t) % 20 + 1) for t in range(length + 1)]
        split = "train" if u < n_users - 10 else "test"
        negatives = [i for i in ITEMS[:20] if i not in seq][:5]
        rows.append((f"u{u}", split, seq[:-1], seq[-1], negatives))
    return _samples(rows)


def test_training_sequences_never_contain_an_evaluation_positive():
    s = _samples([("a", "train", ["1", "2"], "3", ["9"]), ("b", "valid", ["4"], "5", ["9"]),
                  ("c", "test", ["6", "7"], "8", ["9"])])
    assert baselines.training_sequences(s) == {"a": ["1", "2", "3"], "b": ["4"], "c": ["6", "7"]}
    assert baselines.candidates(s) == [["3", "9"], ["5", "9"], ["8", "9"]]


def test_all_interactions_keep_every_user_but_the_evaluation_positives():
    from trsr_utils.data.core import UserSequence

    s = _samples([("a", "train", ["1", "2"], "3", ["9"]), ("b", "valid", ["4"], "5", ["9"]),
                  ("c", "test", ["6", "7"], "8", ["9"])])
    # "a"'s history was cut by the filter (keep_recent), "z" was filtered out: both count in full
    loaded = [UserSequence("a", ["0", "1", "2", "3"]), UserSequence("b", ["4", "5"]),
              UserSequence("c", ["6", "7", "8"]), UserSequence("z", ["8", "8"])]
    train = baselines.all_interaction_sequences(loaded, s)
    assert train == {"a": ["0", "1", "2", "3"], "b": ["4"], "c": ["6", "7"], "z": ["8", "8"]}
    assert "5" not in {i for seq in train.values() for i in seq}  # no held-out positive leaks ...
    # ... unless another user interacted with it, as "z" did with "8": that is what the second regime adds
    assert baselines.popularity_scores(train, s[s.split == "test"])[0].tolist() == [2, 0]
    with pytest.raises(ValueError, match="user c: the sample's positive '8' is not the last item"):
        baselines.all_interaction_sequences([*loaded[:2], UserSequence("c", ["8", "6"])], s)
    with pytest.raises(ValueError, match="1 evaluation users are not in the loaded sequences"):
        baselines.all_interaction_sequences(loaded[:2], s)


def test_random_is_seeded_and_popularity_counts_training_items():
    s = _samples([("a", "train", ["1", "2"], "2", ["3"]), ("t", "test", ["1"], "2", ["3", "1"])])
    test = s[s.split == "test"]
    assert all(np.array_equal(x, y) for x, y in zip(baselines.random_scores(test, 1),
                                                      baselines.random_scores(test, 1)))
    train = baselines.training_sequences(s)  # a: 1 2 2, t: 1
    assert baselines.popularity_scores(train, test)[0].tolist() == [2, 0, 2]  # item 2, item 3, item 1
    # a tie with a negative (item 1) ranks the positive below it: pessimistic
    assert metrics.positive_rank(baselines.popularity_scores(train, test)[0]) == 2


def test_item_cf_sums_cosine_similarities_over_the_history():
    s = _samples([("a", "train", ["1"], "2", ["9"]), ("b", "train", ["1"], "2", ["9"]),
                  ("c", "train", ["1"], "3", ["9"]), ("t", "test", ["1"], "2", ["3", "9"])])
    test = s[s.split == "test"]
    scores = baselines.item_cf_scores(baselines.training_sequences(s), test)[0]
    # users of 1: a b c t (4); of 2: a b (2); of 3: c (1); item 9 never seen
    assert scores == pytest.approx([2 / np.sqrt(4 * 2), 1 / np.sqrt(4 * 1), 0.0])


def test_content_scores_prefer_the_candidate_that_shares_the_history_text():
    texts = {"1": "space opera with robots", "2": "robots in space again", "3": "a quiet french romance",
             "4": "romance in paris"}
    test = _samples([("t", "test", ["1"], "2", ["3", "4"])])
    scores = baselines.tfidf_scores(texts, test)[0]
    assert scores[0] > scores[1] and scores[0] > scores[2]
    assert metrics.positive_rank(scores) == 1


@pytest.mark.slow
def test_minilm_embeddings_match_the_published_model():
    from trsr_utils.baselines import embeddings

    v = embeddings.embed(["A man is eating food.", "A man is eating a piece of bread.",
                          "The girl is carrying a baby."])
    assert v.shape == (3, 384)
    assert np.linalg.norm(v, axis=1) == pytest.approx([1, 1, 1], abs=1e-5)
    # The similarity sentence-transformers documents for this pair with all-MiniLM-L6-v2.
    assert float(v[0] @ v[1]) == pytest.approx(0.7553, abs=2e-3)
    assert float(v[0] @ v[2]) < 0.1


def test_recbole_runs_on_this_numpy():
    """RecBole 1.2.1 uses aliases NumPy 2 removed (np.float_ ...): the project pins numpy < 2."""
    assert int(np.__version__.split(".")[0]) < 2
    import recbole.data  # noqa: F401  (fails at import under NumPy 2)


@pytest.fixture(scope="module")
def cyclic():
    return _cyclic_samples()


@pytest.fixture(scope="module")
def sasrec(cyclic):
    from trsr_utils.baselines import recbole_models

    return recbole_models.train("SASRec", baselines.training_sequences(cyclic), epochs=40, embedding_size=32,
                                max_len=8, learning_rate=0.01, seed=0)


def test_sasrec_learns_a_deterministic_next_item_and_scores_our_candidates(cyclic, sasrec):
    test = cyclic[cyclic.split == "test"].reset_index(drop=True)
    scores = sasrec.score(test)
    assert [len(s) for s in scores] == [6] * len(test)
    assert metrics.evaluate(scores)["recall@3"] >= 0.8  # random: 3/6


def test_recbole_scores_are_its_full_item_scores_indexed_by_our_candidates(cyclic, sasrec):
    import torch
    from recbole.data.interaction import Interaction

    test = cyclic[cyclic.split == "test"].reset_index(drop=True)
    ours = sasrec.score(test.head(1))[0]
    s = test.iloc[0]
    width = sasrec.dataset.field2seqlen["item_id_list"]
    hist = [sasrec.dataset.token2id("item_id", i) for i in s.history][-width:]
    inter = Interaction({"item_id_list": torch.tensor([hist + [0] * (width - len(hist))]),
                         "item_length": torch.tensor([len(hist)]), "user_id": torch.tensor([0])})
    with torch.no_grad():
        full = sasrec.model.full_sort_predict(inter)[0].numpy()
    ids = [sasrec.dataset.token2id("item_id", c) for c in [s.positive, *s.negatives]]
    assert ours == pytest.approx(full[ids], rel=1e-5)


def test_unseen_candidates_score_minus_infinity(sasrec):
    test = _samples([("t", "test", ["1", "2"], "unseen-item", ["3", "4"])])
    scores = sasrec.score(test)[0]
    assert scores[0] == -np.inf and np.isfinite(scores[1:]).all()
    assert metrics.positive_rank(scores) == 3  # last: an unknown positive gains nothing


def test_trained_weights_reload_under_torch_weights_only(tmp_path, cyclic, sasrec):
    """RecBole's own checkpoints pickle its Config and fail under torch's weights_only default; ours do not."""
    from trsr_utils.baselines import recbole_models

    test = cyclic[cyclic.split == "test"].reset_index(drop=True)
    before = sasrec.score(test)
    path = recbole_models.save_state(sasrec, tmp_path / "sasrec.pt")
    fresh = recbole_models.train("SASRec", baselines.training_sequences(cyclic), epochs=1, embedding_size=32,
                                 max_len=8, learning_rate=0.01, seed=1)
    assert not all(np.allclose(a, b) for a, b in zip(before, fresh.score(test)))
    recbole_models.load_state(fresh, path)  # torch.load(..., weights_only=True)
    assert all(np.allclose(a, b) for a, b in zip(before, fresh.score(test)))


def test_recbole_leaves_torch_anomaly_detection_off(sasrec):
    """Importing RecBole's models switches anomaly detection on process-wide (2x slower backward passes)."""
    import torch

    assert not torch.is_anomaly_enabled()


@pytest.mark.parametrize("model", ["GRU4Rec", "NARM", "CORE", "DIN", "DIEN", "NeuMF"])
def test_every_table2_recbole_model_trains_and_scores(cyclic, model):
    from trsr_utils.baselines import recbole_models

    trained = recbole_models.train(model, baselines.training_sequences(cyclic), epochs=1, embedding_size=16,
                                   max_len=8, seed=0)
    scores = trained.score(cyclic[cyclic.split == "test"])
    assert len(scores) == 10 and all(len(s) == 6 and np.isfinite(s).all() for s in scores)


def test_unknown_recbole_model_is_a_clear_error(cyclic):
    from trsr_utils.baselines import recbole_models

    with pytest.raises(ValueError, match="unknown RecBole baseline 'Foo'"):
        recbole_models.train("Foo", baselines.training_sequences(cyclic))
