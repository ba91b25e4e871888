"""recognizer: sequence-to-text recognition (speech, online handwriting) with BLSTM-CTC.

import recognizer
model = recognizer.load("model.ckpt")
print(model.transcribe(["utterance.wav"])[0].text)
"""

__all__ = ["Recognizer", "Transcript", "load"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy: tools such as `recognizer-prepare` and its worker processes need no torch or Lightning.
    if name in __all__:
        from . import transcribe

        return getattr(transcribe, name)
    raise AttributeError(f"module 'recognizer' has no attribute {name!r}")
