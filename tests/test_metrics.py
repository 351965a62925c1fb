import numpy as np
import pytest

from edge_geoloc.evaluate import (
    Scope,
    fuse,
    fuse_topk,
    localization_metrics,
    noisy_prior,
    predict_positions,
    ranks,
    restrict,
    retrieval_metrics,
    top_candidates,
    top_percent_k,
)


def test_ranks_count_strictly_better_and_ties_favour_the_query():
    sim = np.array(
        [
            [0.9, 0.5, 0.1, 0.0],  # positive 0 is best: rank 0
            [0.5, 0.5, 0.5, 0.1],  # positive 1 tied with two others: rank 0
            [0.9, 0.8, 0.7, 0.6],  # positive 3 is last: rank 3
            [0.2, 0.9, 0.9, 0.3],  # positive 0 below three: rank 3
        ]
    )
    assert ranks(sim, np.array([0, 1, 3, 0])).tolist() == [0, 0, 3, 3]
    m = retrieval_metrics(sim, np.array([0, 1, 3, 0]))
    assert m["R@1"] == 50.0 and m["R@5"] == 100.0 and m["R@10"] == 100.0
    assert m["R@1%"] == 50.0  # M = 4: k = int(0.04) + 1 = 1
    assert "hit_rate" not in m


def test_several_positives_best_counts_and_others_do_not_compete():
    sim = np.array([[0.9, 0.8, 0.7, 0.95], [0.1, 0.2, 0.3, 0.4]])
    # Query 0: positives {1, 2}: the best is 0.8; only ref 0 and 3 are above -> rank 2.
    # Query 1: positives {3}: rank 0.
    assert ranks(sim, [[1, 2], [3]]).tolist() == [2, 0]
    assert ranks(sim, np.array([[1, 2], [3, -1]])).tolist() == [2, 0]
    m = retrieval_metrics(sim, [[1, 2], [3]])
    assert m["R@1"] == 50.0 and m["R@5"] == 100.0


def test_hit_rate_excludes_semi_positives_only():
    sim = np.array(
        [
            [0.5, 0.9, 0.8, 0.1, 0.2],  # semi-positives 1, 2 above the positive 0: a hit
            [0.5, 0.9, 0.1, 0.7, 0.2],  # semi 1 above, but negative 3 too: not a hit
            [0.9, 0.1, 0.2, 0.3, 0.4],  # positive first: a hit
        ]
    )
    pos = np.array([0, 0, 0])
    semi = np.array([[1, 2, 4], [1, 2, 4], [1, 2, 3]])
    m = retrieval_metrics(sim, pos, semi)
    assert m["R@1"] == pytest.approx(100 / 3)
    assert m["hit_rate"] == pytest.approx(200 / 3)
    # -1 pads a query with fewer semi-positives.
    m2 = retrieval_metrics(sim, pos, np.array([[1, 2, -1], [1, -1, -1], [-1, -1, -1]]))
    assert m2["hit_rate"] == pytest.approx(200 / 3)


@pytest.mark.parametrize(
    ("m", "vigor", "transgeo"), [(99, 1, 1), (100, 2, 1), (101, 2, 1), (250, 3, 2), (1000, 11, 10)]
)
def test_top_percent_k(m, vigor, transgeo):
    assert top_percent_k(m) == vigor
    assert top_percent_k(m, "transgeo") == transgeo


@pytest.mark.parametrize(
    ("m", "expected_vigor", "expected_transgeo"), [(99, 50.0, 50.0), (100, 100.0, 50.0), (101, 100.0, 50.0)]
)
def test_r_at_one_percent_at_99_100_101(m, expected_vigor, expected_transgeo):
    # Two queries: one with its positive first (rank 0), one with exactly one reference above (rank 1).
    sim = np.zeros((2, m))
    sim[0, 0] = 1.0
    sim[1, 0], sim[1, 1] = 0.5, 1.0
    pos = np.array([0, 0])
    assert retrieval_metrics(sim, pos)["R@1%"] == expected_vigor
    assert retrieval_metrics(sim, pos, top_percent="transgeo")["R@1%"] == expected_transgeo


def test_bad_inputs():
    with pytest.raises(ValueError, match="3 queries, similarity has 2"):
        retrieval_metrics(np.zeros((2, 4)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="out of range"):
        retrieval_metrics(np.zeros((2, 4)), np.array([0, 4]))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.full((1, 3), np.nan), np.array([0]))
    with pytest.raises(ValueError, match="convention"):
        top_percent_k(100, "other")


def test_scopes_and_positions():
    ref = np.array([[0.0, 0.0], [150.0, 0.0], [0.0, 250.0], [600.0, 600.0]])
    prior = np.array([[0.0, 0.0]])
    assert Scope("box", 200).mask(prior, ref).tolist() == [[True, True, False, False]]
    assert Scope("circle", 200).mask(prior, ref).tolist() == [[True, True, False, False]]
    assert Scope("circle", 1000).mask(prior, ref).tolist() == [[True, True, True, True]]
    assert Scope("circle", 800).mask(prior, ref).tolist() == [[True, True, True, False]]  # 848.5 m away
    sim = np.array([[0.1, 0.2, 0.3, 0.9]])
    best, pos = predict_positions(restrict(sim, Scope("box", 200).mask(prior, ref)), ref)
    assert best.tolist() == [1] and pos.tolist() == [[150.0, 0.0]]
    best, pos = predict_positions(sim, ref, offsets_en=np.array([[-5.0, 2.0]]))
    assert best.tolist() == [3] and pos.tolist() == [[595.0, 602.0]]
    # An empty scope gives no candidate, not a wrong one.
    best, pos = predict_positions(restrict(sim, np.zeros((1, 4), bool)), ref)
    assert best.tolist() == [-1] and np.isnan(pos).all()
    with pytest.raises(ValueError, match="positive size"):
        Scope("circle", 0)


def test_noisy_prior_is_uniform_within_bounds_and_seeded():
    truth = np.zeros((5000, 2))
    prior = noisy_prior(truth, 100.0, seed=3)
    assert np.all(np.abs(prior) <= 100.0) and np.abs(prior).max() > 95.0
    assert abs(prior.std() - 200 / np.sqrt(12)) < 2.0
    assert np.array_equal(prior, noisy_prior(truth, 100.0, seed=3))


def test_localization_metrics_hand_computed():
    m = localization_metrics(np.array([0.5, 2.0, 4.0, 8.0, 20.0, 40.0, 60.0, 100.0]))
    assert m["acc@1m"] == 12.5 and m["acc@3m"] == 25.0 and m["acc@5m"] == 37.5
    assert m["acc@10m"] == 50.0 and m["acc@25m"] == 62.5 and m["acc@50m"] == 75.0
    assert m["median_m"] == pytest.approx(14.0)
    m = localization_metrics(np.array([1.0, 2.0, np.nan, 4.0]))
    assert m["no_candidate_pct"] == 25.0 and m["acc@50m"] == 75.0 and m["median_m"] == pytest.approx(3.0)
    with pytest.raises(ValueError):
        localization_metrics(np.array([]))


def test_fuse_topk_weights_by_similarity():
    ref = np.array([[0.0, 0.0], [32.0, 0.0], [0.0, 32.0], [500.0, 500.0]])
    sim = np.array([[0.9, 0.9, 0.1, -0.5], [1.0, 0.0, 0.0, 0.0], [-np.inf, -np.inf, -np.inf, -np.inf]])
    out = fuse_topk(sim, ref, k=2, temperature=0.05)
    # Two equal best tiles: halfway between their centres.
    assert np.allclose(out[0], [16.0, 0.0])
    # One dominant tile: its centre (the other weight is e^-20).
    assert np.allclose(out[1], [0.0, 0.0], atol=1e-6)
    # No candidate in scope: NaN, not a guess.
    assert np.isnan(out[2]).all()
    # Candidates come best first; fuse() takes any candidate positions (e.g. centre + offset).
    top, sims = top_candidates(sim[:2], 3)
    assert top[1].tolist()[0] == 0 and np.all(np.diff(sims, axis=1) <= 0)
    assert np.allclose(fuse(ref[top[:1]] + [0.0, 4.0], sims[:1], 0.05), [[16.0, 4.0]], atol=1e-6)
