"""The chunked full-softmax loss: same value and gradients as F.cross_entropy over all items."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genrec.baselines.chunked_ce import chunked_cross_entropy

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("rows", [1, 7, 64, None])
def test_matches_cross_entropy(rows):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(37, 16, generator=g, requires_grad=True)
    table = torch.randn(101, 16, generator=g, requires_grad=True)
    w = table[1:]  # a view of a parameter, as SASRec's item_weights()
    target = torch.randint(0, 100, (37,), generator=g)
    ref = F.cross_entropy(h @ w.T, target)
    ref_gh, ref_gt = torch.autograd.grad(ref, (h, table))
    got = chunked_cross_entropy(h, w, target, rows)
    gh, gt = torch.autograd.grad(got, (h, table))
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(gh, ref_gh)
    torch.testing.assert_close(gt, ref_gt)


def test_gradcheck_double():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(9, 4, dtype=torch.double, generator=g, requires_grad=True)
    w = torch.randn(13, 4, dtype=torch.double, generator=g, requires_grad=True)
    target = torch.randint(0, 13, (9,), generator=g)
    # the loss is accumulated in float32, so compare against float64 finite differences loosely
    assert torch.autograd.gradcheck(lambda a, b: chunked_cross_entropy(a, b, target, 4).double(), (h, w),
                                    eps=1e-3, atol=1e-3, rtol=1e-3)


def test_sasrec_loss_unchanged():
    from genrec.baselines.sasrec import SASRec, SASRecConfig

    torch.manual_seed(0)
    model = SASRec(50, 8, SASRecConfig(hidden=16, dropout=0.0)).eval()
    inputs = torch.randint(1, 51, (6, 8))
    targets = torch.randint(1, 51, (6, 8))
    targets[:, 5:] = 0
    loss = model(inputs, targets)
    h = model.encode(inputs)[targets != 0]
    ref = F.cross_entropy(h @ model.item_weights().T, targets[targets != 0] - 1)
    torch.testing.assert_close(loss, ref)
    with pytest.raises(ValueError, match="every target is padding"):
        model(inputs, torch.zeros_like(targets))
