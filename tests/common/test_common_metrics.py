import pytest
import torch

from common.metrics.knn import WeightedKNN, weighted_knn_scores
from common.metrics.retrieval import RecallAtK, recall_at_k


def _brute_recall(emb, labels, k, indices):
    emb = torch.nn.functional.normalize(emb, dim=1)
    n, hits = len(labels), 0
    for i in range(n):
        cands = [(float(emb[i] @ emb[j]), j) for j in range(n) if indices[j] != indices[i]]
        cands.sort(key=lambda t: -t[0])
        hits += any(labels[j] == labels[i] for _, j in cands[:k])
    return hits / n


def test_recall_hand_made():
    # 1-D points on the unit circle: angles 0, 10, 90, 100 degrees with labels a a b a
    ang = torch.tensor([0.0, 10.0, 90.0, 100.0]) * torch.pi / 180
    emb = torch.stack([ang.cos(), ang.sin()], 1)
    labels = torch.tensor([0, 0, 1, 0])
    r = recall_at_k(emb, labels, ks=(1, 2, 3))
    # nearest: 0->1 (hit), 1->0 (hit), 2->3 (miss), 3->2 (miss); 2 has no same label at all
    assert r[1] == pytest.approx(0.5)
    # top2: 3 -> {2, 1}: hit
    assert r[2] == pytest.approx(0.75)
    assert r[3] == pytest.approx(0.75)


def test_recall_matches_brute_force_and_excludes_self_by_index():
    torch.manual_seed(0)
    emb, labels = torch.randn(40, 5), torch.randint(0, 4, (40,))
    indices = torch.arange(40)
    fast = recall_at_k(emb, labels, (1, 3, 7), indices, chunk=7)
    for k in (1, 3, 7):
        assert fast[k] == pytest.approx(_brute_recall(emb, labels, k, indices))
    # the same item twice (as DDP padding does) must not count as its own neighbour in the metric
    m = RecallAtK(ks=(1,))
    m.update(emb[:20], labels[:20], indices[:20])
    m.update(emb[:5], labels[:5], indices[:5])
    m.update(emb[20:], labels[20:], indices[20:])
    assert m.compute()["recall@1"].item() == pytest.approx(fast[1])


def test_weighted_knn_hand_made():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    q = torch.tensor([[0.6, 0.8]])
    s = weighted_knn_scores(train, labels, q, num_classes=2, k=2, T=0.5)
    nt = torch.nn.functional.normalize(train, dim=1)
    sims = nt @ torch.nn.functional.normalize(q, dim=1)[0]
    # top-2 are items 2 (0.8) and 1 (~0.66)
    expected = torch.tensor([[torch.exp(sims[1] / 0.5), torch.exp(sims[2] / 0.5)]])
    torch.testing.assert_close(s, expected)
    m = WeightedKNN(num_classes=2, k=1)
    m.update(train, labels, torch.arange(3), train=True)
    m.update(torch.tensor([[1.0, 0.05], [0.1, 1.0]]), torch.tensor([0, 0]), torch.arange(2), train=False)
    assert m.compute().item() == pytest.approx(0.5)


def test_weighted_knn_needs_both_sets():
    m = WeightedKNN(num_classes=2)
    with pytest.raises(RuntimeError, match="bank"):
        m.compute()
