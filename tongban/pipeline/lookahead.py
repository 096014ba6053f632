"""Ingest's look-ahead: the records just ahead, read in small windows, so that the unified user service (统一用户体系)
can be asked about their new applicants concurrently rather than one round trip after another.

Ingest still handles every record one by one, in order, exactly as before (tongban.pipeline.ingest): the window only
lets it map the records once up front (mapping and validation are pure: the same record gives the same snapshot) and
warm the identity resolver (IdentityResolver.prefetch) with the applicants `resolve` is about to ask for — those of
cases not seen before in this run or in the store, whose item passes the catalogue. An error raised while reading
still reaches ingest after every record read before it: the partial window comes first.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, TypeVar

from tongban.catalog import CatalogError
from tongban.identity import IdentityError

T = TypeVar("T")

WINDOW = 64  # records read ahead: a few rounds of the resolver's concurrency, a bounded buffer


def windows(records: Iterable[T], size: int = WINDOW) -> Iterator[list[T]]:
    """`records` in lists of at most `size`. When reading fails, the records read before the failure are yielded
    first, then the error is raised: the consumer meets them in the same order as record by record."""
    window: list[T] = []
    try:
        for record in records:
            window.append(record)
            if len(window) >= size:
                yield window
                window = []
    except BaseException:
        if window:
            yield window
        raise
    if window:
        yield window


def new_applicants(window: list[tuple[Any, Any]], *, seen: Callable[[str], bool], catalog, identity) -> list:
    """The applicants `IdentityResolver.resolve` will be asked about for `window` ((raw, checked) pairs; `checked`
    is the mapped snapshot triple, or a refusal): the first record of each case that `seen` does not know (not
    earlier in this run, no stored snapshot), whose item the catalogue accepts and whose applicant is resolvable."""
    users, keys = [], set()
    for raw, checked in window:
        if not isinstance(checked, tuple):
            continue  # refused by the mapping or validation: never resolved
        snapshot = checked[0]
        key = snapshot["source_key"]
        if key in keys or seen(key):
            keys.add(key)
            continue
        keys.add(key)
        try:
            catalog.check(snapshot["item_code"])
            users.append(identity.user_of(snapshot, raw.data))
        except (CatalogError, IdentityError):
            continue  # resolve quarantines it (or never gets there) record by record, as before
    return users
