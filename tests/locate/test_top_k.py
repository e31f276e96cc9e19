import pytest
import torch

from locate.top_k import top_k_mask, top_k_parts


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


@pytest.mark.parametrize("seed", range(6))
def test_parts_choose_as_the_joined_sort(seed):
    g = torch.Generator().manual_seed(seed)
    # Runs of ties, zeros, values a few ulps apart and huge ones: every digit of the select matters.
    base = torch.rand(8000, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(-30, 5, (8000,), generator=g)
    base[torch.randint(0, 8000, (900,), generator=g)] = 0.0
    base[torch.randint(0, 8000, (700,), generator=g)] = 0.25
    base[:50] = torch.nextafter(torch.full((50,), 0.25, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    sizes = torch.randint(1, 900, (8,), generator=g).tolist()
    parts = list(base[: sum(sizes)].split(sizes))
    joined = torch.cat(parts)
    for k in (1, 17, len(joined) // 3, len(joined) - 350, len(joined)):
        kept, threshold = top_k_parts(lambda: iter(parts), k)
        want, want_threshold = _sorted_first(joined, k)
        assert [len(i) for i in kept] == [int(m.sum()) for m in want.split(sizes)]
        assert torch.equal(
            torch.cat([i + o for i, o in zip(kept, [0, *torch.tensor(sizes).cumsum(0)[:-1]], strict=True)]),
            want.nonzero().flatten(),
        )
        assert threshold == want_threshold


def test_parts_of_other_inputs_take_the_sort():
    parts = [torch.tensor([1.0, float("nan")], dtype=torch.float64), torch.tensor([-2.0, 3.0], dtype=torch.float64)]
    kept, _ = top_k_parts(lambda: parts, 2)
    want = _sorted_first(torch.cat(parts), 2)[0]
    assert [i.tolist() for i in kept] == [m.nonzero().flatten().tolist() for m in want.split([2, 2])]
    with pytest.raises(ValueError, match="k must be"):
        top_k_parts(lambda: parts, 5)
