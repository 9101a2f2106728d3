"""Where the results go: a DICOM peer by C-STORE (pynetdicom, optionally over TLS) or a DICOMweb service by
STOW-RS (dicomweb-client). Each :meth:`send` either returns (the destination holds the object) or raises
:class:`DeliveryError` with a one-line reason; the caller retries later."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import pydicom
from pynetdicom import AE

from ptxseg.errors import one_line
from ptxseg.io.settings import read_credentials
from ptxseg.node.config import ENV_PASSWORD, ENV_USER, CStoreDestination, StowDestination

#: the SOP classes of the results (DICOM SEG, Secondary Capture, Comprehensive 3D SR)
RESULT_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.88.34")
_TRANSFER = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]  # explicit and implicit VR little endian
#: C-STORE statuses meaning "stored" (success, and the warnings: coerced, elements discarded, not matching SOP class)
STORED = (0x0000, 0xB000, 0xB006, 0xB007)
#: ``on_sent(index, None)`` after a file was stored, ``on_sent(index, error)`` when it was not
OnSent = Callable[[int, "DeliveryError | None"], None]


class DeliveryError(Exception):
    """A destination did not take an object; the reason is one line."""


class CStoreSender:
    """Sends result files to ``dest`` by C-STORE as ``ae_title``, one association per :meth:`send_all` call."""

    def __init__(self, dest: CStoreDestination, ae_title: str, timeout_s: float = 60.0) -> None:
        self.dest = dest
        self.ae = AE(ae_title=ae_title)
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = timeout_s
        for uid in RESULT_CLASSES:
            self.ae.add_requested_context(uid, _TRANSFER)
        self.tls = None
        if dest.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(dest.tls.ca_file))
            if dest.tls.cert_file is not None:
                context.load_cert_chain(str(dest.tls.cert_file), str(dest.tls.key_file) if dest.tls.key_file else None)
            self.tls = (context, dest.tls.server_name or dest.host)

    def send_all(self, paths: list[Path], on_sent: OnSent) -> None:
        """Send ``paths`` in one association, calling ``on_sent(i, None)`` after the destination stored file ``i``
        and ``on_sent(i, error)`` when it did not. Raises :class:`DeliveryError` when no association could be made
        (the destination is down or refuses this node)."""
        d = self.dest
        kwargs = {"ae_title": d.ae_title} | ({"tls_args": self.tls} if self.tls else {})
        assoc = self.ae.associate(d.host, d.port, **kwargs)
        if not assoc.is_established:
            why = "rejected the association" if assoc.is_rejected else "did not answer"
            raise DeliveryError(f"{d.name} {why}")
        try:
            for i, path in enumerate(paths):
                if not assoc.is_established:  # aborted mid-way: the rest wait for the next try
                    on_sent(i, DeliveryError(f"{d.name} aborted the association"))
                    continue
                status = assoc.send_c_store(pydicom.dcmread(path))
                code = getattr(status, "Status", None)
                on_sent(i, None if code in STORED else DeliveryError(self._status(code)))
        finally:
            if assoc.is_established:
                assoc.release()

    def _status(self, code) -> str:
        return f"{self.dest.name} answered C-STORE status {'none' if code is None else f'0x{code:04X}'}"


class StowSender:
    """Sends result files to ``dest`` by STOW-RS (``POST {url}/studies``, multipart/related application/dicom)."""

    def __init__(self, dest: StowDestination) -> None:
        from dicomweb_client.api import DICOMwebClient
        from dicomweb_client.session_utils import create_session, create_session_from_user_pass

        self.dest = dest
        creds = read_credentials(dest.credentials_file, ENV_USER, ENV_PASSWORD)
        session = create_session_from_user_pass(*creds) if creds else create_session()
        if dest.ca_file is not None:
            session.verify = str(dest.ca_file)
        self.client = DICOMwebClient(url=dest.url, session=session)

    def send_all(self, paths: list[Path], on_sent: OnSent) -> None:
        """Send ``paths`` in one request, then ``on_sent(i, None | error)`` for each file. Raises
        :class:`DeliveryError` when the request failed as a whole."""
        import requests

        datasets = [pydicom.dcmread(p) for p in paths]
        try:
            response = self.client.store_instances(datasets)
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else "?"
            raise DeliveryError(f"{self.dest.url} answered HTTP {code}") from None
        except requests.RequestException as exc:
            raise DeliveryError(f"{self.dest.url} unreachable ({type(exc).__name__})") from None
        failed = {str(item.get("ReferencedSOPInstanceUID", "")) for item in response.get("FailedSOPSequence", [])}
        for i, ds in enumerate(datasets):
            on_sent(i, DeliveryError(f"{self.dest.url} refused the object") if str(ds.SOPInstanceUID) in failed else None)


def sender(dest: CStoreDestination | StowDestination, ae_title: str, timeout_s: float = 60.0):
    """The sender of one destination."""
    return CStoreSender(dest, ae_title, timeout_s) if isinstance(dest, CStoreDestination) else StowSender(dest)


def reason(exc: BaseException) -> str:
    """A delivery failure as one short line (never a header value: only the destination and the code)."""
    return one_line(str(exc) if isinstance(exc, DeliveryError) else type(exc).__name__, 200)
