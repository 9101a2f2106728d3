"""The DICOM node's parts without a network: settings and --dest parsing, the durable queue's bookkeeping, who
is refused at association (including non-loopback callers, which the loopback-only tests cannot be), the spool."""

from __future__ import annotations

import pytest

from ptxseg.cli import main
from ptxseg.errors import PtxsegError
from ptxseg.io.settings import read_settings
from ptxseg.node.config import NodeSettings, parse_dest
from ptxseg.node.queue import NodeQueue
from ptxseg.node.scp import REJECT_CALLER, REJECT_FULL, REJECT_PEER, StoreSCP
from ptxseg.node.spool import Spool, instance_key


def test_dest_and_settings_are_checked_in_one_line(tmp_path, capsys):
    d = parse_dest("PACS_AI@10.1.2.3:104")
    assert (d.ae_title, d.host, d.port, d.name) == ("PACS_AI", "10.1.2.3", 104, "PACS_AI@10.1.2.3:104")
    assert parse_dest("X@[::1]:11112").host == "::1"
    for bad in ("PACS:104", "A@host", "A@host:99999", "A_TITLE_FAR_TOO_LONG@h:104", "BAD\\AET@h:104"):
        with pytest.raises(PtxsegError, match="--dest"):
            parse_dest(bad)
    (tmp_path / "node.yaml").write_text("ae_title: 'WAY-TOO-LONG-TITLE!'\nportt: 1\ndestinations: [{kind: stow, url: ftp://x}]\n")
    with pytest.raises(PtxsegError) as err:
        read_settings(tmp_path / "node.yaml", NodeSettings, "node settings")
    assert "ae_title" in err.value.reason and "portt: unknown key" in err.value.reason and "http(s) URL" in err.value.reason
    assert main(["listen", "default", "--dest", "nowhere"]) == 2
    assert main(["listen", "default", "--stow", "not-a-url"]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 2 and "--dest" in lines[0] and "http(s) URL" in lines[1]


def test_the_queue_counts_starts_and_keeps_each_delivery(tmp_path):
    q = NodeQueue(tmp_path)
    assert q.receive("k1", "MOD") and not q.receive("k1", "MOD")  # the same instance twice: one row
    assert q.receive("k2", "MOD")
    assert q.next_to_analyse() == ("k1", 1)
    assert NodeQueue(tmp_path).next_to_analyse() == ("k1", 2)  # a crash mid-analysis: the next start counts 2
    q.finish("k1", "analysed", destinations=["A@h:1", "https://pacs/dicom-web"])
    assert q.next_to_analyse() == ("k2", 1)
    q.finish("k2", "not-triaged", "modality CT")
    assert q.next_to_analyse() is None
    due = q.due()
    assert [(k, o) for k, d, o, _ in due if d == "A@h:1"] == [("k1", "seg"), ("k1", "sc"), ("k1", "sr")]
    q.delivered("k1", "A@h:1", "seg")
    q.retry_later("k1", "A@h:1", "sc", "A@h:1 did not answer", 3600)
    assert ("k1", "A@h:1", "sc", 0) not in q.due() and not q.settled("k1")
    for key, dest, obj, _ in q.due():
        q.delivered(key, dest, obj)
    q.retry_later("k1", "A@h:1", "sc", "x", -1)  # due again
    q.delivered("k1", "A@h:1", "sc")
    assert q.settled("k1") and q.counts()["instances"] == {"analysed": 1, "not-triaged": 1}


def test_association_refusals(tmp_path):
    def scp(**kw) -> StoreSCP:
        settings = NodeSettings(spool=tmp_path / "spool", **kw)
        return StoreSCP(settings, Spool(settings.spool), NodeQueue(settings.spool))

    open_node = scp()
    assert open_node.refusal("ANY", "127.0.0.1") is None and open_node.refusal("ANY", "::1") is None
    assert open_node.refusal("ANY", "10.0.0.7")[0] == REJECT_PEER  # no allow list: loopback only
    listed = scp(allow_aet=["MODALITY1"], allow_hosts=["10.0.0.7"])
    assert listed.refusal("MODALITY1", "10.0.0.7") is None
    assert listed.refusal("MODALITY2", "10.0.0.7")[0] == REJECT_CALLER
    assert listed.refusal("MODALITY1", "10.0.0.8")[0] == REJECT_PEER
    full = scp(max_spool_mb=0.0001)
    assert full.refusal("ANY", "127.0.0.1")[0] == REJECT_FULL


def test_spool_names_are_hashes_and_leftovers_are_swept(tmp_path):
    spool = Spool(tmp_path)
    key = instance_key("../../etc/passwd")
    assert len(key) == 32 and set(key) <= set("0123456789abcdef")
    spool.store_source(key, b"x" * 100)
    (tmp_path / "results" / ".abc.partial").mkdir()
    again = Spool(tmp_path)
    assert again.bytes >= 100 and not (tmp_path / "results" / ".abc.partial").exists()
    assert again.orphans(lambda k: False) == [key] and again.orphans(lambda k: True) == []
    again.discard(key)
    assert not again.source(key).exists()
