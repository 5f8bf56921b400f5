"""Quick, pure tasks: handy to see a job go from submission to result in milliseconds."""

from __future__ import annotations


async def square_sum(numbers: list[float]) -> float:
    """The sum of the squares: `{"numbers": [1, 2, 3]}` gives 14.0."""
    return float(sum(number * number for number in numbers))


async def cube_sum(numbers: list[float]) -> float:
    """The sum of the cubes: `{"numbers": [1, 2, 3]}` gives 36.0."""
    return float(sum(number**3 for number in numbers))
