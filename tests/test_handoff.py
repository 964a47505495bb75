"""The helper threads of sentiment.kernels.handoff: every share runs once, in its
thread, whether the helpers spin or sleep; errors reach the caller; a busy
pool, a helper's own call and a forked child are handled."""
import multiprocessing
import threading
import time

import numba
import numpy as np
import pytest

from sentiment.kernels import handoff


@numba.njit(nogil=True, cache=True)
def _fill(out, k, value):
    out[k] = value


@numba.njit(nogil=True, cache=True)
def _fill_start(flags, count, value, *args):
    handoff.signal(flags, count, value)
    _fill(*args)


def _fill_py(out, k, value):
    out[k] = value
    out[k + 4] = threading.get_ident()


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("gap", [0.0, 3 * handoff.SPIN_NS / 1e9])  # spinning, asleep
def test_every_share_runs_once_in_its_own_thread(n, gap):
    for k in range(6):
        out = np.zeros(8)
        assert handoff.run(_fill_py, [(out, j, 10.0 * k + j) for j in range(n)])
        np.testing.assert_array_equal(out[:n], 10.0 * k + np.arange(n))
        assert len(set(out[4:4 + n])) == n  # n threads
        out = np.zeros(8)
        assert handoff.run(_fill, [(out, j, 10.0 * k + j) for j in range(n)], _fill_start)
        np.testing.assert_array_equal(out[:n], 10.0 * k + np.arange(n))
        time.sleep(gap)


def _fails(out, k):
    if k == 1:
        raise ValueError("share %d failed" % k)
    out[k] = 1


def test_an_error_in_a_helper_reaches_the_caller_after_every_share():
    out = np.zeros(3)
    with pytest.raises(ValueError, match="share 1 failed"):
        handoff.run(_fails, [(out, 0), (out, 1), (out, 2)])
    assert out[0] == 1 and out[2] == 1  # the other shares ran
    handoff.run(_fill_py, [(np.zeros(8), 0, 1.0), (np.zeros(8), 1, 1.0), (np.zeros(8), 2, 1.0)])


def _nested(result, k):
    if k == 1:  # in a helper: the pool is busy
        result.append(handoff.run(_fill_py, [(np.zeros(8), 0, 1.0), (np.zeros(8), 1, 1.0)]))


def test_a_call_from_a_helper_or_while_busy_is_refused():
    result = []
    assert handoff.run(_nested, [(result, 0), (result, 1)])
    assert result == [False]
    pool = handoff._helpers[1]
    with pool.lock:  # another thread's call in progress
        assert not handoff.run(_fill_py, [(np.zeros(8), 0, 1.0), (np.zeros(8), 1, 1.0)])


def _child(queue):
    out = np.zeros(8)
    queue.put(handoff.run(_fill, [(out, 0, 1.0), (out, 1, 2.0)], _fill_start)
              and list(out[:2]))


def test_a_forked_child_starts_its_own_helpers():
    assert handoff.run(_fill, [(np.zeros(8), 0, 1.0), (np.zeros(8), 1, 1.0)], _fill_start)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child, args=(queue,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert queue.get(timeout=1) == [1.0, 2.0]


def _broken_start(flags, count, value, *args):
    raise TypeError("no such signature")  # as a start function that fails to dispatch


def test_a_start_function_that_fails_raises_without_waiting_forever():
    out = np.zeros(8)
    with pytest.raises(TypeError, match="no such signature"):
        handoff.run(_fill_py, [(out, 0, 1.0), (out, 1, 2.0)], _broken_start)
    assert out[1] == 2.0  # the helper's share ran
    assert handoff.run(_fill, [(out, 0, 3.0), (out, 1, 4.0)], _fill_start)
    np.testing.assert_array_equal(out[:2], [3.0, 4.0])
