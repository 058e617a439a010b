import math

import torch

from l2l_omniglot.evaluation import PairedDifference, Score


def test_score_is_the_mean_with_a_normal_95_percent_interval():
    per_task = torch.tensor([1.0, 0.8, 0.6, 1.0], dtype=torch.float64)
    score = Score.of(per_task)
    assert math.isclose(score.accuracy, 0.85)
    assert math.isclose(score.ci95, 1.959964 * per_task.std().item() / 2, rel_tol=1e-6)
    assert score.tasks == 4


def test_paired_difference_sees_a_consistent_small_gap():
    a = torch.linspace(0.5, 1.0, 100)
    assert PairedDifference.of(a, a - 0.01).significant
    assert not PairedDifference.of(a, a.flip(0)).significant
