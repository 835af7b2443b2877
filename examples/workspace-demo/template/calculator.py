"""A small calculator: the project the agent in add-tests.dot works on."""


def add(a: float, b: float) -> float:
    return a + b


def subtract(a: float, b: float) -> float:
    return a - b


def divide(a: float, b: float) -> float:
    """a / b; dividing by zero is a ValueError with a message a person can act on."""
    return a / b
