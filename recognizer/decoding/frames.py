"""Frame-level preparation shared by the beam decoders: collapsing runs of confident blank frames, and
a floor under the labels a search tries.

CTC outputs are peaky: most frames are the blank with a probability near 1, and a beam search
spends most of its time on them without changing its ranking. A run of consecutive frames whose
blank probability is at least ``threshold`` is collapsed into its first frame. The blank
log-probabilities of the dropped frames are added to every class of the kept frame: a path through
the run emits whatever it emits on the kept frame and blanks through the rest, and keeps its exact
score. Only the paths that emit something on a dropped frame are lost (less than ``1 - threshold``
of the mass per frame). One frame of each run is kept, so a blank still separates repeated labels
("LL") as CTC requires, and the best label of every kept frame is unchanged (greedy decoding of the
result equals greedy decoding of the input).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..ctc import BLANK


def collapse_blank_frames(
    log_probs: Tensor, lengths: Tensor, threshold: float, blank: int = BLANK
) -> tuple[Tensor, Tensor]:
    """(batch, time, vocab) log-probabilities and lengths -> the same with blank runs collapsed.

    Frames past an utterance's length are ignored; the result is padded with zeros past the new
    lengths. Vectorized over the batch.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"blank threshold must be in (0, 1], got {threshold}")
    if log_probs.dtype not in (torch.float32, torch.float64):
        log_probs = log_probs.float()  # sums over long runs would drift in half precision
    batch, time, vocab = log_probs.shape
    device = log_probs.device
    lengths = lengths.to(device)
    valid = torch.arange(time, device=device)[None, :] < lengths[:, None]
    confident = (log_probs[..., blank] >= math.log(threshold)) & valid
    previous = torch.nn.functional.pad(confident[:, :-1], (1, 0), value=False)
    keep = valid & ~(confident & previous)  # every frame but the 2nd, 3rd, ... of a confident run
    # Each frame's destination: the number of kept frames up to it, minus one (dropped frames land
    # on the kept first frame of their run).
    destination = keep.long().cumsum(1) - 1
    new_lengths = keep.sum(1)
    out = torch.zeros(
        batch, max(int(new_lengths.max()), 1) if batch else 1, vocab, dtype=log_probs.dtype, device=device
    )
    rows = torch.arange(batch, device=device)[:, None].expand(batch, time)
    out[rows[keep], destination[keep]] = log_probs[keep]
    dropped = valid & ~keep
    run_blank = torch.zeros(batch, out.shape[1], dtype=log_probs.dtype, device=device)
    run_blank.index_put_((rows[dropped], destination[dropped]), log_probs[..., blank][dropped], accumulate=True)
    return out + run_blank[:, :, None], new_lengths


def floor_labels(log_probs: Tensor, min_logp: float, fill: float, blank: int = BLANK) -> Tensor:
    """(..., vocab) log-probabilities with every non-blank label below ``min_logp`` set to ``fill`` (a
    search then drops it at once), except each frame's most probable non-blank label, as the prefix
    beam search's ``token_min_logp`` does: for a search that cannot prune by probability itself
    (flashlight-text tries a fixed number of labels per frame)."""
    labels = log_probs.clone()
    labels[..., blank] = float("-inf")
    keep = (labels >= min_logp) | (labels == labels.amax(dim=-1, keepdim=True))
    keep[..., blank] = True
    return torch.where(keep, log_probs, fill)
