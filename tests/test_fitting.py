import numpy as np
import pytest

from lorasim.fitting import clustered_mean_se, mean_se


def test_clustered_se_is_mean_se_for_single_values_and_ignores_duplicates():
    """One value per cluster: the sandwich SE is mean_se's. Every value twice in its own cluster: no new information,
    so the SE is unchanged, where treating the copies as independent would shrink it by √2 (the C02 F5 error)."""
    v = np.random.default_rng(0).normal(size=30)
    m, se, g = clustered_mean_se(v, np.arange(30))
    assert (m, g) == pytest.approx((mean_se(v)[0], 30)) and se == pytest.approx(mean_se(v)[1], rel=1e-12)
    twice = np.repeat(v, 2)
    m2, se2, g2 = clustered_mean_se(twice, np.repeat(np.arange(30), 2))
    assert g2 == 30 and m2 == pytest.approx(m) and se2 == pytest.approx(se, rel=1e-12)
    assert mean_se(twice)[1] < 0.75 * se  # the naive SE of the copies


def test_clustered_se_covers_the_mean_of_dependent_data():
    """Clusters of 3 strongly correlated values (a shared term): over 2000 draws of 40 clusters the mean falls outside
    ±2 clustered SEs about as often as a normal mean does (≈ 5 %), and the naive SE's rule fails far more often."""
    rng = np.random.default_rng(1)
    inside = naive_inside = 0
    for _ in range(2000):
        shared = rng.normal(size=(40, 1))
        values = (shared + 0.5 * rng.normal(size=(40, 3))).ravel()
        m, se, _ = clustered_mean_se(values, np.repeat(np.arange(40), 3))
        inside += abs(m) <= 2 * se
        naive_inside += abs(m) <= 2 * mean_se(values)[1]
    assert 0.92 <= inside / 2000 <= 0.97
    assert naive_inside / 2000 < 0.85
