"""RecBole's classic models trained on our training sequences, scoring our fixed candidates.

RecBole's own evaluation draws its own negatives, so we use RecBole only to
*train*: the training sequences are written as one RecBole atomic ``.inter`` file, split
100/0/0 (RecBole builds the prefix -> next item examples itself), a model is
fitted without validation, and then each test user's
history goes through the model's full-item scores, indexed by our 21
candidates (pointwise models: ``predict`` on each candidate).

Candidates RecBole never saw in training have no embedding: they get -inf
(ties go against the positive, so an unseen positive ranks last).

Three problems of RecBole 1.2.1, solved here rather than patched:

* NumPy 2 removed the aliases RecBole uses (``np.float_`` ...): the project
  pins ``numpy<2`` (pyproject.toml), and ``tests/unit/test_baselines.py``
  trains and scores through RecBole on that pin.
* torch >= 2.6 loads checkpoints with ``weights_only=True``, which rejects
  RecBole's pickled checkpoints (they contain its Config object): we never
  ask RecBole to save or reload (``saved=False``); a trained model is kept as
  a plain ``state_dict`` that loads with ``weights_only=True``
  (:func:`save_state` / :func:`load_state`).
* Importing its models (``recbole.utils.get_model``) runs
  ``torch.autograd.set_detect_anomaly(True)`` (in ``sine.py``), which
  halved the speed of every later backward pass in the process, including
  LoRA fine-tuning in the same notebook: :func:`train` restores the setting.

Notebook 07 teaches them (its ID-based rows); notebook 09 retrieves with SASRec.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trsr_utils.baselines import candidates
from trsr_utils.core.io import atomic_path

SEQUENTIAL = ("GRU4Rec", "NARM", "SASRec", "CORE", "DIN", "DIEN")
GENERAL = ("NeuMF",)
MODELS = SEQUENTIAL + GENERAL
POINTWISE = ("DIN", "DIEN", "NeuMF")  # trained with sampled negatives and a binary label


def write_atomic_file(train: dict[str, list[str]], folder: Path, name: str) -> Path:
    """``folder/name/name.inter``: one row per interaction; the timestamp is the position in the sequence."""
    d = folder / name
    d.mkdir(parents=True, exist_ok=True)
    rows = [f"{u}\t{i}\t{t}\n" for u, seq in train.items() for t, i in enumerate(seq)]
    if not rows:
        raise ValueError("no training interactions for RecBole")
    (d / f"{name}.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "".join(rows))
    return d


def recbole_config(model: str, data_path: Path, name: str, epochs: int, embedding_size: int, max_len: int,
                   learning_rate: float, seed: int, checkpoint_dir: Path, device: str = "cpu") -> Any:
    from recbole.config import Config

    size = embedding_size
    conf: dict[str, Any] = {
        "data_path": str(data_path), "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp", "load_col": None,
        "epochs": epochs, "train_batch_size": 256, "eval_batch_size": 256, "learning_rate": learning_rate,
        "MAX_ITEM_LIST_LENGTH": max_len, "embedding_size": size, "hidden_size": size, "inner_size": size,
        "n_layers": 2, "n_heads": 2, "mlp_hidden_size": [size, size], "mf_embedding_size": size,
        "mlp_embedding_size": size, "mlp_hidden_size_neumf": [size],
        "train_neg_sample_args": None, "loss_type": "CE",  # CE over all items: no sampled negatives needed
        "device": device, "use_gpu": device == "cuda", "gpu_id": "0", "show_progress": False, "seed": seed, "reproducibility": True,
        "checkpoint_dir": str(checkpoint_dir), "state": "ERROR", "log_wandb": False,
        # Everything is training data: RecBole does its own prefix augmentation (and, for DIEN, the negative
        # sequences); its valid/test splits stay empty because we evaluate on our own candidates.
        "eval_args": {"order": "TO", "mode": "full", "split": {"RS": [1.0, 0.0, 0.0]}, "group_by": "user"},
    }
    if model in POINTWISE:
        conf.update({"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}, "loss_type": "BCE",
                     "LABEL_FIELD": "label", "eval_args": {**conf["eval_args"], "mode": "uni20"}})
    if model == "NeuMF":
        conf["mlp_hidden_size"] = [size]
    return Config(model=model, dataset=name, config_dict=conf)


class RecBoleModel:
    """One trained RecBole model plus the id maps needed to score our candidates."""

    def __init__(self, model: Any, dataset: Any, config: Any):
        self.model, self.dataset, self.config = model, dataset, config
        self.name = config["model"]
        self.sequential = self.name in SEQUENTIAL

    def _ids(self, field: str, tokens: list[str]) -> list[int]:
        known = self.dataset.field2token_id[field]
        return [known.get(t, -1) for t in tokens]

    def score(self, eval_samples: pd.DataFrame, batch_users: int = 64) -> list[np.ndarray]:
        """Scores of each sample's candidates (positive first); -inf for items unseen in training.

        Sequence models with a full ranking (SASRec, GRU4Rec, NARM, CORE) score through
        ``full_sort_predict`` indexed by our candidates (CORE's ``predict`` skips the normalisation its
        full ranking applies); the pointwise ones (DIN, DIEN, NeuMF) through ``predict`` per candidate.
        """
        import torch
        from recbole.data.interaction import Interaction

        max_len = self.dataset.field2seqlen.get("item_id_list", 0)  # the width the model was built for
        full = self.sequential and self.name not in POINTWISE
        out: list[np.ndarray] = []
        rows = list(zip(eval_samples.itertuples(index=False), candidates(eval_samples)))
        self.model.eval()
        with torch.no_grad():
            for start in range(0, len(rows), batch_users):
                group = rows[start:start + batch_users]
                users, seqs, lens, items = [], [], [], []
                cand_ids = []
                for s, cands in group:
                    ids = np.array(self._ids("item_id", cands))
                    cand_ids.append(ids)
                    hist = [i for i in self._ids("item_id", list(s.history)) if i > 0][-max_len:] if max_len else []
                    user = max(self._ids("user_id", [s.user_id])[0], 0)  # 0: RecBole's padding user
                    for c in ([0] if full else ids[ids > 0]):
                        users.append(user)
                        seqs.append(hist + [0] * (max_len - len(hist)))
                        lens.append(max(len(hist), 1))
                        items.append(int(c))
                data = {"user_id": torch.tensor(users), "item_id": torch.tensor(items)}
                if self.sequential:
                    data["item_id_list"] = torch.tensor(seqs)
                    data["item_length"] = torch.tensor(lens)
                    data["neg_item_id_list"] = torch.zeros_like(data["item_id_list"])  # DIEN's auxiliary input
                batch = Interaction(data).to(next(self.model.parameters()).device)  # where the model trained
                if full:
                    table = self.model.full_sort_predict(batch).float().cpu().numpy()
                    table = table.reshape(len(group), -1)
                    for g, ids in enumerate(cand_ids):
                        row = np.full(len(ids), -np.inf)
                        row[ids > 0] = table[g, ids[ids > 0]]
                        out.append(row)
                else:
                    flat = self.model.predict(batch).float().cpu().numpy() if items else np.zeros(0)
                    at = 0
                    for ids in cand_ids:
                        row = np.full(len(ids), -np.inf)
                        n = int((ids > 0).sum())
                        row[ids > 0] = flat[at:at + n]
                        at += n
                        out.append(row)
        return out


def train(model: str, train_sequences: dict[str, list[str]], epochs: int = 30, embedding_size: int = 64,
          max_len: int = 50, learning_rate: float = 1e-3, seed: int = 0, workdir: Path | None = None,
          device: str = "cpu") -> RecBoleModel:
    """Fit one RecBole model on the training sequences (no RecBole validation, nothing saved by RecBole), on
    ``device`` ("cpu" or "cuda": this process's GPU)."""
    if model not in MODELS:
        raise ValueError(f"unknown RecBole baseline {model!r}; supported: {list(MODELS)}")
    import torch

    anomaly = torch.is_anomaly_enabled()
    with warnings.catch_warnings():
        # RecBole 1.2.1 on pandas 2.3: FutureWarnings about chained fillna that do not change the result.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        from recbole.data import create_dataset, data_preparation
        from recbole.utils import get_model, get_trainer, init_seed

        get_model(model)  # imports RecBole's model modules, and with them the switch below
        # recbole/model/sequential_recommender/sine.py turns on torch's anomaly detection for the whole process
        # when imported: every later backward pass (our LoRA training in the same kernel) ran 2x slower.
        torch.autograd.set_detect_anomaly(anomaly)

        tmp = tempfile.TemporaryDirectory(prefix="trsr-recbole-") if workdir is None else None
        root = Path(tmp.name if tmp else workdir)
        # RecBole's trainer creates ./log_tensorboard wherever it runs: keep that inside the work folder.
        try:
            with contextlib.chdir(root):
                write_atomic_file(train_sequences, root, "trsr")
                config = recbole_config(model, root, "trsr", epochs, embedding_size, max_len, learning_rate, seed,
                                        root / "saved", device)
                init_seed(seed, True)
                dataset = create_dataset(config)
                train_data, _, _ = data_preparation(config, dataset)
                net = get_model(config["model"])(config, train_data.dataset).to(config["device"])
                trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
                trainer.fit(train_data, valid_data=None, saved=False, show_progress=False)
                # Its tensorboard writer flushes from a background thread to a path relative to the work folder:
                # close it here, or the thread may write after the folder is gone (an exception in that thread).
                trainer.tensorboard.close()
        finally:
            if tmp:
                tmp.cleanup()
    return RecBoleModel(net, dataset, config)


def save_state(trained: RecBoleModel, path: str | Path) -> Path:
    """The weights only (tensors): loads under torch's default ``weights_only=True``."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(trained.model.state_dict(), tmp)
    return Path(path)


def load_state(trained: RecBoleModel, path: str | Path) -> RecBoleModel:
    import torch

    device = next(trained.model.parameters()).device  # weights saved on a GPU load onto a CPU model, and back
    trained.model.load_state_dict(torch.load(path, weights_only=True, map_location=device))
    return trained
