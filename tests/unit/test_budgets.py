"""The tests' own waits: they return what the check found, and fail naming what never came."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.budgets import async_wait_until, wait_until


def test_wait_until_returns_the_first_true_result() -> None:
    tries = itertools.count()
    assert wait_until(lambda: next(tries) >= 3 and "found", "the third try", budget=5, every=0.001) == "found"


def test_wait_until_fails_naming_what_never_came() -> None:
    with pytest.raises(AssertionError, match="not within 0 s: the impossible"):
        wait_until(lambda: 0, "the impossible", budget=0.05, every=0.01)


def test_async_wait_until_lets_the_loop_run_and_fails_the_same_way() -> None:
    async def scenario() -> None:
        done: list[int] = []
        asyncio.get_running_loop().call_later(0.02, done.append, 1)
        assert await async_wait_until(lambda: done, "the callback", budget=5) == [1]
        with pytest.raises(AssertionError, match="not within 0 s: never"):
            await async_wait_until(lambda: None, "never", budget=0.05)

    asyncio.run(scenario())
