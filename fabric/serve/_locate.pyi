# The native half of fabric.serve.owned (fabric/serve/_locate.c).
from collections.abc import Callable
from typing import Any

from fabric.rpc._wire import RowPlan

# A table's route: record key head, key range, key column name, partition count, and the
# caller's own object, passed back as it is.
RouteSpec = tuple[bytes, int, int, bytes, int, object]
# Per route, per partition: the lookups' indexes and record keys.
Groups = dict[RouteSpec, dict[int, tuple[list[int], list[bytes]]]]

def locate(
    request: bytes, route_of: Callable[[str], RouteSpec | None], /
) -> tuple[Groups, list[int], bool] | None: ...

# A published route: the route (its own object being (table, topic)), its table's RowPlan, and
# the monotonic time it is used until.
PublishedRoute = tuple[RouteSpec, RowPlan, float]

class GetPath:
    def __init__(
        self,
        routes: dict[bytes, PublishedRoute],
        serving: Callable[[str, int], tuple[Any, int, int] | None],
        served_by: bytes,
        /,
    ) -> None: ...
    def answer(self, request: bytes, /) -> bytes | None: ...
    def handling(self, refusal: object, general: Callable[[bytes, Any], Any], /) -> GetPath: ...
    def __call__(self, request: bytes, context: Any, /) -> Any: ...
