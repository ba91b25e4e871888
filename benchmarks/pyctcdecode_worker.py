"""pyctcdecode's side of benchmarks/decoding.py, run in pyctcdecode's own virtual environment.

    python pyctcdecode_worker.py JOB.json grid            # texts for every (alpha, beta) of the job's grid
    python pyctcdecode_worker.py JOB.json time ALPHA BETA  # timed runs: no LM, and LM at (alpha, beta)

Reads the log-probabilities the main script saved, prints JSON on stdout. Only numpy, pyctcdecode
and kenlm are imported here.
"""

import json
import statistics
import sys
import time

import numpy as np
from pyctcdecode import build_ctcdecoder


def decode_all(decoder, log_probs, beam):
    return [decoder.decode(frames, beam_width=beam) for frames in log_probs]


def main():
    job = json.load(open(sys.argv[1]))
    command = sys.argv[2]
    with np.load(job["log_probs"]) as archive:
        log_probs = [archive[f"arr_{i}"].astype(np.float32) for i in range(len(archive.files))]
    beam = job["beam"]
    if command == "grid":
        grid = []
        for alpha in job["alphas"]:
            for beta in job["betas"]:
                decoder = build_ctcdecoder(job["labels"], kenlm_model_path=job["lm"], alpha=alpha, beta=beta)
                grid.append({"alpha": alpha, "beta": beta, "texts": decode_all(decoder, log_probs, beam)})
        print(json.dumps({"grid": grid}))
        return
    alpha, beta = float(sys.argv[3]), float(sys.argv[4])
    decoders = {
        "no_lm": build_ctcdecoder(job["labels"]),
        "lm": build_ctcdecoder(job["labels"], kenlm_model_path=job["lm"], alpha=alpha, beta=beta),
    }
    results = {}
    for name, decoder in decoders.items():
        seconds = []
        for _ in range(job["repeats"]):
            start = time.perf_counter()
            texts = decode_all(decoder, log_probs, beam)
            seconds.append(time.perf_counter() - start)
        results[name] = {"texts": texts, "seconds": statistics.median(seconds)}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
