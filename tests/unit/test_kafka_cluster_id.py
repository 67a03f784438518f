"""The KRaft cluster id the local stack formats its broker's storage with."""

from __future__ import annotations

import base64
import uuid

from fabric.stack.kafka import new_cluster_id


def test_an_id_starting_with_a_dash_is_drawn_again() -> None:
    # 0xf8 encodes to "-" first in URL-safe base64: the storage tool would read it as an option.
    dashed = bytes([0xF8]) + bytes(15)
    plain = uuid.UUID(int=1).bytes
    draws = iter([dashed, plain])
    assert base64.urlsafe_b64encode(dashed).decode().startswith("-")
    assert new_cluster_id(lambda: next(draws)) == "AAAAAAAAAAAAAAAAAAAAAQ"


def test_ids_are_22_url_safe_characters() -> None:
    for _ in range(200):
        cluster_id = new_cluster_id()
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert uuid.UUID(bytes=base64.urlsafe_b64decode(cluster_id + "=="))
