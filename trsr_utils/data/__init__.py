"""Data stage: real loaders (MIND, Amazon-M2, MovieLens-100K), filtering, splits and negatives."""

from .amazon_m2 import load_amazon_m2, parse_prev_items
from .core import Catalog, DataFormatError, ErrorReport, RawDataset, UserSequence
from .filtering import FilterReport, filter_sequences
from .mind import load_mind
from .movielens import load_movielens
from .sampling import SPLITS, build_samples, draw_negatives, split_users

__all__ = [
    "Catalog", "DataFormatError", "ErrorReport", "RawDataset", "UserSequence", "FilterReport", "SPLITS",
    "build_samples", "draw_negatives", "filter_sequences", "load_amazon_m2", "load_mind", "load_movielens",
    "parse_prev_items", "split_users",
]
