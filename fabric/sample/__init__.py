"""The auction sample: schema, deterministic seed rows and a paced change generator.

``users``, ``items`` (a TOASTed ``description``, an enum ``status``) and ``bids`` (a composite key
declared in another order than its columns) cover the common Postgres types a CDC pipeline must
carry. :func:`load` fills them; :class:`ChangeGenerator` keeps changing them.
"""

from fabric.sample.generator import ChangeGenerator, GenerationReport
from fabric.sample.planner import Op, OpKind
from fabric.sample.seed import SeedCounts, load

__all__ = ["ChangeGenerator", "GenerationReport", "Op", "OpKind", "SeedCounts", "load"]
