"""Pages of a list: the bounds every list endpoint shares."""

from __future__ import annotations

from domain.errors import (
    FieldError,
)

MAX_LIMIT = 500


MAX_OFFSET = 2**53  # past what any store holds, and within every database's integers


def page_errors(limit: int, offset: int) -> list[FieldError]:
    """The rules of limit and offset, alike for every listing."""
    errors = []
    if not 1 <= limit <= MAX_LIMIT:
        errors.append(FieldError("limit", f"must be from 1 to {MAX_LIMIT}"))
    if not 0 <= offset <= MAX_OFFSET:
        errors.append(FieldError("offset", f"must be from 0 to {MAX_OFFSET}"))
    return errors
