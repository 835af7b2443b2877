import unittest

from calculator import add, divide


class TestCalculator(unittest.TestCase):
    def test_add(self) -> None:
        self.assertEqual(add(2, 3), 5)

    def test_divide_by_zero_says_why(self) -> None:
        with self.assertRaisesRegex(ValueError, "cannot divide by zero"):
            divide(1, 0)


if __name__ == "__main__":
    unittest.main()
