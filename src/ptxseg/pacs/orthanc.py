"""A small client of Orthanc's REST API (the calls the triage worker needs), with bounded retries.

Connection failures and 5xx answers are retried with exponential backoff (``retry_s`` doubling up to
``max_backoff_s``) for at most ``give_up_s`` seconds, each retry logged once in one line; a 4xx answer is a
:class:`OrthancError` at once (the request itself is wrong: retrying cannot help). Credentials are HTTP basic
auth, given as a pair (never read from the command line; see :mod:`ptxseg.pacs.config`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any
from urllib.parse import urlparse

import httpx

log = logging.getLogger("ptxseg.triage")

#: Orthanc's resource ids: five groups of eight hex digits (a SHA-1 of the DICOM identifiers)
ORTHANC_ID = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{8}){4}")


def resource(kind: str, rid: object) -> str:
    """The REST path of Orthanc resource ``rid`` (``/instances/<id>`` …). An id read from Orthanc's answers goes into
    a URL only in Orthanc's own id format: anything else (``../tools/reset``) is refused, never requested."""
    text = str(rid)
    if not ORTHANC_ID.fullmatch(text):
        raise OrthancError(f"not an Orthanc {kind[:-1]} id: {text[:80]!r}")
    return f"/{kind}/{text}"


class OrthancError(Exception):
    """Orthanc refused a request (4xx), or stayed unreachable longer than the client's patience."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OrthancClient:
    """``url`` (e.g. ``http://127.0.0.1:8042``) with optional basic-auth ``credentials`` (user, password)."""

    def __init__(
        self,
        url: str,
        credentials: tuple[str, str] | None = None,
        timeout_s: float = 60.0,
        retry_s: float = 0.5,
        max_backoff_s: float = 30.0,
        give_up_s: float = 600.0,
        sleep=time.sleep,
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"not an Orthanc URL: {url!r} (expected http://host:port)")
        self.url = url.rstrip("/")
        self.retry_s, self.max_backoff_s, self.give_up_s, self._sleep = retry_s, max_backoff_s, give_up_s, sleep
        self._http = httpx.Client(base_url=self.url, auth=credentials, timeout=timeout_s)
        self.stop: threading.Event | None = None  # when set, waiting for a retry ends at once

    def close(self) -> None:
        self._http.close()

    # -- transport ------------------------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One REST call, retried through connection failures and 5xx answers (see the module's docstring)."""
        start, delay, attempt = time.monotonic(), self.retry_s, 0
        while True:
            attempt += 1
            try:
                r = self._http.request(method, path, **kw)
                if r.status_code < 500:
                    if r.status_code >= 400:
                        detail = r.text.strip().replace("\n", " ")[:200]
                        raise OrthancError(f"{method} {path}: HTTP {r.status_code} {detail}", r.status_code)
                    return r
                problem = f"HTTP {r.status_code}"
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            waited = time.monotonic() - start
            if waited + delay > self.give_up_s:
                raise OrthancError(f"Orthanc at {self.url} unreachable for {waited:.0f} s ({problem}); giving up")
            log.warning("Orthanc at %s: %s on %s %s; retry %d in %.1f s", self.url, problem, method, path, attempt, delay)
            if self.stop is not None:
                if self.stop.wait(delay):
                    raise OrthancError(f"stopped while waiting for Orthanc at {self.url} ({problem})")
            else:
                self._sleep(delay)
            delay = min(2 * delay, self.max_backoff_s)

    def get_json(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None).json()

    # -- the calls the worker uses --------------------------------------------------------------------------------
    def system(self) -> dict[str, Any]:
        return self.get_json("/system")

    def changes(self, since: int, limit: int = 100) -> dict[str, Any]:
        """``{"Changes": [...], "Done": bool, "Last": int}`` after sequence number ``since``."""
        return self.get_json("/changes", since=since, limit=limit)

    def tags(self, instance: str) -> dict[str, Any]:
        """The instance's DICOM tags by keyword (Orthanc's simplified form)."""
        return self.get_json(f"{resource('instances', instance)}/simplified-tags")

    def file(self, instance: str) -> bytes:
        return self.request("GET", f"{resource('instances', instance)}/file").content

    def exists(self, instance: str) -> bool:
        try:
            self.request("GET", resource("instances", instance))
            return True
        except OrthancError as exc:
            if exc.status == 404:
                return False
            raise

    def store(self, data: bytes, replace: bool = True) -> str:
        """Store one DICOM file; returns its Orthanc id. With ``replace`` an instance already stored under the same
        UIDs is deleted and stored again (Orthanc keeps the first copy otherwise), so a re-analysis replaces."""
        answer = self.request("POST", "/instances", content=data, headers={"Content-Type": "application/dicom"}).json()
        if answer.get("Status") == "AlreadyStored" and replace:
            self.request("DELETE", resource("instances", answer["ID"]))
            answer = self.request("POST", "/instances", content=data, headers={"Content-Type": "application/dicom"}).json()
        if answer.get("Status") not in ("Success", "AlreadyStored"):
            raise OrthancError(f"POST /instances: Orthanc answered {answer}")
        return str(answer["ID"])

    def metadata(self, instance: str) -> dict[str, str]:
        return self.get_json(f"{resource('instances', instance)}/metadata", expand="")

    def set_metadata(self, instance: str, values: dict[str, str]) -> None:
        for name, value in values.items():
            try:
                self.request("PUT", f"{resource('instances', instance)}/metadata/{name}", content=str(value).encode())
            except OrthancError as exc:
                if exc.status in (400, 404, 415):
                    raise OrthancError(
                        f"Orthanc refused metadata {name!r} ({exc}); declare ptxseg's metadata in Orthanc's "
                        'configuration ("UserMetadata", see docs/pacs.md)',
                        exc.status,
                    ) from exc
                raise

    def studies(self) -> list[str]:
        return self.get_json("/studies")

    def study(self, study: str) -> dict[str, Any]:
        return self.get_json(resource("studies", study))

    def study_instances(self, study: str) -> list[dict[str, Any]]:
        """Every instance of a study, expanded (``ID``, ``MainDicomTags`` …)."""
        return self.get_json(f"{resource('studies', study)}/instances")
