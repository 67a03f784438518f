"""Planning the sample's changes: a pure function of a seeded random stream and a model of keys.

The planner keeps a model of the keys it may touch (:class:`SampleState`), read from the database
when a run starts, and turns each draw of one ``random.Random`` into a :class:`Change` (the SQL
statements of one transaction). No I/O: :mod:`fabric.sample.generator` runs the changes.

Foreign keys stay valid by construction: only users that no item or bid refers to are deleted or
renumbered, and an item is deleted together with its bids, bids first, in one transaction.
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from fabric.sample.seed import BID_COLUMNS, ITEM_COLUMNS, ITEM_STATUSES, USER_COLUMNS, RowFactory

K = TypeVar("K", bound=Hashable)
BidKey = tuple[int, int]  # (item_id, bid_no): the primary key in constraint order


class OpKind(enum.StrEnum):
    INSERT = "insert"
    UPDATE = "update"  # on items: leaves the description untouched
    UPDATE_DESCRIPTION = "update-description"
    DELETE = "delete"
    KEY_CHANGE = "key-change"  # UPDATE ... SET id: a new primary key for the same row


class Op(NamedTuple):
    table: str
    kind: OpKind


# Weights in percent. Bids dominate, as in a live auction; a key change is rare, as in life.
DEFAULT_MIX: Mapping[Op, int] = {
    Op("users", OpKind.INSERT): 6,
    Op("users", OpKind.UPDATE): 10,
    Op("users", OpKind.DELETE): 2,
    Op("users", OpKind.KEY_CHANGE): 1,
    Op("items", OpKind.INSERT): 8,
    Op("items", OpKind.UPDATE): 12,
    Op("items", OpKind.UPDATE_DESCRIPTION): 4,
    Op("items", OpKind.DELETE): 3,
    Op("bids", OpKind.INSERT): 34,
    Op("bids", OpKind.UPDATE): 12,
    Op("bids", OpKind.DELETE): 8,
}
# The only insert that needs a parent row: a seller is optional, an item is not.
_PARENT = {"bids": "items"}


class KeyPool(Generic[K]):
    """A set of keys with O(1) add, discard and uniform random choice.

    The choice depends only on the sequence of adds and discards, never on hashing order.
    """

    def __init__(self, keys: Iterable[K] = ()) -> None:
        self._keys: list[K] = []
        self._index: dict[K, int] = {}
        for key in keys:
            self.add(key)

    def add(self, key: K) -> None:
        if key not in self._index:
            self._index[key] = len(self._keys)
            self._keys.append(key)

    def discard(self, key: K) -> None:
        position = self._index.pop(key, None)
        if position is None:
            return
        last = self._keys.pop()
        if position < len(self._keys):
            self._keys[position] = last
            self._index[last] = position

    def choice(self, rng: random.Random) -> K:
        return self._keys[rng.randrange(len(self._keys))]

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[K]:
        return iter(self._keys)


class SampleState:
    """The keys of the sample tables and who refers to whom, as the generator believes them.

    ``free_users`` holds the users no item (as seller) and no bid (as bidder) refers to: the only
    ones whose deletion or key change keeps every foreign key valid.
    """

    def __init__(self) -> None:
        self.users: KeyPool[int] = KeyPool()
        self.free_users: KeyPool[int] = KeyPool()
        self.items: KeyPool[int] = KeyPool()
        self.bids: KeyPool[BidKey] = KeyPool()
        self.seller: dict[int, int | None] = {}
        self.bidder: dict[BidKey, int | None] = {}
        self.item_bids: dict[int, set[int]] = {}
        self.next_bid_no: dict[int, int] = {}
        self.next_user_id = 1
        self.next_item_id = 1
        self._refs: Counter[int] = Counter()

    @classmethod
    def from_rows(
        cls,
        users: Iterable[int],
        items: Iterable[tuple[int, int | None]],
        bids: Iterable[tuple[int, int, int | None]],
    ) -> SampleState:
        """Build from key rows: user ids, (item id, seller id), (item id, bid no, bidder id)."""
        state = cls()
        for user_id in users:
            state.add_user(user_id)
        for item_id, seller_id in items:
            state.add_item(item_id, seller_id)
        for item_id, bid_no, bidder_id in bids:
            state.add_bid((item_id, bid_no), bidder_id)
        return state

    def add_user(self, user_id: int) -> None:
        self.users.add(user_id)
        if not self._refs[user_id]:
            self.free_users.add(user_id)
        self.next_user_id = max(self.next_user_id, user_id + 1)

    def remove_user(self, user_id: int) -> None:
        if self._refs[user_id]:
            raise ValueError(f"user {user_id} is still referred to by {self._refs[user_id]} rows")
        self.users.discard(user_id)
        self.free_users.discard(user_id)

    def add_item(self, item_id: int, seller_id: int | None) -> None:
        self.items.add(item_id)
        self.seller[item_id] = seller_id
        self.item_bids.setdefault(item_id, set())
        self.next_bid_no.setdefault(item_id, 1)
        self._refer(seller_id)
        self.next_item_id = max(self.next_item_id, item_id + 1)

    def remove_item(self, item_id: int) -> list[BidKey]:
        """Forget an item and its bids; returns the bids' keys, which go first in the database."""
        removed = [(item_id, bid_no) for bid_no in sorted(self.item_bids[item_id])]
        for key in removed:
            self.remove_bid(key)
        self.items.discard(item_id)
        self._unrefer(self.seller.pop(item_id))
        del self.item_bids[item_id], self.next_bid_no[item_id]
        return removed

    def add_bid(self, key: BidKey, bidder_id: int | None) -> None:
        item_id, bid_no = key
        self.bids.add(key)
        self.bidder[key] = bidder_id
        self.item_bids[item_id].add(bid_no)
        self.next_bid_no[item_id] = max(self.next_bid_no[item_id], bid_no + 1)
        self._refer(bidder_id)

    def remove_bid(self, key: BidKey) -> None:
        self.bids.discard(key)
        self.item_bids[key[0]].discard(key[1])
        self._unrefer(self.bidder.pop(key))

    def _refer(self, user_id: int | None) -> None:
        if user_id is not None:
            self._refs[user_id] += 1
            self.free_users.discard(user_id)

    def _unrefer(self, user_id: int | None) -> None:
        if user_id is None:
            return
        self._refs[user_id] -= 1
        if not self._refs[user_id] and user_id in self.users:
            self.free_users.add(user_id)


@dataclass(frozen=True)
class Statement:
    """One SQL statement of a change, and the rows it is expected to change."""

    sql: str
    params: tuple[object, ...]
    counts_as: Op
    rows: int = 1


@dataclass(frozen=True)
class Change:
    """One transaction: the op that was chosen (after any fallback) and its statements in order."""

    op: Op
    statements: tuple[Statement, ...]


class ChangePlanner:
    """Chooses the next change from the mix and plans its SQL, updating the state as it goes.

    An op the state cannot serve falls back to a weaker one of the same table (delete, key change
    or description update → update → insert); a bid insert with no item to bid on falls back to
    an item insert, whose seller is ``NULL`` while there are no users.
    """

    def __init__(
        self, state: SampleState, rng: random.Random, mix: Mapping[Op, int] = DEFAULT_MIX
    ) -> None:
        if not mix or any(w < 0 for w in mix.values()) or not sum(mix.values()):
            raise ValueError(f"the mix needs non-negative weights that are not all zero: {mix}")
        self.state = state
        self.rng = rng
        self.factory = RowFactory(rng)
        self._ops = list(mix)
        self._weights = list(mix.values())

    def choose(self) -> Op:
        """The next op drawn from the mix, before any fallback."""
        return self.rng.choices(self._ops, weights=self._weights)[0]

    def next(self) -> Change:
        op = self.choose()
        while not self._feasible(op):
            op = _fallback(op)
        return Change(op, self._plan(op))

    def _feasible(self, op: Op) -> bool:
        s = self.state
        if op.kind is OpKind.INSERT:
            return op.table != "bids" or bool(s.items)
        if op.table == "users":
            return bool(s.users if op.kind is OpKind.UPDATE else s.free_users)
        return bool(s.bids if op.table == "bids" else s.items)

    def _plan(self, op: Op) -> tuple[Statement, ...]:
        planners = {
            "users": self._plan_user,
            "items": self._plan_item,
            "bids": self._plan_bid,
        }
        return planners[op.table](op)

    def _plan_user(self, op: Op) -> tuple[Statement, ...]:
        s, f = self.state, self.factory
        if op.kind is OpKind.INSERT:
            user_id = s.next_user_id
            s.add_user(user_id)
            return (_insert("users", USER_COLUMNS, f.user(user_id), op),)
        if op.kind is OpKind.UPDATE:
            user_id = s.users.choice(self.rng)
            makers: dict[str, Callable[[], object]] = {
                "email": lambda: f.email(user_id),
                "display_name": f.display_name,
                "is_active": lambda: self.rng.random() < 0.9,
                "rating": f.rating,
                "tags": f.user_tags,
                "profile": f.profile,
            }
            return (self._update("users", makers, "id = %s", (user_id,), op),)
        user_id = s.free_users.choice(self.rng)
        s.remove_user(user_id)
        if op.kind is OpKind.DELETE:
            return (Statement("DELETE FROM public.users WHERE id = %s", (user_id,), op),)
        new_id = s.next_user_id
        s.add_user(new_id)
        sql = "UPDATE public.users SET id = %s WHERE id = %s"
        return (Statement(sql, (new_id, user_id), op),)

    def _plan_item(self, op: Op) -> tuple[Statement, ...]:
        s, f = self.state, self.factory
        if op.kind is OpKind.INSERT:
            item_id = s.next_item_id
            seller_id = s.users.choice(self.rng) if s.users and self.rng.random() > 0.02 else None
            s.add_item(item_id, seller_id)
            return (_insert("items", ITEM_COLUMNS, f.item(item_id, seller_id), op),)
        item_id = s.items.choice(self.rng)
        if op.kind is OpKind.UPDATE:
            makers: dict[str, Callable[[], object]] = {
                "title": f.title,
                "status": lambda: self.rng.choice(ITEM_STATUSES),
                "reserve_price": f.reserve_price,
                "starting_price": f.starting_price,
                "ends_at": f.instant,
                "attributes": f.attributes,
            }
            return (self._update("items", makers, "id = %s", (item_id,), op),)
        if op.kind is OpKind.UPDATE_DESCRIPTION:
            sql = "UPDATE public.items SET description = %s WHERE id = %s"
            return (Statement(sql, (f.description(), item_id), op),)
        bids = s.remove_item(item_id)
        delete_item = Statement("DELETE FROM public.items WHERE id = %s", (item_id,), op)
        if not bids:
            return (delete_item,)
        sql = "DELETE FROM public.bids WHERE item_id = %s"
        return Statement(sql, (item_id,), Op("bids", OpKind.DELETE), len(bids)), delete_item

    def _plan_bid(self, op: Op) -> tuple[Statement, ...]:
        s, f = self.state, self.factory
        if op.kind is OpKind.INSERT:
            item_id = s.items.choice(self.rng)
            key = (item_id, s.next_bid_no[item_id])
            bidder_id = s.users.choice(self.rng) if s.users and self.rng.random() > 0.03 else None
            s.add_bid(key, bidder_id)
            return (_insert("bids", BID_COLUMNS, f.bid(*key, bidder_id), op),)
        key = s.bids.choice(self.rng)
        if op.kind is OpKind.UPDATE:
            makers: dict[str, Callable[[], object]] = {
                "amount": lambda: f.bid_amount(key[1]),
                "is_proxy": lambda: self.rng.choice((True, False, None)),
            }
            return (self._update("bids", makers, "item_id = %s AND bid_no = %s", key, op),)
        s.remove_bid(key)
        sql = "DELETE FROM public.bids WHERE item_id = %s AND bid_no = %s"
        return (Statement(sql, key, op),)

    def _update(
        self,
        table: str,
        makers: Mapping[str, Callable[[], object]],
        where: str,
        key: tuple[int, ...],
        op: Op,
    ) -> Statement:
        """Set one to three of the ``makers`` columns to fresh values."""
        columns = self.rng.sample(sorted(makers), self.rng.randrange(1, min(3, len(makers)) + 1))
        values = tuple(makers[c]() for c in columns)
        assignments = ", ".join(f"{c} = %s" for c in columns)
        return Statement(f"UPDATE public.{table} SET {assignments} WHERE {where}", values + key, op)


def _fallback(op: Op) -> Op:
    if op.kind is OpKind.INSERT:
        return Op(_PARENT[op.table], OpKind.INSERT)
    if op.kind is OpKind.UPDATE:
        return Op(op.table, OpKind.INSERT)
    return Op(op.table, OpKind.UPDATE)


def _insert(table: str, columns: Iterable[str], row: Mapping[str, object], op: Op) -> Statement:
    # Timestamps of new rows come from the server's now(): they record when the change happened.
    names = [c for c in columns if c not in ("created_at", "placed_at")]
    placeholders = ", ".join(["%s"] * len(names))
    sql = f"INSERT INTO public.{table} ({', '.join(names)}) VALUES ({placeholders})"
    return Statement(sql, tuple(row[c] for c in names), op)
