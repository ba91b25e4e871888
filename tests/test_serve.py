"""recognizer serve: the REST API and the page, through Starlette's test client."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_wav

from recognizer.audio import AudioFrontend
from recognizer.ink.frontend import InkFrontend
from recognizer.model import Model
from recognizer.serve import Models, create_app

ALPHABET = " ABCDEFGHIJKLMNOPQRSTUVWXYZ'"
SMALL = {"class_path": "recognizer.encoders.BLSTMEncoder", "init_args": {"hidden_size": 24, "num_layers": 2}}


@pytest.fixture(scope="module")
def an4_files(shared_data) -> list[Path]:
    return sorted((shared_data("an4") / "wav" / "an4_clstk").rglob("*.wav"))[:3]


@pytest.fixture(scope="module")
def served(an4_files, tmp_path_factory):
    """A speech and a handwriting model (small, untrained) behind the app, and the models themselves."""
    from starlette.testclient import TestClient

    folder = tmp_path_factory.mktemp("serve")
    torch.manual_seed(0)
    speech = Model({"alphabet": ALPHABET}, AudioFrontend().config(), SMALL)
    features = torch.cat([speech.frontend.features(speech.frontend.load(f)) for f in an4_files])
    speech.encoder.normalizer.set_statistics(features.mean(0), features.std(0))
    ink = Model({"alphabet": "abc "}, InkFrontend().config(), SMALL)
    paths = [speech.save(folder / "speech.pt"), ink.save(folder / "ink.pt")]
    models = Models.load([str(p) for p in paths], "cpu")
    # one event loop for every request, as under uvicorn (the app's per-model locks belong to it)
    with TestClient(create_app(models, max_upload_mb=1.0)) as client:
        yield client, models, paths


def post(client, path: Path | None = None, name: str | None = None, data: bytes | None = None, **query):
    content = path.read_bytes() if data is None and path is not None else data
    files = {"file": (name or (path.name if path else "x"), content or b"")}
    return client.post("/transcribe", files=files, params=query)


def test_health_and_page(served):
    client, _, paths = served
    health = client.get("/health").json()
    assert health["status"] == "ok"
    # file names only: a page elsewhere learns nothing of the server's folders
    assert [(m["modality"], m["checkpoint"]) for m in health["models"]] == [
        ("audio", paths[0].name),
        ("ink", paths[1].name),
    ]
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and "/transcribe" in page.text


def test_transcribe_returns_what_the_command_writes(served, an4_files):
    client, models, _ = served
    response = post(client, an4_files[0], timestamps="true", decoder="beam", beam_size="4", nbest="2")
    assert response.status_code == 200, response.text
    result = response.json()
    expected = models.recognizers["audio"].transcribe([an4_files[0]], "beam", beam_size=4, nbest=2, timestamps=True)[0]
    assert result == {**expected.to_dict(), "source": an4_files[0].name}
    assert result["words"] and result["unit"] == "seconds" and len(result["nbest"]) == 2


def test_ink_documents_go_to_the_handwriting_model(served, tmp_path):
    client, models, _ = served
    strokes = [[[x, 10 * np.sin(x / 5), x / 100] for x in range(0, 60, 2)], [[70, 0, 0.7], [75, 20, 0.8], [80, 0, 0.9]]]
    document = json.dumps({"strokes": strokes}).encode()
    response = post(client, name="canvas.json", data=document, timestamps="true")
    assert response.status_code == 200, response.text
    (tmp_path / "canvas.json").write_bytes(document)
    expected = models.recognizers["ink"].transcribe([tmp_path / "canvas.json"], timestamps=True)[0]
    assert response.json()["text"] == expected.text and response.json()["source"] == "canvas.json"


@pytest.mark.parametrize(
    "name, data, query, status, message",
    [
        ("empty.wav", None, {}, 400, "empty.wav: the audio is empty"),
        ("garbage.wav", b"RIFF\x00\x01garbage", {}, 400, "garbage.wav: cannot read audio"),
        ("notes.txt", b"hello", {}, 415, "notes.txt: no loaded model reads .txt"),
        ("broken.json", b"{not json", {}, 400, "broken.json: invalid JSON"),
        ("big.wav", b"\x00" * (2**20 + 10), {}, 413, "over the server's limit of 1 MB"),
        ("ok.wav", None, {"decoder": "lm"}, 400, "decoder 'lm': a request may use greedy, beam"),
        ("ok.wav", None, {"beam_size": "x"}, 400, "beam_size 'x': expected an integer"),
        ("ok.wav", None, {"decoder": "beam", "beam_size": "0"}, 400, "beam_size must be at least 1"),
        ("ok.wav", None, {"nbest": "2"}, 400, "not an option of decoder='greedy'"),
        ("ok.wav", None, {"lm": "/etc/passwd"}, 400, "unknown parameter(s) lm"),
        ("ok.wav", None, {"decoder": "beam", "beam_size": "100000000"}, 400, "beam_size: at most 64"),
        ("ok.wav", None, {"timestamps": "maybe"}, 400, "timestamps 'maybe'"),
    ],
)
def test_bad_uploads_get_a_4xx_naming_the_problem(served, an4_files, tmp_path, name, data, query, status, message):
    client, _, _ = served
    if data is None:
        data = an4_files[0].read_bytes() if name == "ok.wav" else write_wav(tmp_path / name, np.zeros(0)).read_bytes()
    response = post(client, name=name, data=data, **query)
    assert response.status_code == status and message in response.json()["error"], response.text
    assert "\n" not in response.json()["error"] and str(tmp_path) not in response.json()["error"]
    assert client.get("/health").status_code == 200  # still up


def test_requests_without_a_file_are_refused(served):
    client, _, _ = served
    assert client.post("/transcribe", content=b"raw bytes").status_code == 400
    response = client.post("/transcribe", data={"other": "field"}, files={"x": ("a.wav", b"")})
    assert response.status_code == 400 and "field named 'file'" in response.json()["error"]


def test_concurrent_requests_all_complete(served, an4_files):
    client, _, _ = served
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda i: post(client, an4_files[i % len(an4_files)]), range(24)))
    assert all(r.status_code == 200 for r in responses)
    texts = {r.json()["source"]: r.json()["text"] for r in responses}
    assert len(texts) == len(an4_files)


def test_a_local_server_answers_only_requests_addressed_to_it(served):
    from starlette.testclient import TestClient

    from recognizer.serve import LOCAL_HOSTS

    _, models, _ = served
    local = create_app(models, hosts=LOCAL_HOSTS)
    assert TestClient(local, base_url="http://127.0.0.1:8000").get("/health").status_code == 200
    assert TestClient(local, base_url="http://attacker.example").get("/health").status_code == 400


def test_limits_on_length_waiting_and_chunked_uploads(served, an4_files):
    """Audio over --max-seconds is a 413 before the model runs; with --max-waiting requests beyond one per
    model in progress, the next is a 503 with Retry-After, before its upload is read; a chunked upload
    (no Content-Length) is cut off at the size limit rather than read whole."""
    from starlette.testclient import TestClient

    _, models, _ = served
    strict = Models(models.recognizers, models.checkpoints, max_seconds=0.5)
    client = TestClient(create_app(strict, max_upload_mb=0.1))
    response = post(client, an4_files[0])
    assert response.status_code == 413 and "s of audio, over the server's limit of 0.5 s" in response.json()["error"]
    many = json.dumps({"strokes": [[[i, i % 7] for i in range(200)]] * 10}).encode()  # 2,000 points
    small = Models(models.recognizers, models.checkpoints, max_points=1000)
    response = post(TestClient(create_app(small)), name="page.json", data=many)
    assert (
        response.status_code == 413
        and "page.json: 2000 points of ink, over the server's limit of 1000" in response.text
    )
    response = post(client, name="voice.m4a", data=b"\x00" * 100)
    assert response.status_code == 415 and "voice.m4a: .m4a audio tells its length only once decoded" in response.text

    client = TestClient(create_app(models, max_waiting=1))  # two models: three requests at a time
    with client, ThreadPoolExecutor(max_workers=3) as pool:
        with models.locks["audio"]:  # the speech model is busy: requests pile up
            pending = [pool.submit(post, client, an4_files[0]) for _ in range(3)]
            deadline = time.monotonic() + 30
            while client.get("/health").json()["in_progress"] < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            response = post(client, an4_files[0])
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "busy: 3 requests in progress" in response.json()["error"]
        assert [p.result().status_code for p in pending] == [200, 200, 200]  # all served, in turn
    assert client.get("/health").json()["in_progress"] == 0

    # a chunked upload, straight through ASGI: the test client would read the whole body before sending
    received, answer = [], []

    async def receive() -> dict:
        received.append(1)
        if len(received) == 1:
            return {
                "type": "http.request",
                "body": b'--xyz\r\nContent-Disposition: form-data; name="file"',
                "more_body": True,
            }
        return {"type": "http.request", "body": b"\x00" * 2**16, "more_body": len(received) < 1000}  # 64 MB

    async def send(message: dict) -> None:
        answer.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/transcribe",
        "headers": [(b"content-type", b"multipart/form-data; boundary=xyz"), (b"transfer-encoding", b"chunked")],
        "query_string": b"",
    }
    asyncio.run(create_app(models, max_upload_mb=0.5)(scope, receive, send))
    assert answer[0]["status"] == 413 and b"over the server's limit of 0.5 MB" in answer[1]["body"]
    assert len(received) < 20  # 0.5 MB and the form's overhead: read no further
