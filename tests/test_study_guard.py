"""The verdicts' guards: a run at chance level is not a finding; a claim over seeds carries its spread."""

from __future__ import annotations

import pytest

from nablanet.studies._guard import did_not_learn, learned, over_seeds, stuck


def test_an_accuracy_near_chance_did_not_learn() -> None:
    assert not learned(0.09, 10) and not learned(0.14, 10)  # 1/10 + 5 points
    assert learned(0.16, 10) and learned(0.86, 10)
    assert not learned(0.53, 2) and learned(0.60, 2)


def test_a_loss_that_did_not_fall_is_stuck() -> None:
    assert stuck(2.30, 2.29) and stuck(2.30, 2.50)
    assert not stuck(2.30, 1.10)


def test_the_sentence_says_it_did_not_learn_and_what_to_change() -> None:
    text = did_not_learn("The sigmoid run", 0.09, 10, "Train for 30 epochs.")
    assert text == ("The sigmoid run ended at 9.0% accuracy, within 5% of chance (1/10 = 10.0%): the run did not "
                    "learn, so its numbers are not a finding. Train for 30 epochs.")


def test_over_seeds_gives_mean_spread_and_range() -> None:
    assert over_seeds([0.92, 0.93, 0.94]) == "0.93 ± 0.01 (3 seeds: 0.92–0.94)"
    assert over_seeds([5.0]) == "5 (1 seed)"
    with pytest.raises(ValueError, match="one per seed"):
        over_seeds([])
