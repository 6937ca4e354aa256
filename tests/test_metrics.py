"""Metrics against values worked out by hand (see the comments for the arithmetic)."""
import math

import pytest

from autopeft.metrics import accuracy, compute, confusion_matrix, kendall_tau, macro_f1, mcc

# 3 classes, 8 examples.
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 1, 1, 2, 2, 2, 0]


def test_confusion_matrix_counts():
    c = confusion_matrix(Y_TRUE, Y_PRED)
    assert c.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]


def test_accuracy_by_hand():
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(5 / 8)


def test_macro_f1_by_hand():
    # class 0: tp 2, fp 1, fn 1 -> F1 = 4/6; class 1: tp 1, fp 1, fn 1 -> 2/4;
    # class 2: tp 2, fp 1, fn 1 -> 4/6.  Mean = (2/3 + 1/2 + 2/3) / 3 = 11/18
    assert macro_f1(Y_TRUE, Y_PRED) == pytest.approx(11 / 18)


def test_macro_f1_counts_a_never_hit_class_as_zero():
    # class 1 is present but never predicted: F1 = 0; class 0: tp 2, fp 1, fn 0 -> 0.8
    assert macro_f1([0, 0, 1], [0, 0, 0]) == pytest.approx((0.8 + 0.0) / 2)


def test_mcc_multiclass_by_hand():
    # c = 5 correct, s = 8; true counts t = (3, 2, 3), predicted p = (3, 2, 3)
    # num = 5·8 − (9 + 4 + 9) = 18; den = sqrt((64 − 22)(64 − 22)) = 42
    assert mcc(Y_TRUE, Y_PRED) == pytest.approx(18 / 42)


def test_mcc_binary_matches_the_textbook_formula():
    t = [1, 1, 1, 0, 0, 0, 0, 1]
    p = [1, 1, 0, 0, 0, 1, 0, 1]
    tp, tn, fp, fn = 3, 3, 1, 1
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert mcc(t, p) == pytest.approx(expected) == pytest.approx(0.5)


def test_mcc_is_zero_for_a_constant_prediction_and_one_when_perfect():
    assert mcc([0, 1, 1, 0], [1, 1, 1, 1]) == 0.0
    assert mcc([0, 1, 2, 1], [0, 1, 2, 1]) == pytest.approx(1.0)
    assert mcc([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)


def test_compute_dispatches_and_rejects_unknown_names():
    assert compute("accuracy", [1, 0], [1, 1]) == 0.5
    with pytest.raises(ValueError, match="unknown metric"):
        compute("auc", [1], [1])


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="labels"):
        confusion_matrix([0, 1], [0])


def test_kendall_tau_by_hand():
    # x = 1..4, y = (1, 3, 2, 4): of 6 pairs only (2,3) is discordant -> (5 − 1)/6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_kendall_tau_b_with_ties():
    # x = (1, 2, 2, 3), y = (1, 2, 3, 4): pairs 6, one tie in x (items 2 and 3).
    # concordant 5, discordant 0 -> tau_b = 5 / sqrt((6 − 1)(6 − 0)) = 5 / sqrt(30)
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(30))
