"""Masking secrets out of everything the fabric shows: specs, diffs, errors, traces and logs.

Two rules, both applied to every string that leaves this package:

- the value of a setting whose *name* looks secret (``database.password``, ``ssl.key.password``,
  ``sasl.jaas.config``, ``…token``, ``…secret``, ``…credential…``) is replaced by :data:`MASK`;
- every occurrence of a *known secret value* inside any string is replaced by :data:`MASK`, so a
  password that Connect or the JDBC driver echoes in an error message or a stack trace is hidden
  too. Known values are the ones the configuration marks secret (``FabricConfig.secret_names``)
  plus the values of secret-looking settings of every spec rendered so far.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping

MASK = "********"

_SECRET_NAME = re.compile(
    r"password|passwd|secret|token|credential|jaas\.config|api\.key|private\.key", re.IGNORECASE
)


def looks_secret(name: str) -> bool:
    """True for a setting or variable name whose value must never be shown."""
    return _SECRET_NAME.search(name) is not None


class Masker:
    """Replaces secrets in strings, configs and decoded JSON documents.

    Known secret values can be added as they are discovered (a spec rendered, a running config
    read back from Connect); every holder of this masker then hides them too.
    """

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        self._needles: tuple[str, ...] = ()
        self.add(secret_values)

    def add(self, secret_values: Iterable[str]) -> None:
        """Learn more secret values; empty strings are ignored (they would match everywhere)."""
        needles = set(self._needles)
        for value in secret_values:
            if value:
                # The forms a value takes when echoed inside JSON or a URL, as well as raw.
                needles.update({value, json.dumps(value)[1:-1], urllib.parse.quote(value, safe="")})
        # Longest first, so a secret that contains another is replaced whole.
        self._needles = tuple(sorted(needles, key=lambda s: (-len(s), s)))

    def add_config(self, config: Mapping[str, str]) -> None:
        """Learn the values of the secret-looking settings of ``config``."""
        self.add(v for k, v in config.items() if looks_secret(k))

    def text(self, text: str) -> str:
        for needle in self._needles:
            if needle in text:
                text = text.replace(needle, MASK)
        return text

    def config(self, config: Mapping[str, str]) -> dict[str, str]:
        """A copy of ``config`` with secret settings and embedded secret values masked."""
        return {k: self.setting(k, v) for k, v in config.items()}

    def setting(self, name: str, value: str) -> str:
        return MASK if looks_secret(name) else self.text(value)

    def document(self, doc: object) -> object:
        """A copy of a decoded JSON document with every string masked, and every secret-looking
        key's value replaced whole."""
        if isinstance(doc, str):
            return self.text(doc)
        if isinstance(doc, Mapping):
            return {
                str(k): MASK if looks_secret(str(k)) and v is not None else self.document(v)
                for k, v in doc.items()
            }
        if isinstance(doc, list):
            return [self.document(item) for item in doc]
        return doc


def mask(config: Mapping[str, str], secret_values: Iterable[str] = ()) -> dict[str, str]:
    """``config`` with secret-looking settings and any known secret value replaced by ``MASK``."""
    masker = Masker(secret_values)
    masker.add_config(config)
    return masker.config(config)
