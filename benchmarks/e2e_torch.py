"""The main job's character LM written plainly in PyTorch: the peer of ``rnnlab train``.

``nn.Embedding(V, 64) -> nn.LSTM(64, 256, batch_first=True) -> nn.Linear(256, V)``, Adam at
the experiment's learning rate, ``clip_grad_norm_(1.0)``, batch 32 of 128 steps, the state
carried (detached) from one batch to the next, 2 threads. It reads the same batches as the
experiment, from rnnlab's data pipeline, so both sides do the same job. Prints one JSON line:
the wall time of every window of ``--log-every`` steps.

Usage: ``python -m benchmarks.e2e_torch --steps 120 --log-every 20``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn

from rnnlab import data
from rnnlab.train import config as cfg_lib


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="experiments/charlm.py")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = cfg_lib.load(args.config)
    info = data.info(config.data)
    vocab, m = int(info["vocab_size"]), config.model
    batch_size = int(config.train.batch_size)

    class CharLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, m.embed_features)
            self.lstm = nn.LSTM(m.embed_features, m.hidden_features, batch_first=True)
            self.head = nn.Linear(m.hidden_features, vocab)

        def forward(self, x, state):
            h, state = self.lstm(self.embed(x), state)
            return self.head(h), state

    model = CharLM()
    opt = torch.optim.Adam(model.parameters(), lr=float(config.optim.lr))
    loss_fn = nn.CrossEntropyLoss()
    it = data.load(config.data, split="train", batch_size=batch_size, seed=int(config.seed))
    state = None
    windows, t0 = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = next(it)
        x = torch.from_numpy(np.asarray(batch["inputs"], np.int64))
        y = torch.from_numpy(np.asarray(batch["targets"], np.int64))
        logits, state = model(x, state)
        state = tuple(s.detach() for s in state)
        loss = loss_fn(logits.reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % args.log_every == 0:
            float(loss)  # the host reads the loss at log steps, as rnnlab's loop does
            now = time.perf_counter()
            windows.append(now - t0)
            t0 = now
    tokens = batch_size * int(config.data.seq_len) * args.log_every
    print(json.dumps({"impl": "torch", "window_s": windows, "tokens_per_window": tokens}))


if __name__ == "__main__":
    main()
