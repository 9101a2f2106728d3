"""PACS triage: a worker that follows an Orthanc server's change feed, analyses every new chest radiograph and
stores standard DICOM results (SEG, Secondary Capture, TID 1500 SR) and metadata back, exactly once.

``orthanc`` is the REST client (retries with bounded backoff), ``config`` the worker's settings and credentials,
``state`` the persisted position in the feed, ``results`` the derived objects of one radiograph, ``worker`` the
loop, ``worklist`` the analysed studies in triage order. Docs: ``docs/pacs.md``.
"""
