"""Starting a training run from a trained model's weights (``model.init_from``): fine-tuning, or
pretraining on one corpus and training on another.

The encoder's weights come from a training checkpoint or a model file; the run keeps its own
tokenizer, front-end settings, feature statistics (computed from its own training data, as for a
run from scratch) and optimizer. The output layers' rows are matched label by label: the blank and
every character of this run's alphabet that the source model also has (the same character, else
the same letter in the other case) start from the source's row, the others from a fresh one. Every
other weight must have the same name and shape in both encoders; a difference is an error naming
it, not a silent partial load.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from .artifacts import CheckpointError
from .ctc import BLANK
from .encoders import Encoder
from .frontend import Frontend
from .model import Model
from .tokenizer import Tokenizer

#: weights that are never taken: the feature statistics belong to the run's own data
OWN_WEIGHTS = ("normalizer.",)


def label_sources(ours: Tokenizer, theirs: Tokenizer) -> dict[int, int]:
    """Our label index -> the source model's, for the blank and each character it can be matched to:
    the same character, else the same letter in the other case."""
    index = {char: i for i, char in enumerate(theirs.tokens) if i != BLANK}
    folded: dict[str, int] = {}
    for char, i in index.items():
        folded.setdefault(char.casefold(), i)
    sources = {BLANK: BLANK}
    for i, char in enumerate(ours.tokens):
        if i == BLANK:
            continue
        source = index.get(char, folded.get(char.casefold()))
        if source is not None:
            sources[i] = source
    return sources


def differing_setting(theirs: Mapping[str, Any], ours: Mapping[str, Any], training_only: tuple[str, ...]) -> str:
    """The first encoder setting (``init_args``) that shapes what the weights compute and differs, as
    ``"name is X, this run's Y"``; "" when none does. Training-only settings (dropout) may differ."""
    for name, value in ours.items():
        if name not in training_only and name in theirs and theirs[name] != value:
            return f"{name} is {theirs[name]!r}, this run's {value!r}"
    return ""


def initialize_from(
    path: str | os.PathLike,
    encoder: Encoder,
    tokenizer: Tokenizer,
    frontend: Frontend,
    encoder_settings: Mapping[str, Any],
) -> str:
    """Copy the weights of the model at ``path`` into ``encoder`` (see the module docstring); returns
    one line saying what was taken. ``encoder_settings`` (``encoder_config`` of the run's encoder) are
    compared with the source's too. A ``CheckpointError`` names the file and what does not fit."""
    source = Model.load(path)
    if source.frontend.modality != frontend.modality:
        raise CheckpointError(f"{path}: its front-end reads {source.frontend.modality}, this run's {frontend.modality}")
    if type(source.encoder) is not type(encoder):
        raise CheckpointError(
            f"{path}: its encoder is a {type(source.encoder).__name__}, this run's a {type(encoder).__name__}"
        )
    theirs = source.encoder.state_dict()
    state = encoder.state_dict()
    unused = [name for name in theirs if name not in state and not name.startswith(OWN_WEIGHTS)]
    if unused:  # a deeper encoder, or one with an auxiliary head: its weights would be dropped
        raise CheckpointError(
            f"{path}: its {unused[0]} has no place in this run's encoder (the encoders' settings differ)"
        )
    sources = label_sources(tokenizer, source.tokenizer)
    rows_ours = torch.tensor(list(sources))
    rows_theirs = torch.tensor(list(sources.values()))
    taken = 0
    for name, value in state.items():
        if name.startswith(OWN_WEIGHTS):
            continue
        stored = theirs.get(name)
        labelled = name.split(".")[0] in encoder.label_layers
        if stored is None:
            raise CheckpointError(f"{path}: has no {name} (the encoders' settings differ)")
        if stored.shape[labelled:] != value.shape[labelled:]:
            raise CheckpointError(
                f"{path}: its {name} is {tuple(stored.shape)}, this run's {tuple(value.shape)} "
                "(the encoders' settings or the features differ)"
            )
        if labelled:
            value[rows_ours.to(value.device)] = stored[rows_theirs].to(value)
        else:
            value.copy_(stored)
        taken += 1
    # after the weights, whose errors name them: this catches the settings that have no weights of their
    # own (e.g. residual), which would otherwise change what the copied weights compute, silently
    theirs_settings, ours = source.settings["encoder"]["init_args"], encoder_settings["init_args"]
    mismatch = differing_setting(theirs_settings, ours, encoder.training_only)
    if mismatch:
        raise CheckpointError(f"{path}: its encoder's {mismatch}")
    encoder.load_state_dict(state)
    fresh = [char for i, char in enumerate(tokenizer.tokens) if i not in sources]
    return (
        f"initialized from {path}: {taken} weight tensors; {len(sources)} of {tokenizer.vocab_size} output labels"
        + (f" (new: {''.join(fresh)!r})" if fresh else "")
        + "; feature statistics from this run's data"
    )
