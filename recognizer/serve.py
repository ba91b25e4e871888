"""``recognizer serve``: a local HTTP server for trained models (Starlette on uvicorn).

    recognizer serve --checkpoint speech.ckpt --checkpoint ink.ckpt      # http://127.0.0.1:8000

- ``GET /health``: ``{"status": "ok", "models": [{"modality", "checkpoint", "alphabet"}, ...],
  "in_progress": <requests being read, waiting or transcribed>}``.
- ``POST /transcribe``: one file as multipart form data (field ``file``: audio for the speech model,
  IAM-OnDB XML, InkML or ink JSON for the handwriting model; the file name's suffix says which) ->
  the JSON object ``recognizer-transcribe --output`` writes for it. Query parameters: ``decoder``
  (``greedy`` or ``beam``), ``beam_size``, ``nbest``, ``timestamps`` (``true``/``false``). A bad
  upload is a 4xx with ``{"error": "<one line>"}``: 400 unreadable or unusable input or parameters,
  413 over ``--max-upload-mb``, ``--max-seconds`` of audio or ``--max-points`` of ink, 415 a kind of file no loaded model reads
  (or audio whose header does not give its length), 503 when ``--max-waiting`` requests beyond one per
  model are already in progress (``Retry-After`` says when to try again). The server stays up.

It binds to 127.0.0.1 unless told otherwise: it runs models on whatever it is sent. LM decoding is
not offered to requests (its files would be paths on the server). Each model transcribes one request
at a time (PyTorch uses every core for one; an ONNX model one core per batch, and a long input's
segments side by side); requests wait their turn in arrival order.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .artifacts import one_line
from .transcribe import Recognizer, load
from .waveform import audio_seconds

DEFAULT_HOST = "127.0.0.1"
#: served on one of these, the server answers only requests addressed to it by one of them
LOCAL_HOSTS = ("127.0.0.1", "localhost")
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 50.0
#: the longest audio a request may send: 10 minutes, a few seconds of one core
DEFAULT_MAX_SECONDS = 600.0
#: the most pen points an ink may have: a page of handwriting is a few ten thousand
DEFAULT_MAX_POINTS = 200_000
#: requests that may wait for a busy model; more are answered 503 at once (each holds its upload)
DEFAULT_MAX_WAITING = 128
RETRY_AFTER_S = 1
#: what a multipart form adds to the file it carries (boundaries, part headers), at most
FORM_OVERHEAD = 2**16
#: decoders a request may ask for, and their options it may set (with the type the value must have)
REQUEST_DECODERS = ("greedy", "beam")
REQUEST_OPTIONS = {"beam_size": int, "nbest": int}
#: the widest beam a request may ask for (a beam's tensors grow with it)
MAX_BEAM = 64
#: what a request's ``timestamps`` may say
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no")


class RequestError(ValueError):
    """A request the server refuses: ``status`` is its HTTP status, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Models:
    """The loaded models by modality, each behind a lock (one transcription at a time per model)."""

    def __init__(
        self,
        recognizers: dict[str, Recognizer],
        checkpoints: dict[str, str],
        max_seconds: float = DEFAULT_MAX_SECONDS,
        max_points: int = DEFAULT_MAX_POINTS,
    ) -> None:
        if not max_seconds > 0 or max_points < 1:
            raise ValueError(f"max_seconds and max_points must be positive, got {max_seconds} and {max_points}")
        self.recognizers, self.checkpoints = recognizers, checkpoints
        self.max_seconds, self.max_points = max_seconds, max_points
        self.locks = {modality: threading.Lock() for modality in recognizers}

    @classmethod
    def load(cls, checkpoints: Sequence[str], device: str | None = None, **limits: Any) -> Models:
        """The models of these checkpoints (one per modality); ``limits``: ``max_seconds``, ``max_points``."""
        recognizers: dict[str, Recognizer] = {}
        paths: dict[str, str] = {}
        for checkpoint in checkpoints:
            recognizer = load(checkpoint, device)
            if recognizer.modality in recognizers:
                raise ValueError(
                    f"{checkpoint}: a second {recognizer.modality} model (the first: {paths[recognizer.modality]})"
                )
            recognizers[recognizer.modality], paths[recognizer.modality] = recognizer, str(checkpoint)
        if not recognizers:
            raise ValueError("recognizer serve needs at least one --checkpoint")
        return cls(recognizers, paths, **limits)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "models": [
                {"modality": m, "checkpoint": Path(self.checkpoints[m]).name, "alphabet": r.tokenizer.alphabet}
                for m, r in self.recognizers.items()
            ],
        }

    def for_file(self, name: str) -> str:
        """The modality of the model that reads a file of this name (by its suffix)."""
        suffix = Path(name).suffix.lower()
        for modality, recognizer in self.recognizers.items():
            if suffix in recognizer.frontend.suffixes:
                return modality
        readable = sorted({s for r in self.recognizers.values() for s in r.frontend.suffixes})
        raise RequestError(
            415, f"{name}: no loaded model reads {suffix or 'files without a suffix'}; they read {', '.join(readable)}"
        )

    def transcribe(self, name: str, data: bytes, query: dict[str, str]) -> dict[str, Any]:
        """One uploaded file's transcript (``recognizer-transcribe``'s JSON object)."""
        modality = self.for_file(name)
        options, timestamps = request_options(query)
        suffix = Path(name).suffix.lower()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"upload{suffix}"
            path.write_bytes(data)
            with self.locks[modality]:
                try:
                    source = self._admit(path, name, modality)
                    (transcript,) = self.recognizers[modality].transcribe([source], options, timestamps=timestamps)
                except RequestError:
                    raise
                except (ValueError, OSError) as error:
                    message = one_line(str(error).replace(str(path), name))
                    raise RequestError(400, message) from None
        transcript.source = name
        return transcript.to_dict()

    def _admit(self, path: Path, name: str, modality: str) -> Any:
        """The upload to transcribe, once it is known to be within the limits: audio over ``max_seconds``
        is a 413 before it is decoded; audio whose header does not say how long it is a 415 (decoding it
        to find out is what the limit is there to spare). Ink over ``max_points`` is a 413 before its
        features are computed; it is read once, and the ink read is what is transcribed."""
        if modality == "ink":
            from .ink.formats import load_ink

            ink = load_ink(path)
            if ink.num_points > self.max_points:
                raise RequestError(
                    413, f"{name}: {ink.num_points} points of ink, over the server's limit of {self.max_points}"
                )
            return ink
        seconds = audio_seconds(path)
        if seconds is None:
            raise RequestError(
                415, f"{name}: {path.suffix} audio tells its length only once decoded; send WAV, FLAC, OGG or MP3"
            )
        if seconds > self.max_seconds:
            raise RequestError(
                413, f"{name}: {seconds:.0f} s of audio, over the server's limit of {self.max_seconds:g} s"
            )
        return path


def request_options(query: dict[str, str]) -> tuple[Any, bool]:
    """A request's decoding options and whether it asks for timestamps; a bad one is a 400."""
    from .decoding import DecodingOptions

    unknown = sorted(set(query) - {"decoder", "timestamps", *REQUEST_OPTIONS})
    if unknown:
        raise RequestError(
            400, f"unknown parameter(s) {', '.join(unknown)}; known: decoder, timestamps, {', '.join(REQUEST_OPTIONS)}"
        )
    decoder = query.get("decoder", "greedy")
    if decoder not in REQUEST_DECODERS:
        raise RequestError(400, f"decoder {decoder!r}: a request may use {', '.join(REQUEST_DECODERS)}")
    timestamps = query.get("timestamps", "false").lower()
    if timestamps not in TRUE + FALSE:
        raise RequestError(400, f"timestamps {timestamps!r}: expected true or false")
    options: dict[str, Any] = {}
    for name, kind in REQUEST_OPTIONS.items():
        if name in query:
            try:
                options[name] = kind(query[name])
            except ValueError:
                raise RequestError(400, f"{name} {query[name]!r}: expected an integer") from None
    too_wide = [name for name, value in options.items() if value > MAX_BEAM]
    if too_wide:
        raise RequestError(400, f"{', '.join(too_wide)}: at most {MAX_BEAM}")
    try:
        return DecodingOptions(decoder, **options), timestamps in TRUE
    except (TypeError, ValueError) as error:
        raise RequestError(400, one_line(error)) from None


def create_app(
    models: Models,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    hosts: Sequence[str] | None = None,
    max_waiting: int = DEFAULT_MAX_WAITING,
) -> Any:
    """The Starlette application (see the module docstring); ``hosts``: the only Host headers it
    answers (a page elsewhere cannot reach a local server through DNS rebinding), None: any;
    ``max_waiting``: requests taken in beyond one per model, the rest answered 503 before their upload
    is read.

    A request waits for its model in the event loop (not in a worker thread), and reads its upload into
    memory only when its turn has come: waiting requests hold a socket and a spooled file each."""
    import anyio
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    if max_waiting < 0:
        raise ValueError(f"max_waiting must be >= 0, got {max_waiting}")
    limit = int(max_upload_mb * 2**20)
    page = (Path(__file__).parent / "web" / "index.html").read_text(encoding="utf-8")
    taken_in = 0  # requests being read, waiting or transcribed (changed only in the event loop)
    capacity = max_waiting + len(models.recognizers)
    turns: dict[str, Any] = {}  # an anyio.Lock per model, made in the event loop

    async def _transcribe_form(form: Any, request: Request) -> dict[str, Any]:
        upload = form.get("file")
        if upload is None or isinstance(upload, str) or not upload.filename:
            raise RequestError(400, "no file: send it in a multipart field named 'file', with its file name")
        name = os.path.basename(upload.filename)
        modality = models.for_file(name)
        async with turns.setdefault(modality, anyio.Lock()):
            data = await upload.read(limit + 1)
            if len(data) > limit:
                raise RequestError(413, f"{upload.filename}: over the server's limit of {max_upload_mb:g} MB")
            return await run_in_threadpool(models.transcribe, name, data, dict(request.query_params))

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({**models.health(), "in_progress": taken_in})

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    async def _bounded_body(request: Request) -> bytes:
        """The request's body, read no further than the limit (a chunked upload has no length to check)."""
        too_big = RequestError(413, f"the upload is over the server's limit of {max_upload_mb:g} MB")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit + FORM_OVERHEAD:
            raise too_big
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit + FORM_OVERHEAD:
                raise too_big
        return bytes(body)

    async def _form(request: Request) -> Any:
        """The multipart form, parsed from a body read no further than the limit."""
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise RequestError(400, "send the file as multipart/form-data, in a field named 'file'")
        body = await _bounded_body(request)

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            return await Request(request.scope, replay).form(max_files=1, max_fields=8)
        except Exception as error:  # the multipart parser's errors: a malformed body
            raise RequestError(400, f"a malformed form: {' '.join(str(error).split())}") from None
        finally:
            body = b""  # the form holds the upload now (spooled to disk past 1 MB)

    async def transcribe(request: Request) -> JSONResponse:
        nonlocal taken_in
        try:
            if taken_in >= capacity:
                raise RequestError(503, f"busy: {taken_in} requests in progress; try again")
            taken_in += 1
            try:
                form = await _form(request)
                try:
                    return JSONResponse(await _transcribe_form(form, request))
                finally:
                    await form.close()  # its spooled upload
            finally:
                taken_in -= 1
        except RequestError as error:
            headers = {"Retry-After": str(RETRY_AFTER_S)} if error.status == 503 else None
            return JSONResponse({"error": str(error)}, status_code=error.status, headers=headers)

    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    return Starlette(
        routes=[
            Route("/", index),
            Route("/health", health),
            Route("/transcribe", transcribe, methods=["POST"]),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))] if hosts else [],
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recognizer serve", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", action="append", required=True, help="a model to serve (one per modality; repeat)"
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help="largest upload accepted")
    parser.add_argument(
        "--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, help="longest audio accepted (seconds)"
    )
    parser.add_argument("--max-points", type=int, default=DEFAULT_MAX_POINTS, help="most pen points in an ink")
    parser.add_argument(
        "--max-waiting",
        type=int,
        default=DEFAULT_MAX_WAITING,
        help="requests taken in beyond one per model (503 after)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``recognizer serve``: load the models, then serve until interrupted."""
    import uvicorn

    args = build_parser().parse_args(argv)
    models = Models.load(args.checkpoint, args.device, max_seconds=args.max_seconds, max_points=args.max_points)
    local = args.host in LOCAL_HOSTS
    app = create_app(models, args.max_upload_mb, LOCAL_HOSTS if local else None, args.max_waiting)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
