"""Materialized state: one RocksDB store per assigned topic-partition."""

from fabric.state.options import StoreOptions
from fabric.state.row import StoredRow
from fabric.state.store import PartitionStore, StoreBatch

__all__ = ["PartitionStore", "StoreBatch", "StoreOptions", "StoredRow"]
