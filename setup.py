"""The one thing pyproject.toml cannot declare stably: the native half of fabric.rpc.wire.

Every install compiles it, so the machine needs a C compiler (scripts/bootstrap and the
Dockerfile see to it); docs/architecture.md says why the per-row work is native.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "fabric.rpc._wire",
            sources=["fabric/rpc/_wire.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
        )
    ]
)
