"""Data stage: real loaders (MIND, Amazon-M2, MovieLens-100K), filtering, splits and negatives."""

from trsr_utils.data.amazon_m2 import load_amazon_m2, parse_prev_items
from trsr_utils.data.core import Catalog, DataFormatError, ErrorReport, RawDataset, UserSequence
from trsr_utils.data.filtering import FilterReport, filter_sequences
from trsr_utils.data.mind import load_mind
from trsr_utils.data.movielens import load_movielens
from trsr_utils.data.sampling import SPLITS, build_samples, draw_negatives, split_users

__all__ = [
    "Catalog", "DataFormatError", "ErrorReport", "RawDataset", "UserSequence", "FilterReport", "SPLITS",
    "build_samples", "draw_negatives", "filter_sequences", "load_amazon_m2", "load_mind", "load_movielens",
    "parse_prev_items", "split_users",
]
