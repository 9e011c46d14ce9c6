"""The "format" field every nerfconf JSON file carries, checked the same way everywhere."""

from __future__ import annotations


def format_problem(value: object, readable: int) -> str | None:
    """Why a file whose "format" field is ``value`` cannot be read here, or None if it can.

    A wrong type is named as such: a string "1" is not format 1, and saying "format 1,
    this version reads 1" would send the reader looking for a difference that is not there.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        return (f"format field is {value!r}, a {type(value).__name__}, not a whole number "
                f"(this version reads format {readable})")
    if value != readable:
        return f"format {value}, this version reads {readable}"
    return None
