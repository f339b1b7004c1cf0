"""
Near-duplicate lyrics: MinHash signatures (datasketch) of word 3-gram sets, locality-sensitive banding to find
candidate pairs, and the estimated Jaccard similarity to confirm them. Remixes, live takes, re-releases and covers
share most of their word 3-grams even when a chorus is repeated once more or a line is changed.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import xxhash
from datasets.utils import tqdm
from datasketch import MinHash, MinHashLSH
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .text import comparable_words

SHINGLE_WORDS = 3
NUM_PERM = 128
SIGNATURE_BATCH = 1024


@dataclass
class NearDuplicates:
    """
    The near-duplicate structure of a list of texts.

    Attributes:
        text_key: `text_key[i]` numbers text i's comparable form (see `comparable_words`); equal forms share a key.
        pairs: (m, 2) array of distinct keys whose estimated Jaccard similarity reaches the threshold.
        group: `group[i]` is text i's near-duplicate group, the connected components over equal keys and `pairs`,
            numbered in order of first text.
    """

    text_key: np.ndarray
    pairs: np.ndarray
    group: np.ndarray


def shingles(words: list[str]) -> list[bytes]:
    """The distinct word 3-grams of a text (the whole text as one shingle when it is shorter)."""
    if len(words) < SHINGLE_WORDS:
        return [" ".join(words).encode()]
    return list(
        {" ".join(words[start : start + SHINGLE_WORDS]).encode() for start in range(len(words) - SHINGLE_WORDS + 1)}
    )


def hash_shingle(shingle: bytes) -> int:
    """32-bit hash of a shingle (xxhash: several times faster than datasketch's default SHA-1)."""
    return xxhash.xxh32_intdigest(shingle)


def signatures_of_distinct_texts(texts: Iterable[str], total: int | None, show_progress: bool):
    """
    Key each text by its comparable form and compute one MinHash signature per distinct form.
    Returns (text_key: int64 array, signatures: (distinct forms, 128) uint32 array).
    """
    key_of_form, text_key, signature_blocks, pending = {}, [], [], []

    def flush():
        signature_blocks.extend(m.hashvalues for m in MinHash.bulk(pending, num_perm=NUM_PERM, hashfunc=hash_shingle))
        pending.clear()

    for text in tqdm(texts, total=total, desc="minhash", unit="song", disable=not show_progress):
        words = comparable_words(text)
        form = xxhash.xxh3_128_digest(" ".join(words).encode())
        if form not in key_of_form:
            key_of_form[form] = len(key_of_form)
            pending.append(shingles(words))
            if len(pending) == SIGNATURE_BATCH:
                flush()
        text_key.append(key_of_form[form])
    if pending:
        flush()
    signatures = np.vstack(signature_blocks) if signature_blocks else np.empty((0, NUM_PERM), dtype=np.uint32)
    return np.asarray(text_key, dtype=np.int64), signatures


def candidate_pairs(signatures: np.ndarray, threshold: float) -> np.ndarray:
    """
    Pairs of rows that agree on every value of at least one band (LSH banding, band count and width chosen by
    datasketch for `threshold`), as a (m, 2) array with the smaller row first.
    """
    lsh_parameters = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    bands, width = lsh_parameters.b, lsh_parameters.r
    pairs = []
    for band in range(bands):
        values = np.ascontiguousarray(signatures[:, band * width : (band + 1) * width])
        _, bucket = np.unique(values.view(f"V{values.shape[1] * values.itemsize}").ravel(), return_inverse=True)
        order = np.argsort(bucket, kind="stable")
        bucket_starts = np.flatnonzero(np.diff(bucket[order], prepend=-1))
        bucket_sizes = np.diff(np.append(bucket_starts, len(order)))
        for start, size in zip(bucket_starts[bucket_sizes > 1], bucket_sizes[bucket_sizes > 1], strict=True):
            members = order[start : start + size]
            first, second = np.triu_indices(size, k=1)
            pairs.append(np.column_stack([members[first], members[second]]))
    if not pairs:
        return np.empty((0, 2), dtype=np.int64)
    return np.unique(np.sort(np.vstack(pairs), axis=1), axis=0)


def estimated_jaccard(signatures: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """MinHash estimate of the Jaccard similarity of each pair: the share of signature values they agree on."""
    return (signatures[pairs[:, 0]] == signatures[pairs[:, 1]]).mean(axis=1)


def number_by_first_occurrence(labels: np.ndarray) -> np.ndarray:
    """The same partition as `labels`, relabelled 0, 1, 2, ... in order of first appearance."""
    _, first_position, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first_position))[inverse]


def star_edges(labels: np.ndarray) -> np.ndarray:
    """(n, 2) edges joining each position to the first position with the same label: a graph whose components are
    the label's classes."""
    _, first_position, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.column_stack([first_position[inverse], np.arange(len(labels))])


def components(num_nodes: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component label of each node of an undirected graph, numbered in order of first node."""
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(num_nodes, num_nodes))
    return number_by_first_occurrence(connected_components(graph, directed=False)[1])


def find_near_duplicates(
    texts: Iterable[str], threshold: float = 0.4, total: int | None = None, show_progress: bool = True
) -> NearDuplicates:
    """Group texts whose word 3-gram sets have an estimated Jaccard similarity of at least `threshold`."""
    text_key, signatures = signatures_of_distinct_texts(texts, total, show_progress)
    pairs = candidate_pairs(signatures, threshold)
    pairs = pairs[estimated_jaccard(signatures, pairs) >= threshold]
    group_of_key = components(len(signatures), pairs)
    return NearDuplicates(text_key=text_key, pairs=pairs, group=number_by_first_occurrence(group_of_key[text_key]))


def leak_rate(duplicates: NearDuplicates, split: np.ndarray, holdout: str = "test", reference: str = "train") -> float:
    """
    Share of the `holdout` split's texts that have a near-duplicate (an equal comparable form, or a confirmed pair)
    among the `reference` split's texts; 0.0 for an empty holdout split.
    """
    in_holdout = split == holdout
    if not in_holdout.any():
        return 0.0
    key_in_reference = np.zeros(len(duplicates.text_key), dtype=bool)
    key_in_reference[duplicates.text_key[split == reference]] = True
    first, second = duplicates.pairs[:, 0], duplicates.pairs[:, 1]
    neighbour_in_reference = key_in_reference.copy()
    neighbour_in_reference[first[key_in_reference[second]]] = True
    neighbour_in_reference[second[key_in_reference[first]]] = True
    return float(neighbour_in_reference[duplicates.text_key[in_holdout]].mean())
