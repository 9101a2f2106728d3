"""``ptxseg serve``: the clinical pipeline over HTTP with a web viewer (``docs/serve.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptxseg.cli import app
from ptxseg.errors import PtxsegError
from ptxseg.limits import SERVICE_MAX_PIXELS, SERVICE_MAX_REQUEST_PIXELS


@app.command("serve")
def serve_command(
    model: Annotated[
        Path,
        typer.Argument(
            help="Pneumothorax model: `default` (shipped, real SIIM films), a bundle (fast path), run directory or ensemble file."
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on (loopback unless told otherwise).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Inference threads sharing the loaded models.")] = 1,
    queue: Annotated[int, typer.Option(min=1, help="Radiographs admitted at once (waiting + running); more get 503.")] = 8,
    timeout: Annotated[float, typer.Option(help="Seconds a request waits for its answer before 504.")] = 60.0,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest request body in MB; larger gets 413.")] = 50.0,
    store: Annotated[Path, typer.Option(help="The service's own folder: results, spooled uploads.")] = Path("ptxseg-serve"),
    keep_results: Annotated[int, typer.Option(min=1, help="Results kept; the oldest beyond are evicted.")] = 1000,
    keep_hours: Annotated[float, typer.Option(help="Hours a result is kept.")] = 24.0,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="File holding a bearer token required on every endpoint but /health.")
    ] = None,
    lungs: Annotated[Path | None, typer.Option("--lungs", help="Lung-field model (default: MODEL/lungs or the shipped one).")] = None,
    no_lungs: Annotated[bool, typer.Option("--no-lungs", help="No lung fields (sides and ratios stay null).")] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="ONNX Runtime threads per inference (default: one per core).")] = None,
    seg: Annotated[bool, typer.Option("--seg/--no-seg", help="Write a DICOM SEG for DICOM uploads.")] = True,
    head_timeout: Annotated[
        float, typer.Option(help="Seconds a connection has to send a complete request head (idle keep-alive included).")
    ] = 10.0,
    body_timeout: Annotated[float, typer.Option(help="Seconds a request has to send its whole body.")] = 120.0,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Largest radiograph in pixels, from its header (4,300² detectors are 18.5 M); more gets 413.")
    ] = SERVICE_MAX_PIXELS,
    max_request_pixels: Annotated[
        int, typer.Option(min=1, help="Pixels of all the files of one request together.")
    ] = SERVICE_MAX_REQUEST_PIXELS,
) -> None:
    """Serve the pneumothorax pipeline over HTTP (POST /v1/predict) with a web viewer at / — not a medical device."""
    from ptxseg.serve import ServeOptions, run_server

    if no_lungs and lungs is not None:
        raise PtxsegError("--lungs", "give --lungs or --no-lungs, not both")
    options = ServeOptions(
        model=model,
        lungs=False if no_lungs else lungs,
        host=host,
        port=port,
        workers=workers,
        queue=queue,
        timeout_s=timeout,
        max_upload_mb=max_upload_mb,
        store=store,
        keep_results=keep_results,
        keep_hours=keep_hours,
        token_file=token_file,
        threads=threads,
        seg=seg,
        head_timeout_s=head_timeout,
        body_timeout_s=body_timeout,
        max_pixels=max_pixels,
        max_request_pixels=max_request_pixels,
    )
    run_server(options)
