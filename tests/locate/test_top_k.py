import pytest
import torch

from locate.top_k import top_k_mask


def _sorted_first(scores, k):
    order = torch.sort(scores, descending=True, stable=True).indices[:k]
    keep = torch.zeros(len(scores), dtype=torch.bool)
    keep[order] = True
    return keep, float(scores[order[-1]])


@pytest.mark.parametrize("k", [1, 7, 500, 999, 1000])
def test_same_choice_as_a_stable_sort_with_ties(k):
    g = torch.Generator().manual_seed(k)
    # Few distinct values, zeros among them: most of the cut falls inside a run of ties.
    scores = torch.randint(0, 5, (1000,), generator=g).double() / 3
    keep, threshold = top_k_mask(scores, k)
    want, want_threshold = _sorted_first(scores, k)
    assert torch.equal(keep, want) and threshold == want_threshold and int(keep.sum()) == k


def test_other_inputs_take_the_sort():
    scores = torch.tensor([1.0, -2.0, float("nan"), 3.0], dtype=torch.float64)
    assert torch.equal(top_k_mask(scores, 2)[0], _sorted_first(scores, 2)[0])
    with pytest.raises(ValueError, match="k must be"):
        top_k_mask(scores, 0)
