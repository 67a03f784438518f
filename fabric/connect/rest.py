"""The boundary to the Kafka Connect REST API: the only module that talks HTTP, and the only place
``requests`` errors are translated.

- No answer (connection refused, connect timeout, DNS) → :class:`ConnectUnreachableError`.
- An answer that is an HTTP error → :class:`ConnectError` carrying Connect's own ``message``.
- ``409 Conflict`` (a worker rebalance or a concurrent config change is in progress) is retried
  with exponential backoff until ``conflict_timeout_s`` has passed; so is the ``500`` a worker
  answers while "a rebalance is expected" (right after a connector's config changed).
- ``404`` on a read (config, status, tasks, offsets) is an answer, not an error: ``None``.

Every message is masked: Connect echoes configs, and the JDBC driver may echo connection strings.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, cast

import requests

from fabric.connect.masking import Masker
from fabric.errors import ConfigError, ConnectError, ConnectUnreachableError

log = logging.getLogger(__name__)

Json = dict[str, Any]

_PLUGIN_MISSING = "Failed to find any class that implements Connector"


class ConnectClient:
    """A Connect worker's REST API at ``base_url`` (e.g. ``http://127.0.0.1:28083``).

    ``timeout`` bounds each HTTP request. Validation may take long: Debezium tries a database
    connection while validating.
    """

    def __init__(
        self,
        base_url: str,
        timeout: float = 30.0,
        *,
        masker: Masker | None = None,
        conflict_timeout_s: float = 60.0,
        session: requests.Session | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(
                f"Connect URL {base_url!r} is not an http(s) URL: set FABRIC_CONNECT_URL "
                "(or --connect-url) like http://127.0.0.1:28083"
            )
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.masker = masker or Masker()
        self.conflict_timeout_s = conflict_timeout_s
        self._session = session or requests.Session()
        self._verified = False

    def server_info(self) -> Json:
        """``GET /``: the worker's version and Kafka cluster id."""
        return cast(Json, self._json("GET", "/"))

    def plugins(self) -> list[Json]:
        """``GET /connector-plugins``: the connector classes the worker can run."""
        return self._json("GET", "/connector-plugins") or []

    def validate(self, connector_class: str, config: Mapping[str, str]) -> Json:
        """``PUT /connector-plugins/CLASS/config/validate``: Connect's per-setting verdicts."""
        path = f"/connector-plugins/{_quote(connector_class)}/config/validate"
        return self._json("PUT", path, body=dict(config)) or {}

    def connectors(self) -> list[str]:
        return self._json("GET", "/connectors") or []

    def config(self, name: str) -> dict[str, str] | None:
        """The running config (secrets in clear: mask before showing), ``None`` if unknown."""
        return cast(
            "dict[str, str] | None",
            self._json("GET", f"/connectors/{_quote(name)}/config", absent_ok=True),
        )

    def put_config(self, name: str, config: Mapping[str, str]) -> bool:
        """Create or update the connector; True when it was created."""
        response = self._request("PUT", f"/connectors/{_quote(name)}/config", body=dict(config))
        return response is not None and response.status_code == 201

    def create_stopped(self, name: str, config: Mapping[str, str]) -> None:
        """Register a connector in the STOPPED state: nothing runs, but its offsets can be reset."""
        body = {"name": name, "config": dict(config), "initial_state": "STOPPED"}
        self._request("POST", "/connectors", body=body)

    def status(self, name: str) -> Json | None:
        return cast(
            Json | None, self._json("GET", f"/connectors/{_quote(name)}/status", absent_ok=True)
        )

    def tasks(self, name: str) -> list[Json] | None:
        """``GET /connectors/NAME/tasks``: each task's id and the config it runs with."""
        return cast(
            "list[Json] | None",
            self._json("GET", f"/connectors/{_quote(name)}/tasks", absent_ok=True),
        )

    def restart(self, name: str, *, include_tasks: bool, only_failed: bool) -> None:
        params = {"includeTasks": _flag(include_tasks), "onlyFailed": _flag(only_failed)}
        self._request("POST", f"/connectors/{_quote(name)}/restart", params=params)

    def pause(self, name: str) -> None:
        self._request("PUT", f"/connectors/{_quote(name)}/pause")

    def resume(self, name: str) -> None:
        self._request("PUT", f"/connectors/{_quote(name)}/resume")

    def stop(self, name: str) -> None:
        """``PUT /connectors/NAME/stop``: shut the connector and its tasks down, keep its config."""
        self._request("PUT", f"/connectors/{_quote(name)}/stop")

    def delete(self, name: str) -> bool:
        """Unregister the connector; False if Connect did not know it."""
        return self._request("DELETE", f"/connectors/{_quote(name)}", absent_ok=True) is not None

    def offsets(self, name: str) -> list[Json] | None:
        """The source offsets Connect holds for the connector (empty: none committed yet)."""
        doc = self._json("GET", f"/connectors/{_quote(name)}/offsets", absent_ok=True)
        return None if doc is None else list(doc.get("offsets", []))

    def reset_offsets(self, name: str) -> None:
        """``DELETE /connectors/NAME/offsets``; Connect requires the connector to be STOPPED."""
        self._request("DELETE", f"/connectors/{_quote(name)}/offsets")

    def _json(self, method: str, path: str, *, body: Any = None, absent_ok: bool = False) -> Any:
        response = self._request(method, path, body=body, absent_ok=absent_ok)
        if response is None or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ConnectError(
                f"Connect at {self.base_url} answered {method} {path} with something that is not "
                f"JSON: {self.masker.text(response.text[:200])!r}"
            ) from exc

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        absent_ok: bool = False,
    ) -> requests.Response | None:
        """Send one request, retrying while the worker is busy rebalancing; ``None`` for a 404
        when ``absent_ok``."""
        if not self._verified and path != "/":
            self._verify()
        deadline = time.monotonic() + self.conflict_timeout_s
        backoff = 0.25
        while True:
            response = self._send(method, path, body, params)
            if not _busy(response) or time.monotonic() + backoff > deadline:
                break
            log.info(
                "connect busy, retrying method=%s path=%s backoff_s=%.2f", method, path, backoff
            )
            time.sleep(backoff)
            backoff = min(backoff * 2, 4.0)
        if response.status_code == 404 and absent_ok:
            return None
        if response.status_code >= 400:
            raise self._http_error(method, path, response)
        return response

    def _verify(self) -> None:
        """Make sure a Connect worker answers, not some other HTTP server: a stray 404 must not
        read as "connector not registered"."""
        info = self._send("GET", "/", None, None)
        try:
            doc = info.json() if info.ok else None
        except ValueError:
            doc = None
        is_connect = isinstance(doc, dict) and "kafka_cluster_id" in doc
        if not is_connect:
            raise ConnectUnreachableError(
                f"the server at {self.base_url} is not a Kafka Connect worker (GET / answered "
                f"HTTP {info.status_code}): point FABRIC_CONNECT_URL (or --connect-url) at the "
                "worker's REST URL, or start the local stack with `fabric stack up`"
            )
        self._verified = True

    def _send(
        self, method: str, path: str, body: Any, params: Mapping[str, str] | None
    ) -> requests.Response:
        url = self.base_url + path
        try:
            return self._session.request(
                method, url, json=body, params=params, timeout=self.timeout
            )
        except requests.ConnectionError as exc:  # connect timeouts included
            raise ConnectUnreachableError(
                f"Kafka Connect does not answer at {self.base_url} ({_reason(exc)}): start the "
                "local stack with `fabric stack up`, or point FABRIC_CONNECT_URL (or "
                "--connect-url) at your Connect worker's REST URL"
            ) from exc
        except requests.Timeout as exc:
            raise ConnectError(
                f"Kafka Connect at {self.base_url} did not answer {method} {path} within "
                f"{self.timeout:.0f}s; the worker may be overloaded (`fabric stack logs connect`)"
            ) from exc
        except requests.RequestException as exc:
            raise ConnectError(
                f"request {method} {url} failed: {self.masker.text(_reason(exc))}"
            ) from exc

    def _http_error(self, method: str, path: str, response: requests.Response) -> ConnectError:
        message = self.masker.text(_error_message(response))
        if _PLUGIN_MISSING in message:
            return ConnectError(
                f"the connector plugin is not installed on the Connect worker at {self.base_url} "
                f"({message.split(', available connectors are')[0]}): put the Debezium Postgres "
                "connector folder under the worker's plugin.path (`fabric stack up` installs it)"
            )
        return ConnectError(
            f"Kafka Connect refused {method} {path} (HTTP {response.status_code}): {message}"
        )


def _error_message(response: requests.Response) -> str:
    try:
        doc = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason
    if isinstance(doc, dict) and doc.get("message"):
        return str(doc["message"])
    return str(doc)[:500]


def _reason(exc: requests.RequestException) -> str:
    """The innermost cause (e.g. ``Connection refused``): requests nests the socket error under
    several layers of urllib3 wrappers whose texts repeat the URL."""
    inner: BaseException = exc
    while (inner.__cause__ or inner.__context__) is not None:
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    text = str(inner) or type(inner).__name__
    return text.split("] ", 1)[-1] if text.startswith("[Errno") else text


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _busy(response: requests.Response) -> bool:
    """Connect answers this way while its group rebalances; the same request succeeds later."""
    if response.status_code == 409:
        return True
    return response.status_code == 500 and "rebalance is expected" in response.text
