"""The page of ``recognizer serve`` in a real browser: headless Chromium (Debian's package) driven by
Playwright, against a real server started with the command.

Small models first learn one real IAM-OnDB word and one real AN4 utterance by heart, so that what the
page shows can be checked against the truth: the test writes the word on the canvas with the mouse,
stroke by stroke as a person would, and uploads the utterance through the file input.

Run as a script, it takes the page's screenshot for the README with trained models:
``python tests/test_browser.py --checkpoint speech.ckpt --checkpoint ink.ckpt --out docs/serve.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

#: Debian's Chromium; Playwright drives it instead of downloading a browser of its own
CHROMIUM = os.environ.get("RECOGNIZER_CHROMIUM", "/usr/bin/chromium")
#: as root in a container and with no network: no sandbox, no GPU, no background connections
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: "resolution", the first word of IAM-OnDB line a01-000u-06 ("resolution on the subject"): its first 12 strokes
WORD_LINE, WORD_STROKES, WORD = "lineStrokes/a01/a01-000/a01-000u-06.xml", 12, "resolution"
CANVAS_MARGIN = 20  # pixels left free around the word on the canvas
SMALL = {"class_path": "recognizer.encoders.BLSTMEncoder", "init_args": {"hidden_size": 64, "num_layers": 2}}
WAIT_MS = 60_000  # for a result to appear on the page
LEARNING_RATE = 1e-2


# ------------------------------------------------------------------------------------- the page, driven


def on_canvas(strokes: Sequence[np.ndarray], box: dict[str, float]) -> list[np.ndarray]:
    """The strokes' (x, y) scaled to fit a canvas's bounding ``box`` (page coordinates)."""
    points = np.concatenate([stroke[:, :2] for stroke in strokes])
    low, size = points.min(0), np.ptp(points, 0).clip(min=1)
    scale = min((box["width"] - 2 * CANVAS_MARGIN) / size[0], (box["height"] - 2 * CANVAS_MARGIN) / size[1])
    return [(stroke[:, :2] - low) * scale + CANVAS_MARGIN + [box["x"], box["y"]] for stroke in strokes]


def write_on_canvas(page: Any, strokes: Sequence[np.ndarray]) -> None:
    """Draw ``strokes`` (x, y, ...) with the mouse, scaled to fit the page's canvas, stroke by stroke,
    and wait for the result for all of them (a stroke's result may come while the next is drawn)."""
    for xy in on_canvas(strokes, page.locator("#canvas").bounding_box()):
        page.mouse.move(*xy[0])
        page.mouse.down()
        for x, y in xy[1:]:
            page.mouse.move(x, y)
        page.mouse.up()
    points = page.evaluate("() => strokes.reduce((n, stroke) => n + stroke.length, 0)")  # what the page holds
    assert points >= sum(len(stroke) for stroke in strokes if len(stroke) > 1) * 0.9  # about every point drawn
    page.wait_for_selector(f'#ink-text[data-points="{points}"]', state="attached", timeout=WAIT_MS)


def upload_audio(page: Any, path: Path) -> None:
    page.set_input_files("#audio-file", str(path))


def coloured_pixels(page: Any) -> int:
    """Pixels of the canvas painted in a word's colour (the alignment), not black ink or background."""
    return page.evaluate(
        """() => {
            const canvas = document.getElementById("canvas");
            const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            let count = 0;
            for (let i = 0; i < data.length; i += 4) {
                const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
                if (a > 200 && Math.max(r, g, b) - Math.min(r, g, b) > 100) count++;
            }
            return count;
        }"""
    )


@contextmanager
def served(checkpoints: Sequence[Path]) -> Iterator[str]:
    """``recognizer serve`` on a free local port for the block; yields its address."""
    import httpx2 as httpx  # the test extra's HTTP client

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "recognizer", "serve", "--port", str(port), "--device", "cpu"]
    for checkpoint in checkpoints:
        command += ["--checkpoint", str(checkpoint)]
    log = tempfile.TemporaryFile(mode="w+")  # not a pipe: a full pipe would stop the server
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"recognizer serve exited with {server.returncode}: {log.read()}")
            try:
                if httpx.get(address + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("recognizer serve did not answer /health within 120 s")
            time.sleep(0.2)
        yield address
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@contextmanager
def browser_page(width: int = 1100, height: int = 900) -> Iterator[Any]:
    """A page of headless Chromium, through Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


# ------------------------------------------------------------------------------------------ the test


def learn_by_heart(model: Any, raws: Sequence[Any], texts: Sequence[str], max_steps: int = 2000) -> None:
    """Train ``model`` on these inputs until greedy decoding gives exactly ``texts``."""
    import torch

    from recognizer.ctc import best_path

    torch.manual_seed(0)
    features = [model.prepare(raw) for raw in raws]
    lengths = torch.tensor([len(f) for f in features])
    x = torch.nn.utils.rnn.pad_sequence(features, batch_first=True)
    targets = [torch.tensor(model.tokenizer.encode(text)) for text in texts]
    target_lengths = torch.tensor([len(t) for t in targets])
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    model.train()
    for step in range(max_steps):
        log_probs, out_lengths = model(x, lengths)
        loss = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), torch.cat(targets), out_lengths, target_lengths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 24:  # read as the server will: in eval mode (no dropout)
            model.eval()
            with torch.no_grad():
                log_probs, out_lengths = model(x, lengths)
            paths = best_path(log_probs.numpy(), out_lengths.numpy())
            if [model.tokenizer.decode(labels) for labels, _ in paths] == list(texts):
                return
            model.train()
    pytest.fail(f"the model did not learn {texts} in {max_steps} steps")


@pytest.fixture(scope="module")
def chromium() -> None:
    """Playwright and the browser; a skip here, a failure in CI (``.ci/run`` installs both)."""
    from conftest import missing

    try:
        import playwright  # noqa: F401
    except ImportError:
        missing("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).is_file():
        missing(f"{CHROMIUM} not found: apt-get install chromium, or set RECOGNIZER_CHROMIUM to a Chromium")


@pytest.fixture(scope="module")
def models(shared_data, tmp_path_factory) -> dict[str, Any]:
    """Two small models, each knowing one real sample by heart, saved as model files."""
    import torch

    from recognizer.audio import AudioFrontend
    from recognizer.corpora import an4
    from recognizer.ink.formats import read_iam_ondb_strokes, write_json_ink
    from recognizer.ink.frontend import InkFrontend
    from recognizer.ink.ink import Ink
    from recognizer.model import Model

    folder = tmp_path_factory.mktemp("browser")
    line = folder / Path(WORD_LINE).name
    with tarfile.open(shared_data("iam-ondb") / "lineStrokes-all.tar.gz", "r|gz") as archive:
        member = next(m for m in archive if m.name == WORD_LINE)
        line.write_bytes(archive.extractfile(member).read())  # type: ignore[union-attr]
    strokes = read_iam_ondb_strokes(line).strokes[:WORD_STROKES]
    torch.manual_seed(0)  # the models' initial weights: the same run every time
    ink = Model({"alphabet": " abcdefghijklmnopqrstuvwxyz"}, InkFrontend().config(), SMALL)
    written = write_json_ink(folder / "word.json", Ink(strokes))
    raw = ink.frontend.load(written)
    # Normalized as training would: on raw pen features (two of them ~100x smaller than the others) the
    # word was learned by heart on one CPU and not in 2,000 steps on another (AVX2).
    features = ink.frontend.features(raw)
    ink.encoder.normalizer.set_statistics(features.mean(0), features.std(0))
    learn_by_heart(ink, [raw], [WORD])

    utterance = next(e for e in an4.read_split(shared_data("an4"), "train") if len(e["text"].split()) == 3)
    speech = Model({"alphabet": " ABCDEFGHIJKLMNOPQRSTUVWXYZ'"}, AudioFrontend().config(), SMALL)
    audio = speech.frontend.load(utterance["audio_filepath"])
    features = speech.frontend.features(audio)
    speech.encoder.normalizer.set_statistics(features.mean(0), features.std(0))
    learn_by_heart(speech, [audio], [utterance["text"]])
    return {
        "folder": folder,
        "checkpoints": [ink.save(folder / "ink.pt"), speech.save(folder / "speech.pt")],
        "strokes": strokes,
        "audio": Path(utterance["audio_filepath"]),
        "text": utterance["text"],
    }


def test_the_page_recognizes_a_word_written_on_the_canvas_and_an_uploaded_file(chromium, models):
    from playwright.sync_api import expect
    from torchmetrics.functional.text import char_error_rate

    from recognizer.model import Model
    from recognizer.transcribe import Recognizer

    with served(models["checkpoints"]) as address, browser_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(address)
        expect(page.locator("#models")).to_have_text("models: ink, audio")

        write_on_canvas(page, models["strokes"])
        # The page shows what the model reads in the strokes it sent. The mouse's timing is not the pen's
        # (a feature, dt), and changes with the machine's load, so that reading is close to the word
        # the model learnt, not always equal to it.
        sent = models["folder"] / "sent.json"
        sent.write_text(page.evaluate("() => JSON.stringify({ strokes })"))
        reading = Recognizer(Model.load(models["checkpoints"][0])).transcribe([sent])[0].text
        expect(page.locator("#ink-text")).to_have_text(reading, timeout=WAIT_MS)
        assert float(char_error_rate(reading, WORD)) <= 0.3, reading
        assert coloured_pixels(page) > 100

        upload_audio(page, models["audio"])
        expect(page.locator("#speech-text")).to_have_text(models["text"], timeout=WAIT_MS)
        spans = page.locator("#speech-words span")
        expect(spans).to_have_count(len(models["text"].split()))
        assert [s.split()[0] for s in spans.all_inner_texts()] == models["text"].split()

        page.set_input_files("#audio-file", {"name": "notes.wav", "mimeType": "audio/wav", "buffer": b"not audio"})
        expect(page.locator("#speech-text")).to_contain_text("notes.wav: cannot read audio", timeout=WAIT_MS)
        assert errors == []


# ------------------------------------------------------------------------------- the README's screenshot


def screenshot(checkpoints: Sequence[Path], ink_file: Path, audio_file: Path, out: Path) -> None:
    """The page with trained models: ``ink_file`` written on the canvas, ``audio_file`` uploaded."""
    from recognizer.ink.formats import load_ink

    strokes = load_ink(ink_file).strokes
    with served(checkpoints) as address, browser_page() as page:
        page.goto(address)
        page.wait_for_function("() => document.getElementById('models').textContent.startsWith('models:')")
        write_on_canvas(page, strokes)
        upload_audio(page, audio_file)
        page.wait_for_function("() => document.getElementById('speech-words').children.length", timeout=WAIT_MS)
        page.screenshot(path=str(out), full_page=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="screenshot of recognizer serve's page with trained models")
    parser.add_argument("--checkpoint", action="append", type=Path, required=True)
    parser.add_argument("--ink", type=Path, required=True, help="an ink file to write on the canvas")
    parser.add_argument("--audio", type=Path, required=True, help="an audio file to upload")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    screenshot(args.checkpoint, args.ink, args.audio, args.out)
    print(json.dumps({"screenshot": str(args.out)}))
