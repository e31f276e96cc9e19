"""Padded batches and length buckets: every row once, real tokens where the mask says, the cheapest split."""

import itertools
import random

import torch

from workbench.core.padding import length_buckets, pad_left, pad_right


def test_padding_puts_every_token_where_its_mask_says():
    seqs = [[5, 6, 7], [], [8]]
    for pad, left in ((pad_left, True), (pad_right, False)):
        ids, mask = pad(seqs, 0)
        assert ids.shape == mask.shape == (3, 3) and ids.dtype == mask.dtype == torch.long
        for row, s in zip(range(3), seqs, strict=True):
            assert ids[row][mask[row].bool()].tolist() == s
            assert mask[row].tolist() == (
                [0] * (3 - len(s)) + [1] * len(s) if left else [1] * len(s) + [0] * (3 - len(s))
            )
    assert pad_left([[]], 0)[0].shape == (1, 1)


def _cost(groups, lengths, pass_cost):
    return sum(len(g) * max(1, max(lengths[i] for i in g)) for g in groups) + pass_cost * len(groups)


def test_buckets_cover_every_row_once_and_cost_least():
    rng = random.Random(0)
    for _ in range(20):
        lengths = [rng.choice([1, 2, 4, 5, 9, 10, 30]) for _ in range(rng.randint(1, 400))]
        groups = length_buckets(lengths, pass_cost=64)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        # Every split of the sorted distinct lengths into consecutive runs: none is cheaper.
        distinct = sorted(set(lengths))
        best = None
        for cuts in itertools.product([False, True], repeat=len(distinct) - 1):
            runs, run = [], [distinct[0]]
            for n, cut in zip(distinct[1:], cuts, strict=True):
                if cut:
                    runs.append(run)
                    run = []
                run.append(n)
            runs.append(run)
            split = [[i for i, n in enumerate(lengths) if n in r] for r in runs]
            best = min(best or float("inf"), _cost(split, lengths, 64))
        assert _cost(groups, lengths, 64) == best


def test_few_rows_stay_in_one_pass_and_many_split_by_length():
    assert length_buckets([4, 5, 9, 10] * 2) == [list(range(8))]
    groups = length_buckets([4] * 3000 + [10] * 3000)
    assert [sorted({([4] * 3000 + [10] * 3000)[i] for i in g}) for g in groups] == [[4], [10]]
