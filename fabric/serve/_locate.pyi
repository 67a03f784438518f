# The native half of fabric.serve.owned (fabric/serve/_locate.c).
from collections.abc import Callable

# A table's route: record key head, key range, key column name, partition count, and the
# caller's own object, passed back as it is.
RouteSpec = tuple[bytes, int, int, bytes, int, object]
# Per route, per partition: the lookups' indexes and record keys.
Groups = dict[RouteSpec, dict[int, tuple[list[int], list[bytes]]]]

def locate(
    request: bytes, route_of: Callable[[str], RouteSpec | None], /
) -> tuple[Groups, list[int], bool] | None: ...
