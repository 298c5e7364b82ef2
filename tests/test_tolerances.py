"""tests/tolerances.py: the float32 bound accepts a reordered sum and rejects a real error."""

import numpy as np
import pytest
from tolerances import EPS32, assert_close_float32, float32_bound

K = 1024  # terms of each dot product below


def two_orders():
    """The same 64 float32 dot products of K terms, summed front to back and back to front."""
    rng = np.random.default_rng(0)
    products = (rng.standard_normal((64, K)) * rng.standard_normal((64, K))).astype(np.float32)
    forward = np.zeros(64, np.float32)
    backward = np.zeros(64, np.float32)
    for k in range(K):  # one float32 rounding per addition, as a plain loop does
        forward += products[:, k]
        backward += products[:, K - 1 - k]
    return forward, backward


def test_accepts_a_reordered_float32_sum():
    forward, backward = two_orders()
    diff = np.abs(forward - backward).max()
    assert diff > 0  # the two orders really differ, so the check below is not vacuous
    bound = assert_close_float32(forward, backward, terms=K, what="reordered sums")
    assert diff < bound < 1e-3 * np.abs(backward).max()


def test_rejects_a_one_percent_error_and_names_the_worst_element():
    forward, backward = two_orders()
    wrong = forward.copy()
    smallest = int(np.argmin(np.abs(backward)))  # near zero: a relative tolerance would miss nothing here
    wrong[smallest] += 0.01 * np.abs(backward).max()
    with pytest.raises(AssertionError, match=rf"1 of 64 elements over it; worst at index \({smallest},\)"):
        assert_close_float32(wrong, backward, terms=K, what="perturbed sums")
    wrong = forward * np.float32(1.01)  # every element 1 % off
    with pytest.raises(AssertionError, match="perturbed sums: max"):
        assert_close_float32(wrong, backward, terms=K, what="perturbed sums")


def test_bound_formula_and_its_inputs():
    assert float32_bound(3.0, terms=16, depth=5, safety=2.0) == pytest.approx(2.0 * EPS32 * 4 * 5 * 3.0)
    # The loosest bound of the suite (ResNet-50 gradients, remat against plain: 4608 terms, depth 100)
    # still catches a 1 % error with room to spare.
    assert float32_bound(1.0, terms=4608, depth=100) < 0.25e-2
    assert_close_float32([1.0, 2.0], [1.0, 2.0 + 1e-6], terms=1, atol=2e-6)  # atol is added to the bound
    assert_close_float32(np.zeros(3), np.zeros(3), terms=1)  # all zeros: the bound is 0, equality passes
    with pytest.raises(AssertionError, match="shape"):
        assert_close_float32(np.zeros(3), np.zeros(4), terms=1)
    with pytest.raises(AssertionError, match="non-finite"):
        assert_close_float32([np.nan], [np.nan], terms=1)
    with pytest.raises(ValueError, match="terms"):
        float32_bound(1.0, terms=0)
