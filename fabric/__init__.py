"""cdc-fabric: Postgres change streams materialized into queryable, partitioned tables."""

__version__ = "0.1.0"
