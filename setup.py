"""The one thing pyproject.toml cannot declare stably: the native modules, fabric.rpc._wire
(answers written from stored rows), fabric.serve._locate (a BatchGet's keys located) and
fabric.client._rows (a BatchGet's answer read into psycopg values), which share the wire format
reader fabric/rpc/protowire.h.

Every install compiles them, so the machine needs a C compiler (scripts/bootstrap and the
Dockerfile see to it); docs/architecture.md says why the per-row work is native.
"""

from setuptools import Extension, setup

_FLAGS = ["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]


def _native(module: str) -> Extension:
    source = module.replace(".", "/") + ".c"
    return Extension(
        module, sources=[source], depends=["fabric/rpc/protowire.h"], extra_compile_args=_FLAGS
    )


setup(
    ext_modules=[
        _native("fabric.rpc._wire"),
        _native("fabric.serve._locate"),
        _native("fabric.client._rows"),
    ]
)
