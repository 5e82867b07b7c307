"""pbx_python.asterisk: mapping of the C helpers' results."""
from __future__ import annotations

import pytest

from pbx_python import asterisk


@pytest.mark.parametrize("res", [0, -1, -2, 5, 2 ** 31 - 1, -(2 ** 31) + 1])
def test_checked_passes_results_through(res):
    assert asterisk.checked(res) == res


def test_checked_raises_recursion_error_when_python_code_was_refused():
    with pytest.raises(RecursionError, match="^maximum recursion depth exceeded"):
        asterisk.checked(asterisk.REFUSED)


def test_refused_is_the_c_int_min():
    assert asterisk.REFUSED == -2147483648
