"""The DICOM node's settings (``ptxseg listen --config node.yaml``, validated by pydantic): who may send, where
the results go, the spool and its limits. The everyday ones are also command-line options.

Credentials of a STOW-RS destination never come from the command line: a file holding one line
``user:password`` (``credentials_file``), else ``PTXSEG_STOW_USER`` and ``PTXSEG_STOW_PASSWORD``, else none.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ptxseg.errors import PtxsegError

ENV_USER, ENV_PASSWORD = "PTXSEG_STOW_USER", "PTXSEG_STOW_PASSWORD"
#: an AE title: 1–16 characters of the default repertoire, no backslash or control characters (PS3.5 AE)
AE_TITLE = re.compile(r"[ -\[\]-~]{1,16}")


def check_ae_title(value: str) -> str:
    """``value`` stripped, when it is a valid AE title; ValueError otherwise."""
    title = value.strip()
    if not AE_TITLE.fullmatch(title):
        raise ValueError(f"{value!r} is not an AE title (1-16 printable ASCII characters, no backslash)")
    return title


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tls(_Settings):
    """TLS towards a C-STORE destination (DICOM over TLS, PS3.15 B.1)."""

    ca_file: Path = Field(description="CA certificate(s) the destination's certificate must chain to")
    cert_file: Path | None = Field(None, description="this node's client certificate, when the destination asks for one")
    key_file: Path | None = Field(None, description="its private key")
    server_name: str | None = Field(None, description="the name the destination's certificate must carry (default: host)")


class CStoreDestination(_Settings):
    """A DICOM peer that takes the results by C-STORE."""

    kind: Literal["cstore"] = "cstore"
    ae_title: str = Field(description="the destination's AE title")
    host: str = Field(description="host name or address")
    port: int = Field(ge=1, le=65535)
    tls: Tls | None = None

    @field_validator("ae_title")
    @classmethod
    def _title(cls, v: str) -> str:
        return check_ae_title(v)

    @property
    def name(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


class StowDestination(_Settings):
    """A DICOMweb service that takes the results by STOW-RS (``POST {url}/studies``)."""

    kind: Literal["stow"] = "stow"
    url: str = Field(description="the DICOMweb base URL (the one before /studies)")
    credentials_file: Path | None = Field(None, description="file with one line user:password (HTTP basic auth)")
    ca_file: Path | None = Field(None, description="CA bundle for an https URL (default: the system's)")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"https?://[^\s/]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v.rstrip("/")

    @property
    def name(self) -> str:
        return self.url


Destination = Annotated[CStoreDestination | StowDestination, Field(discriminator="kind")]


class NodeSettings(_Settings):
    """Every setting of ``ptxseg listen``; a YAML file may give any of them (unknown keys are refused)."""

    ae_title: str = Field("PTXSEG", description="this node's AE title (called AE title it answers to)")
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: every interface)")
    port: int = Field(11112, ge=1, le=65535, description="DICOM port")
    spool: Path = Field(Path("ptxseg-spool"), description="received files, results and the durable queue")
    allow_aet: list[str] = Field([], description="calling AE titles accepted; none: any caller, but only on loopback")
    allow_hosts: list[str] = Field([], description="peer addresses accepted (none: any allowed by allow_aet)")
    destinations: list[Destination] = Field([], description="where every result goes (C-STORE and/or STOW-RS)")
    modalities: list[str] = Field(["CR", "DX"], min_length=1, description="modalities analysed; others recorded as not triaged")
    max_associations: int = Field(8, ge=1, le=256, description="associations at once; more are rejected (transient)")
    max_connections: int = Field(
        64, ge=1, le=1024, description="TCP connections at once, associated or not (each holds a thread); more are refused"
    )
    request_timeout_s: float = Field(
        10.0, gt=0, le=600, description="a connection that has not sent its association request by then is closed"
    )
    max_pdu: int = Field(65536, ge=4096, le=2**24, description="largest PDU accepted, bytes")
    max_spool_mb: float = Field(10240, gt=0, description="spool size above which new associations are refused")
    max_attempts: int = Field(3, ge=1, le=100, description="starts of one film's analysis before it is recorded as failed")
    retry_s: float = Field(2.0, gt=0, le=3600, description="first wait before re-sending to a destination that failed; doubles")
    max_backoff_s: float = Field(300.0, gt=0, le=86400, description="longest wait between re-sends")
    keep_files: bool = Field(False, description="keep received files and results after every destination has them")
    network_timeout_s: float = Field(60.0, gt=0, le=3600, description="DIMSE/network timeout of an association")
    lungs: Path | None = Field(None, description="lung-field model (default: the bundle's own, else the shipped one)")
    threads: int | None = Field(None, ge=1, description="ONNX Runtime threads")

    @field_validator("ae_title")
    @classmethod
    def _own_title(cls, v: str) -> str:
        return check_ae_title(v)

    @field_validator("allow_aet")
    @classmethod
    def _titles(cls, v: list[str]) -> list[str]:
        return [check_ae_title(t) for t in v]

    @field_validator("modalities")
    @classmethod
    def _modalities(cls, v: list[str]) -> list[str]:
        return [m.strip().upper() for m in v]


def parse_dest(text: str) -> CStoreDestination:
    """``AET@HOST:PORT`` (``--dest``) as a C-STORE destination; one-line :class:`PtxsegError` otherwise."""
    m = re.fullmatch(r"(?P<aet>[^@]+)@(?P<host>\[[^\]]+\]|[^:]+):(?P<port>\d{1,5})", text.strip())
    if not m:
        raise PtxsegError("--dest", f"expected AET@HOST:PORT, got {text!r}")
    try:
        return CStoreDestination(ae_title=m["aet"], host=m["host"].strip("[]"), port=int(m["port"]))
    except ValueError as exc:
        raise PtxsegError("--dest", f"{text!r}: {str(exc).splitlines()[-1].strip()}") from None
