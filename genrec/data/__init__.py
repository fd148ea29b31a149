"""Dataset format, loaders, validation and leave-one-out splits shared by ``index`` and ``genrec``."""

from genrec.data.codes import (
    Codes,
    codes_to_json,
    count_duplicates,
    duplicate_groups,
    format_code,
    load_codes,
    make_codes_unique,
    parse_code,
)
from genrec.data.dataset import RecDataset, load_dataset, load_embeddings, load_inter_json
from genrec.data.errors import DataError
from genrec.data.split import Sample, Split, leave_one_out, popularity_counts, training_sequences

__all__ = [
    "Codes", "DataError", "RecDataset", "Sample", "Split", "codes_to_json", "count_duplicates",
    "duplicate_groups", "format_code", "leave_one_out", "load_codes", "load_dataset", "load_embeddings",
    "load_inter_json", "make_codes_unique", "parse_code", "popularity_counts", "training_sequences",
]
