"""Paged lists across an etcd compaction: a continue token that expired (410) gives one whole list again."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from scaleset_operator.control.kube import ApiError, Kube

TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results."
)


class _Server(Kube):
    """Serves `items` in pages; the continue tokens it handed out before `compact()` are expired."""

    def __init__(self, items: list[str]) -> None:
        super().__init__(api_client=None)  # type: ignore[arg-type]
        self.items = items
        self.era = 0
        self.asked: list[Mapping[str, Any]] = []
        self.after_first_page: Any = None

    def compact(self) -> None:
        self.era += 1

    def request(
        self, method: str, path: str, body: Any = None, query: Any = None, **_: Any
    ) -> dict[str, Any]:
        query = dict(query or {})
        self.asked.append(query)
        limit, token = query.get("limit"), query.get("continue")
        start = 0
        if token:
            era, offset = (int(part) for part in token.split(":"))
            if era != self.era:
                raise ApiError(410, "Expired", TOO_OLD)
            start = offset
        end = len(self.items) if not limit else start + limit
        page: dict[str, Any] = {"items": [{"name": n} for n in self.items[start:end]], "metadata": {}}
        if end < len(self.items):
            page["metadata"]["continue"] = f"{self.era}:{end}"
        if start == 0 and self.after_first_page is not None:
            self.after_first_page()
        return page


def test_pages_make_one_list() -> None:
    server = _Server([f"web-{i}" for i in range(7)])
    assert [i["name"] for i in server.list("/api/v1/namespaces/t/pods", page=3)] == server.items
    assert [q.get("continue") for q in server.asked] == [None, "0:3", "0:6"]


def test_a_continue_token_expired_by_a_compaction_reads_the_whole_list_again() -> None:
    server = _Server([f"web-{i}" for i in range(7)])
    server.after_first_page = server.compact  # etcd compacted while the list was being read
    listed = server.list("/api/v1/namespaces/t/pods", page=3)
    assert [i["name"] for i in listed] == server.items, "every object once, none twice"
    assert "limit" not in server.asked[-1], "the list read again is not paged (client-go's FullListIfExpired)"


def test_a_410_on_the_first_page_is_not_a_compaction_to_hide() -> None:
    class _Gone(_Server):
        def request(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            raise ApiError(410, "Gone", "the resource is gone")

    with pytest.raises(ApiError):
        _Gone([]).list("/api/v1/namespaces/t/pods")
