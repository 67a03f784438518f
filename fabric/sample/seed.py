"""Seed rows for the auction sample: deterministic values, loaded with ``COPY``.

:class:`RowFactory` is pure: the same seed and the same sequence of calls give the same rows, so a
test, a demo and a benchmark all see the same database. :func:`load` applies ``schema.sql`` and
copies the rows in one transaction.

Values in a row are what psycopg adapts directly: ``Decimal`` for numeric, ``uuid.UUID``,
aware ``datetime``, ``date``, ``bytes``, ``list[str]`` for ``text[]``; jsonb columns hold JSON
text (``"null"`` is the JSON null literal, distinct from SQL ``NULL``, which is ``None``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import unicodedata
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Any

import psycopg

from fabric.errors import SourceDatabaseError

log = logging.getLogger(__name__)

Row = dict[str, object]

USER_COLUMNS = (
    "id",
    "email",
    "display_name",
    "is_active",
    "rating",
    "created_at",
    "birth_date",
    "external_id",
    "tags",
    "profile",
)
ITEM_COLUMNS = (
    "id",
    "seller_id",
    "title",
    "description",
    "status",
    "reserve_price",
    "starting_price",
    "ends_at",
    "attributes",
    "thumbnail",
    "created_at",
)
BID_COLUMNS = ("bid_no", "item_id", "bidder_id", "amount", "placed_at", "is_proxy")
TABLES = ("users", "items", "bids")
ITEM_STATUSES = ("draft", "listed", "sold", "withdrawn")

# Every generated timestamp falls in the year after this instant, so seeded rows never depend on
# when they were loaded.
EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
_YEAR_US = 365 * 86_400 * 1_000_000
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_FIRST_NAMES = (
    "Ana", "Zoë", "François", "Søren", "José", "Łukasz", "Émilie", "Ngọc", "Björn", "Chloé",
    "Mia", "Noah", "Aiko", "Иван", "Fatima", "Liam", "Ines", "Dalia", "Kwame", "Olivia",
)  # fmt: skip
_LAST_NAMES = (
    "García", "Müller", "Dubois", "Østergaard", "Nowak", "佐藤", "王", "Nguyễn", "Smith",
    "O'Brien", "Kowalski", "Rossi", "Петров", "Haddad", "Silva", "Kim", "Andersson", "Núñez",
)  # fmt: skip
_DOMAINS = ("example.com", "example.org", "mail.example.net", "auction.example")
_USER_TAGS = (
    "vintage", "collector", "pro-seller", "verified", "night owl", "über-fan", "収集家",
    'says "hi"', "a,b", "early bird",
)  # fmt: skip
_WORDS = (
    "the", "a", "with", "and", "original", "box", "mint", "condition", "rare", "lot",
    "hand-made", "antique", "oak", "brass", "signed", "edition", "first", "print", "lamp",
    "clock", "camera", "lens", "vinyl", "record", "guitar", "chair", "table", "mirror",
    "ceramic", "vase", "café", "crème", "naïve", "façade", "jalapeño", "smørrebrød",
    "Straße", "déjà", "vu", "骨董品", "時計", "限定版", "古い", "美品", "🔨", "✨",
)  # fmt: skip
_CONDITIONS = ("new", "like new", "good", "fair", "for parts")
_COLORS = ("black", "white", "walnut", "brass", "crimson", "黒", "bleu ciel")
# A few text values carry a control character, which every layer must round-trip intact.
_CONTROL_CHARS = ("\t", "\x07", "\x1b", "\x7f")


@dataclass(frozen=True)
class SeedCounts:
    """How many rows :func:`load` wrote to each table."""

    users: int
    items: int
    bids: int


class RowFactory:
    """Deterministic sample rows drawn from one ``random.Random``.

    Every method consumes the generator, so the rows depend on the seed and on the order of the
    calls, never on the clock or the database.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def user(self, user_id: int) -> Row:
        """A ``users`` row; ``email`` embeds the id, so ids that differ give emails that differ."""
        r = self.rng
        first, last = r.choice(_FIRST_NAMES), r.choice(_LAST_NAMES)
        return {
            "id": user_id,
            "email": self.email(user_id, first, last),
            "display_name": self.display_name(first, last),
            "is_active": r.random() < 0.9,
            "rating": self.rating(),
            "created_at": self.instant(),
            "birth_date": self._birth_date(),
            "external_id": uuid.UUID(int=r.getrandbits(128), version=4),
            "tags": self.user_tags(),
            "profile": self.profile(),
        }

    def item(self, item_id: int, seller_id: int | None) -> Row:
        """An ``items`` row; drafts have no end time, the rest end 1 to 21 days after creation."""
        r = self.rng
        status = r.choices(ITEM_STATUSES, weights=(10, 60, 20, 10))[0]
        created = self.instant()
        ends_at = None if status == "draft" else created + dt.timedelta(hours=r.randrange(24, 505))
        return {
            "id": item_id,
            "seller_id": seller_id,
            "title": self.title(),
            "description": self.description(),
            "status": status,
            "reserve_price": self.reserve_price(),
            "starting_price": self.starting_price(),
            "ends_at": ends_at,
            "attributes": self.attributes(),
            "thumbnail": self._thumbnail(),
            "created_at": created,
        }

    def bid(self, item_id: int, bid_no: int, bidder_id: int | None) -> Row:
        """A ``bids`` row; later bids on an item tend to be higher."""
        r = self.rng
        return {
            "bid_no": bid_no,
            "item_id": item_id,
            "bidder_id": bidder_id,
            "amount": self.bid_amount(bid_no),
            "placed_at": self.instant(),
            "is_proxy": r.choices((True, False, None), weights=(25, 65, 10))[0],
        }

    def email(self, user_id: int, first: str | None = None, last: str | None = None) -> str:
        """``first.last.<id>@domain``: the names are letters only, so the id makes it unique."""
        first = first or self.rng.choice(_FIRST_NAMES)
        last = last or self.rng.choice(_LAST_NAMES)
        return f"{_ascii(first)}.{_ascii(last)}.{user_id}@{self.rng.choice(_DOMAINS)}"

    def display_name(self, first: str | None = None, last: str | None = None) -> str | None:
        r = self.rng
        if r.random() < 0.05:
            return None
        first = first or r.choice(_FIRST_NAMES)
        last = last or r.choice(_LAST_NAMES)
        name = f"{first} {last}"
        roll = r.random()
        if roll < 0.05:
            name += " 🔨"
        elif roll < 0.08:
            name = f"{first}{r.choice(_CONTROL_CHARS)}{last}"
        return name

    def rating(self) -> Decimal | None:
        return None if self.rng.random() < 0.3 else _cents(self.rng.randrange(0, 501))

    def user_tags(self) -> list[str] | None:
        roll = self.rng.random()
        if roll < 0.15:
            return None
        if roll < 0.25:
            return []
        return self.rng.sample(_USER_TAGS, self.rng.randrange(1, 5))

    def profile(self) -> str | None:
        r = self.rng
        roll = r.random()
        if roll < 0.2:
            return None
        if roll < 0.23:
            return "null"
        doc = {
            "bio": self.text(r.randrange(0, 30)),
            "lang": r.choice(("en", "fr", "de", "ja", "vi", "pl")),
            "prefs": {"newsletter": r.random() < 0.5, "currency": r.choice(("EUR", "USD", "JPY"))},
            "links": [
                f"https://{r.choice(_DOMAINS)}/u/{r.randrange(10**6)}"
                for _ in range(r.randrange(3))
            ],
        }
        return json.dumps(doc, ensure_ascii=False)

    def title(self) -> str:
        return self.text(self.rng.randrange(2, 9)).capitalize()

    def description(self) -> str | None:
        """Mostly short; a fifth over 2 kB (stored out of line), a tenth over 4 kB."""
        r = self.rng
        roll = r.random()
        if roll < 0.05:
            return None
        if roll < 0.45:
            chars = r.randrange(20, 400)
        elif roll < 0.8:
            chars = r.randrange(400, 2_000)
        elif roll < 0.9:
            chars = r.randrange(2_100, 4_000)
        else:
            chars = r.randrange(4_200, 12_000)
        return self.paragraphs(chars)

    def paragraphs(self, min_chars: int) -> str:
        """Sentences of at least ``min_chars`` characters in all, paragraphs split by CRLF."""
        r = self.rng
        parts: list[str] = []
        size = 0
        while size < min_chars:
            sentence = self.text(r.randrange(6, 20)).capitalize() + "."
            if r.random() < 0.01:
                sentence += r.choice(_CONTROL_CHARS)
            separator = "\r\n\r\n" if r.random() < 0.15 else " "
            parts.append(sentence + separator)
            size += len(sentence) + len(separator)
        return "".join(parts).rstrip()

    def text(self, words: int) -> str:
        return " ".join(self.rng.choices(_WORDS, k=words))

    def reserve_price(self) -> Decimal | None:
        return None if self.rng.random() < 0.4 else _cents(self.rng.randrange(100, 10**7))

    def starting_price(self) -> Decimal | None:
        """Unconstrained numeric: scales from 0 to 9 digits, and now and then a very long value."""
        r = self.rng
        roll = r.random()
        if roll < 0.1:
            return None
        if roll < 0.13:
            return _scaled(r.randrange(10**29, 10**30), r.randrange(0, 12))
        return _scaled(r.randrange(1, 10**6), r.choice((0, 0, 1, 2, 2, 3, 9)))

    def attributes(self) -> str | None:
        r = self.rng
        roll = r.random()
        if roll < 0.1:
            return None
        if roll < 0.12:
            return "null"
        doc: dict[str, Any] = {
            "condition": r.choice(_CONDITIONS),
            "color": r.choice(_COLORS),
            "weight_g": r.randrange(10, 50_000),
            "dimensions_cm": [round(r.uniform(1, 200), 1) for _ in range(3)],
            "shipping": {"international": r.random() < 0.5, "cost": str(_cents(r.randrange(5000)))},
        }
        if r.random() < 0.3:
            doc["provenance"] = {"note": self.text(r.randrange(3, 12)), "verified": None}
        return json.dumps(doc, ensure_ascii=False)

    def bid_amount(self, bid_no: int) -> Decimal:
        return _cents(self.rng.randrange(100, 20_000) + 500 * bid_no)

    def instant(self) -> dt.datetime:
        return EPOCH + dt.timedelta(microseconds=self.rng.randrange(_YEAR_US))

    def _birth_date(self) -> dt.date | None:
        if self.rng.random() < 0.4:
            return None
        return dt.date(1940, 1, 1) + dt.timedelta(days=self.rng.randrange(66 * 365))

    def _thumbnail(self) -> bytes | None:
        if self.rng.random() < 0.3:
            return None
        return _PNG_SIGNATURE + self.rng.randbytes(self.rng.randrange(16, 256))


def schema_sql() -> str:
    """The DDL of the sample schema (package data ``fabric/sample/schema.sql``)."""
    return (resources.files("fabric.sample") / "schema.sql").read_text(encoding="utf-8")


def load(
    conn: psycopg.Connection[Any],
    *,
    users: int = 1_000,
    items: int = 2_000,
    bids: int = 10_000,
    seed: int = 42,
    reset: bool = False,
) -> SeedCounts:
    """Create the sample schema if missing and fill it with rows derived from ``seed``.

    Users get ids ``1..users`` and items ``1..items``; bids are spread over the items, favouring
    the lower ids. All of it happens in one transaction: on any error nothing is written. Tables
    that already hold rows are emptied first with ``reset=True`` (one ``TRUNCATE`` of all three);
    otherwise :class:`SourceDatabaseError` is raised and nothing changes. psycopg errors
    propagate: callers wrap the call in :func:`fabric.db.translated`.
    """
    _check_sizes(users=users, items=items, bids=bids)
    factory = RowFactory(random.Random(seed))
    with conn.transaction():
        conn.execute(schema_sql())
        existing = _row_counts(conn)
        if any(existing.values()):
            if not reset:
                found = ", ".join(f"{table}={n}" for table, n in existing.items())
                raise SourceDatabaseError(
                    f"the sample tables already hold rows ({found}); to empty them and load "
                    "again run `fabric sample load --reset` (reset=True from Python)"
                )
            log.info("sample reset truncating=%s", ",".join(TABLES))
            conn.execute("TRUNCATE public.bids, public.items, public.users")
        user_ids = range(1, users + 1)
        item_sellers = [_pick(factory.rng, user_ids, 0.02) for _ in range(items)]
        with conn.cursor() as cur:
            _copy(cur, "users", USER_COLUMNS, (factory.user(i) for i in user_ids))
            _copy(
                cur,
                "items",
                ITEM_COLUMNS,
                (factory.item(i, s) for i, s in enumerate(item_sellers, start=1)),
            )
            _copy(cur, "bids", BID_COLUMNS, _seed_bids(factory, items, user_ids, bids))
    counts = SeedCounts(users=users, items=items, bids=bids)
    log.info("sample loaded users=%d items=%d bids=%d seed=%d", users, items, bids, seed)
    return counts


def _seed_bids(
    factory: RowFactory, items: int, user_ids: Sequence[int], count: int
) -> Iterable[Row]:
    next_bid_no = [1] * (items + 1)
    for _ in range(count):
        # Squaring a uniform draw skews bids towards the lower item ids: a few hot auctions.
        item_id = 1 + int(items * factory.rng.random() ** 2)
        bid_no = next_bid_no[item_id]
        next_bid_no[item_id] += 1
        yield factory.bid(item_id, bid_no, _pick(factory.rng, user_ids, 0.03))


def _pick(rng: random.Random, ids: Sequence[int], none_share: float) -> int | None:
    if not ids or rng.random() < none_share:
        return None
    return ids[rng.randrange(len(ids))]


def _copy(
    cur: psycopg.Cursor[Any], table: str, columns: Sequence[str], rows: Iterable[Row]
) -> None:
    statement = f"COPY public.{table} ({', '.join(columns)}) FROM STDIN"
    with cur.copy(statement) as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def _row_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    selects = ", ".join(f"(SELECT count(*) FROM public.{t})" for t in TABLES)
    row = conn.execute(f"SELECT {selects}").fetchone()
    assert row is not None  # a SELECT without FROM returns exactly one row
    return dict(zip(TABLES, (int(n) for n in row), strict=True))


def _check_sizes(*, users: int, items: int, bids: int) -> None:
    if min(users, items, bids) < 0:
        raise ValueError(f"row counts must not be negative, got {users=} {items=} {bids=}")
    if bids and not items:
        raise ValueError("bids need at least one item")


def _cents(cents: int) -> Decimal:
    return _scaled(cents, 2)


def _scaled(digits: int, scale: int) -> Decimal:
    """``digits * 10**-scale``, exact: unlike arithmetic, parsing never rounds to 28 digits."""
    return Decimal(f"{digits}E-{scale}")


def _ascii(name: str) -> str:
    """An email-safe spelling of a name: accents dropped, ASCII letters kept, never empty."""
    folded = unicodedata.normalize("NFKD", name.lower())
    return "".join(c for c in folded if c.isascii() and c.isalpha()) or "user"
