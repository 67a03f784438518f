"""The one thing pyproject.toml cannot declare stably: the native modules, fabric.rpc._wire
(answers written from stored rows), fabric.serve._locate (a BatchGet's keys located) and
fabric.client._rows (a BatchGet's answer read into psycopg values).

Every install compiles them, so the machine needs a C compiler (scripts/bootstrap and the
Dockerfile see to it); docs/architecture.md says why the per-row work is native.
"""

from setuptools import Extension, setup

_FLAGS = ["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]

setup(
    ext_modules=[
        Extension(
            "fabric.rpc._wire",
            sources=["fabric/rpc/_wire.c"],
            extra_compile_args=_FLAGS,
        ),
        Extension(
            "fabric.serve._locate", sources=["fabric/serve/_locate.c"], extra_compile_args=_FLAGS
        ),
        Extension(
            "fabric.client._rows", sources=["fabric/client/_rows.c"], extra_compile_args=_FLAGS
        ),
    ]
)
