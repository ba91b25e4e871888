"""Synthetic English speech: the project's embedded default corpus, made with espeak-ng on first use.

Each utterance is 3 to 8 random words from :data:`WORDS`, spoken by one of :data:`VOICES` at a random
rate, pitch and pitch range, then padded with a little silence, mixed with coloured noise at a random
SNR and peak-normalised to a random level. Nothing is downloaded: espeak-ng comes as a shared library
with its data in the ``espeakng-loader`` wheel and is driven through ctypes.

Layout written by :func:`prepare`::

    out/wav/<split>/<split>-<index>.wav   16 kHz mono 16-bit PCM
    out/train.jsonl, dev.jsonl, test.jsonl
    out/corpus.json                       parameters; written last, so it marks a complete corpus

The corpus depends only on its parameters (seed and sizes), not on the number of worker processes.
"""

from __future__ import annotations

import ctypes
import threading
import wave
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from recognizer.corpora.generated import SPLITS as SPLITS  # the corpus's splits, for its users
from recognizer.corpora.generated import CorpusGenerator, Item, generate

SAMPLE_RATE = 16000

# (language voice, variant): variants are files in espeak-ng-data/voices/!v, checked on use because
# espeak silently ignores a variant it cannot find.
VOICES: tuple[str, ...] = (
    "en-us+m1",
    "en-us+f2",
    "en+m3",
    "en+f4",
    "en-gb-scotland+m4",
    "en-gb-x-rp+f1",
    "en-029+m2",
    "en-us-nyc+f3",
    "en-gb-x-gbclan+m7",
    "en-gb-x-gbcwmd+f5",
    "en-us+klatt4",
    "en+m6",
)

# (low, high) bounds of each utterance's uniform draws.
WORDS_PER_SENTENCE = (3, 8)
RATE_WPM = (130, 200)
PITCH = (30, 70)  # espeak's 0-100 scale, relative to the voice's own base pitch
PITCH_RANGE = (20, 80)  # espeak's 0-100 scale: 0 is monotone
SNR_DB = (15.0, 35.0)
SILENCE_S = (0.1, 0.4)  # before and, drawn separately, after the speech
PEAK = (0.3, 0.95)  # of full scale
# Noise power spectrum ~ 1/f**exponent: white, pink, brown.
NOISE_EXPONENTS = (0.0, 1.0, 2.0)

# Bump whenever the output for given parameters changes (word list, voices, draws, chunking), so
# that corpora made by an older version are regenerated rather than reused.
GENERATOR_VERSION = 1
# Fixed, not derived from the worker count: espeak keeps synthesis state between utterances (pitch
# flutter phase, Klatt filter memory) that no API call resets, so the same chunks must run in the same
# order, each in a fresh process, for the audio to be identical however many workers there are.
CHUNK_SIZE = 100

# No homophone pairs (right/write, week/weak, see/sea...): in random word order nothing could tell them apart.
WORDS: tuple[str, ...] = (
    # people and family
    "man",
    "woman",
    "child",
    "boy",
    "girl",
    "baby",
    "friend",
    "mother",
    "father",
    "sister",
    "brother",
    "family",
    "people",
    "person",
    "teacher",
    "doctor",
    "farmer",
    "driver",
    "king",
    "queen",
    # home and objects
    "house",
    "home",
    "room",
    "door",
    "window",
    "table",
    "chair",
    "bed",
    "floor",
    "wall",
    "garden",
    "kitchen",
    "book",
    "paper",
    "letter",
    "pen",
    "box",
    "bag",
    "cup",
    "glass",
    "plate",
    "bottle",
    "key",
    "clock",
    "phone",
    "picture",
    "lamp",
    "car",
    "bus",
    "train",
    "boat",
    "ship",
    "plane",
    "bike",
    "road",
    "street",
    "bridge",
    "city",
    "town",
    "village",
    "school",
    "church",
    "market",
    "shop",
    "office",
    "hospital",
    "station",
    "island",
    "country",
    "world",
    # nature
    "water",
    "fire",
    "earth",
    "air",
    "sun",
    "moon",
    "star",
    "sky",
    "cloud",
    "rain",
    "snow",
    "wind",
    "storm",
    "river",
    "lake",
    "valley",
    "ocean",
    "hill",
    "mountain",
    "forest",
    "tree",
    "flower",
    "grass",
    "leaf",
    "stone",
    "rock",
    "sand",
    "field",
    "beach",
    "wood",
    # animals
    "dog",
    "cat",
    "horse",
    "cow",
    "bird",
    "fish",
    "sheep",
    "pig",
    "mouse",
    "lion",
    "tiger",
    "bear",
    "wolf",
    "fox",
    "rabbit",
    "duck",
    "chicken",
    "snake",
    "bee",
    "whale",
    # food
    "bread",
    "milk",
    "cheese",
    "apple",
    "orange",
    "banana",
    "egg",
    "potato",
    "rice",
    "soup",
    "sugar",
    "salt",
    "tea",
    "coffee",
    "cake",
    "butter",
    "honey",
    "juice",
    "dinner",
    "breakfast",
    # body
    "head",
    "face",
    "eye",
    "ear",
    "nose",
    "mouth",
    "hand",
    "arm",
    "leg",
    "foot",
    "heart",
    "hair",
    "back",
    "finger",
    "voice",
    # time
    "day",
    "night",
    "morning",
    "evening",
    "week",
    "month",
    "year",
    "hour",
    "minute",
    "today",
    "tomorrow",
    "yesterday",
    "spring",
    "summer",
    "winter",
    "autumn",
    "time",
    "moment",
    "weekend",
    "season",
    # colours and numbers
    "red",
    "blue",
    "green",
    "yellow",
    "black",
    "white",
    "brown",
    "grey",
    "pink",
    "purple",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "twenty",
    "hundred",
    "thousand",
    "first",
    "second",
    "last",
    "half",
    "many",
    "few",
    "every",
    # adjectives
    "big",
    "small",
    "long",
    "short",
    "tall",
    "old",
    "new",
    "young",
    "good",
    "bad",
    "hot",
    "cold",
    "warm",
    "cool",
    "fast",
    "slow",
    "high",
    "low",
    "happy",
    "sad",
    "easy",
    "hard",
    "soft",
    "loud",
    "quiet",
    "dark",
    "light",
    "clean",
    "dirty",
    "empty",
    "full",
    "heavy",
    "strong",
    "gentle",
    "rich",
    "poor",
    "early",
    "late",
    "right",
    "wrong",
    "open",
    "close",
    "near",
    "far",
    "sweet",
    "bright",
    "fresh",
    "simple",
    "strange",
    "beautiful",
    # verbs
    "go",
    "come",
    "run",
    "walk",
    "jump",
    "swim",
    "fly",
    "sit",
    "stand",
    "sleep",
    "eat",
    "drink",
    "cook",
    "read",
    "print",
    "speak",
    "talk",
    "say",
    "tell",
    "ask",
    "answer",
    "call",
    "listen",
    "smile",
    "laugh",
    "look",
    "watch",
    "find",
    "lose",
    "keep",
    "give",
    "take",
    "bring",
    "carry",
    "buy",
    "sell",
    "pay",
    "send",
    "make",
    "build",
    "break",
    "fix",
    "cut",
    "wash",
    "paint",
    "draw",
    "sing",
    "dance",
    "play",
    "work",
    "learn",
    "teach",
    "think",
    "understand",
    "remember",
    "forget",
    "want",
    "need",
    "like",
    "love",
    "help",
    "start",
    "stop",
    "finish",
    "wait",
    "stay",
    "leave",
    "arrive",
    "return",
    "follow",
    "turn",
    "move",
    "push",
    "pull",
    "throw",
    "catch",
    "hold",
    "drop",
    "climb",
    "fall",
    "grow",
    "change",
    "begin",
    "try",
    "use",
    "show",
    "meet",
    "visit",
    "travel",
    "live",
    # function words and adverbs
    "the",
    "a",
    "an",
    "this",
    "that",
    "these",
    "those",
    "my",
    "your",
    "his",
    "her",
    "its",
    "each",
    "some",
    "any",
    "all",
    "nothing",
    "not",
    "and",
    "or",
    "but",
    "if",
    "then",
    "because",
    "so",
    "very",
    "quite",
    "also",
    "only",
    "just",
    "again",
    "always",
    "never",
    "often",
    "sometimes",
    "soon",
    "now",
    "maybe",
    "there",
    "where",
    "when",
    "what",
    "who",
    "why",
    "how",
    "in",
    "on",
    "at",
    "under",
    "over",
    "with",
    "without",
    "from",
    "into",
    "after",
    "before",
    "between",
    "behind",
    "around",
    "through",
    # things and ideas
    "music",
    "song",
    "story",
    "game",
    "money",
    "number",
    "word",
    "name",
    "question",
    "idea",
    "color",
    "shape",
    "line",
    "circle",
    "square",
    "point",
    "side",
    "top",
    "bottom",
    "middle",
    "party",
    "holiday",
    "journey",
    "problem",
    "reason",
    "answers",
    "lesson",
    "job",
    "plan",
    "news",
)

_ESPEAK_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: callback gets the audio, Synth blocks until done
_ESPEAK_INITIALIZE_DONT_EXIT = 0x8000  # report a missing data folder instead of calling exit()
_ESPEAK_RATE, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 3, 4  # espeak_PARAMETER
_ESPEAK_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1  # the text is always passed as UTF-8 bytes; no guessing by espeak
_ESPEAK_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Espeak:
    """The process's espeak-ng instance; the library keeps one global state, so there is one of these."""

    def __init__(self) -> None:
        import espeakng_loader

        try:
            self.data_path = Path(espeakng_loader.get_data_path())
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except (OSError, RuntimeError) as error:
            raise RuntimeError(f"cannot load espeak-ng from the espeakng-loader wheel: {error}") from error
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_ESPEAK_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        self.lib = lib

        # espeak reports a bad data folder on stderr and returns 0 rather than -1.
        rate = lib.espeak_Initialize(
            _ESPEAK_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), _ESPEAK_INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialize with data folder {self.data_path} (returned {rate})")
        self.rate = rate
        self._chunks: list[bytes] = []
        # Kept as an attribute: ctypes does not hold a reference, and a collected callback crashes.
        self._callback = _ESPEAK_CALLBACK(self._collect)
        lib.espeak_SetSynthCallback(self._callback)
        self._seed_random = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._seed_random is not None:
            self._seed_random.argtypes = [ctypes.c_long]
            self._seed_random.restype = None
        self._lock = threading.Lock()
        self._known_voices: set[str] = set()

    def _collect(self, wav: Any, numsamples: int, events: Any) -> int:
        if wav and numsamples > 0:
            self._chunks.append(ctypes.string_at(wav, numsamples * 2))
        return 0  # 0 = continue synthesis

    def version(self) -> str:
        return self.lib.espeak_Info(None).decode()

    def check_voices(self, voices: tuple[str, ...]) -> None:
        """ValueError unless espeak knows every voice."""
        with self._lock:
            for voice in voices:
                self._select_voice(voice)

    def _select_voice(self, voice: str) -> None:
        """Make ``voice`` current; ValueError if espeak does not know it."""
        if voice not in self._known_voices:
            _, _, variant = voice.partition("+")
            if variant and not (self.data_path / "voices" / "!v" / variant).is_file():
                raise ValueError(f"unknown espeak-ng voice variant {variant!r} in {voice!r}")
        status = self.lib.espeak_SetVoiceByName(voice.encode())
        if status != 0:
            raise ValueError(f"unknown espeak-ng voice {voice!r} (espeak_SetVoiceByName returned {status})")
        self._known_voices.add(voice)

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, rand_seed: int) -> np.ndarray:
        """int16 samples at ``self.rate``."""
        with self._lock:
            self._select_voice(voice)
            for parameter, value in ((_ESPEAK_RATE, rate), (_ESPEAK_PITCH, pitch), (_ESPEAK_RANGE, pitch_range)):
                if self.lib.espeak_SetParameter(parameter, int(value), 0) != 0:
                    raise RuntimeError(f"espeak-ng rejected parameter {parameter} = {value}")
            if self._seed_random is not None:
                # Breathy variants draw noise from espeak's generator, which is otherwise seeded by the clock.
                self._seed_random(rand_seed)
            self._chunks.clear()
            data = text.encode("utf-8")
            status = self.lib.espeak_Synth(
                data, len(data) + 1, 0, _ESPEAK_POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
            )
            self.lib.espeak_Synchronize()
            samples = np.frombuffer(b"".join(self._chunks), dtype=np.int16)
            self._chunks.clear()
        if status != 0:
            raise RuntimeError(f"espeak-ng failed to synthesize {text!r} with voice {voice!r} (status {status})")
        return samples


_espeak: _Espeak | None = None
_espeak_lock = threading.Lock()


def _engine() -> _Espeak:
    global _espeak
    with _espeak_lock:
        if _espeak is None:
            _espeak = _Espeak()
        return _espeak


def synthesize(text: str, voice: str, rate: int, pitch: int, pitch_range: int) -> np.ndarray:
    """Speak one sentence with espeak-ng; returns a float32 mono waveform in [-1, 1] at :data:`SAMPLE_RATE`.

    ``voice`` is an espeak-ng voice name with an optional variant, e.g. ``"en-us+f2"`` (see
    :data:`VOICES`); ``rate`` is in words per minute (80-450), ``pitch`` and ``pitch_range`` are on
    espeak's 0-100 scale. Raises ValueError for an unknown voice or variant and RuntimeError if espeak-ng
    cannot be loaded or initialised or produces no audio. Repeated calls in one process may differ very
    slightly (espeak keeps pitch-flutter state between utterances); :func:`prepare` accounts for that.
    """
    if not 80 <= rate <= 450:
        raise ValueError(f"rate {rate} is outside espeak-ng's 80-450 words per minute")
    for name, value in (("pitch", pitch), ("pitch_range", pitch_range)):
        if not 0 <= value <= 100:
            raise ValueError(f"{name} {value} is outside espeak-ng's 0-100 scale")
    return _synthesize(text, voice, rate, pitch, pitch_range, rand_seed=0)


def _synthesize(text: str, voice: str, rate: int, pitch: int, pitch_range: int, rand_seed: int) -> np.ndarray:
    engine = _engine()
    samples = engine.synthesize(text, voice, rate, pitch, pitch_range, rand_seed)
    if samples.size == 0 or not np.any(samples):
        raise RuntimeError(f"espeak-ng returned no audio for {text!r} with voice {voice!r}")
    audio = samples.astype(np.float32) / 32768.0
    return soxr.resample(audio, engine.rate, SAMPLE_RATE).astype(np.float32, copy=False)


def _noise(rng: np.random.Generator, length: int, exponent: float) -> np.ndarray:
    """Unit-RMS noise whose power spectrum falls as 1/f**exponent."""
    # Shaped at a power-of-two length and cut: FFTs of arbitrary lengths were most of the run time.
    size = 1 << max(length - 1, 1).bit_length()
    spectrum = np.fft.rfft(rng.standard_normal(size))
    frequencies = np.fft.rfftfreq(size, d=1.0 / SAMPLE_RATE)
    # Flat below 20 Hz: brown noise would otherwise be dominated by an inaudible drift.
    spectrum *= np.maximum(frequencies, 20.0) ** (-exponent / 2)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n=size)[:length]
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def _utterance(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """Text and float32 waveform of one utterance, drawn from ``rng`` (the utterance's own stream)."""
    # The order of draws below is part of the corpus definition: changing it means bumping GENERATOR_VERSION.
    num_words = int(rng.integers(WORDS_PER_SENTENCE[0], WORDS_PER_SENTENCE[1] + 1))
    text = " ".join(WORDS[i] for i in rng.choice(len(WORDS), size=num_words, replace=False))
    voice = VOICES[int(rng.integers(len(VOICES)))]
    rate = int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1))
    pitch = int(rng.integers(PITCH[0], PITCH[1] + 1))
    pitch_range = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
    rand_seed = int(rng.integers(2**31))
    lead, trail = (int(rng.uniform(*SILENCE_S) * SAMPLE_RATE) for _ in range(2))
    snr_db = rng.uniform(*SNR_DB)
    exponent = NOISE_EXPONENTS[int(rng.integers(len(NOISE_EXPONENTS)))]
    peak = rng.uniform(*PEAK)

    speech = _synthesize(text, voice, rate, pitch, pitch_range, rand_seed).astype(np.float64)
    speech_rms = float(np.sqrt(np.mean(speech**2)))
    audio = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    audio += _noise(rng, audio.size, exponent) * speech_rms * 10 ** (-snr_db / 20)
    audio *= peak / float(np.max(np.abs(audio)))
    return text, audio.astype(np.float32)


def _make_item(directory: Path, name: str, rng: np.random.Generator) -> Item:
    """Synthesise one utterance into ``directory/<name>.wav``."""
    text, audio = _utterance(rng)
    pcm = np.round(audio * 32767).astype(np.int16)
    path = directory / f"{name}.wav"
    # The wave module rather than soundfile, whose close() fsyncs every file: that took longer than synthesis.
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(SAMPLE_RATE)
        file.writeframes(pcm.astype("<i2", copy=False).tobytes())
    duration = pcm.size / SAMPLE_RATE
    return Item({"audio_filepath": str(path), "duration": duration, "text": text, "id": name}, duration)


def _summary(items: list[Item]) -> str:
    return f"{len(items)} utterances, {sum(item.entry['duration'] for item in items) / 3600:.2f} h"


def _setup() -> dict[str, Any]:
    """Engine and voices are checked here so that a broken install fails with one clear error, not one per worker."""
    engine = _engine()
    engine.check_voices(VOICES)
    return {"espeak_ng": engine.version(), "voices": list(VOICES)}


GENERATOR = CorpusGenerator(
    name="synthetic-speech",
    module="recognizer.corpora.synthetic_speech",
    version=GENERATOR_VERSION,
    folder="wav",
    make_item=_make_item,
    summary=_summary,
    setup=_setup,
    chunk_size=CHUNK_SIZE,
    fresh_process=True,  # see CHUNK_SIZE
    parameters={"sample_rate": SAMPLE_RATE},
)


def prepare(
    out: str | Path,
    num_train: int = 3000,
    num_dev: int = 200,
    num_test: int = 200,
    seed: int = 0,
    workers: int | None = None,
) -> dict[str, Path]:
    """Generate the synthetic speech corpus into ``out`` (unless it is already there); returns split -> manifest.

    Writes 16 kHz mono 16-bit WAVs under ``out/wav/<split>/`` and manifests ``out/train.jsonl``,
    ``dev.jsonl`` and ``test.jsonl`` (``audio_filepath``, ``duration``, ``text``, ``id``), then
    ``out/corpus.json``. If ``corpus.json`` shows a complete corpus made with the same sizes, seed and
    generator version, nothing is regenerated. The output depends on ``seed`` and the sizes only;
    ``workers`` (default: all CPUs) just sets how many processes share the work.
    """
    return generate(GENERATOR, out, num_train, num_dev, num_test, seed, workers)
