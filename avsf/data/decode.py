"""Decoding one batch's clips on the CPU, in DataLoader worker processes (avsf.data.dali_loader's
docstring says why processes): DALI's CPU decoder for the batch at once, each clip alone when the
batch raises, PyAV (the reference decoder) for what DALI refuses or what the plan sent to PyAV.
What no decoder can read comes back as a failure for the training process to log and count.
"""

from __future__ import annotations

import gc
import logging

import torch

from avsf.data.dali_loader import Item, build_pipeline, columns, decode_each, to_torch, _read_item
from avsf.data.sampling import ClipGeometry

log = logging.getLogger("avsf.data")


class CpuDecoder:
    """Decodes batches of Items on the CPU with a one-thread DALI pipeline it keeps (built lazily, so
    each worker process builds its own) and PyAV behind it."""

    def __init__(self, g: ClipGeometry, cfg, rows, *, mode: str, batch_size: int, with_shifted_audio: bool):
        self.g, self.cfg, self.rows, self.mode = g, cfg, rows, mode
        self.batch_size, self.with_shifted_audio = batch_size, with_shifted_audio
        self.pipe = None
        self._current = None

    def _source(self):
        return self._current

    def _run(self, items: list[Item], data: list[tuple]) -> list[torch.Tensor]:
        if self.pipe is None:
            self.pipe = build_pipeline(self.g, self.cfg.data, batch_size=self.batch_size, num_threads=1, gpu=False,
                                       with_shifted_audio=self.with_shifted_audio, source=self._source, prefetch=1)
        self._current = columns(self.g, items, data, self.with_shifted_audio)
        return [to_torch(o) for o in self.pipe.run()]

    def close(self) -> None:
        if self.pipe is not None:
            self.pipe._shutdown()  # see DaliStream.close
        self.pipe = None

    def decode(self, dali_items: list[Item], pyav_items: list[Item]) -> dict:
        """{"pos": positions decoded, in order; "outs": [video, audio, (shifted)] stacked for them, or None;
        "failed": [(pos, row, path, message)] for clips no decoder read; "dali": clips DALI decoded;
        "pyav": clips PyAV decoded}."""
        pieces: dict[int, list] = {}
        failed: list[tuple] = []
        items, data = [], []
        for it in dali_items:
            try:
                data.append(_read_item(it))
                items.append(it)
            except OSError as e:  # missing or empty file: no decoder can do better
                failed.append((it.pos, it.spec.row, str(it.video), str(e)))
        to_pyav = list(pyav_items)
        errors: dict[int, Exception] = {}
        if items:
            try:
                outs = self._run(items, data)
                for k, it in enumerate(items):
                    pieces[it.pos] = [o[k] for o in outs]
            except Exception as e:
                log.info("DALI batch failed (%s); retrying its %d clips one by one", str(e).splitlines()[0], len(items))
                self.close()  # a pipeline that raised is rebuilt for the next batch
                for it, got in decode_each(items, self.g, self.cfg.data, num_threads=1, gpu=False,
                                           with_shifted_audio=self.with_shifted_audio):
                    if isinstance(got, Exception):
                        errors[id(it)] = got
                        to_pyav.append(it)
                    else:
                        pieces[it.pos] = [o[0] for o in got]
        n_dali = len(pieces)
        for it in to_pyav:
            try:
                pieces[it.pos] = self._pyav(it)
            except Exception as e:
                failed.append((it.pos, it.spec.row, str(it.video), str(errors.get(id(it), e)).splitlines()[0]))
        order = sorted(pieces)
        outs = [torch.stack([pieces[p][k] for p in order]) for k in range(len(pieces[order[0]]))] if order else None
        return {"pos": order, "outs": outs, "failed": failed, "dali": n_dali, "pyav": len(pieces) - n_dali}

    def _pyav(self, it: Item) -> list[torch.Tensor]:
        from avsf.data.reference import make_sample

        s = make_sample(self.rows[it.spec.row], it.spec, self.g, self.cfg, self.mode, self.with_shifted_audio)
        out = [s["fast"], s["audio"][0]]
        if self.with_shifted_audio:
            out.append(s["audio_shifted"][0])
        return out


class CpuBatches(torch.utils.data.Dataset):
    """Item j = the CPU-decoded clips of batch j: `jobs[j]` = (Items for DALI, Items for PyAV)."""

    def __init__(self, jobs: list[tuple[list[Item], list[Item]]], decoder: CpuDecoder):
        self.jobs, self.decoder = jobs, decoder

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, j: int) -> dict:
        return self.decoder.decode(*self.jobs[j])


def worker_init(_) -> None:
    """One torch thread per worker, and the inherited heap frozen: a DALI pipeline object the
    training process still held when it forked must never be collected here (its native side
    belongs to the parent; collecting it in a child crashed it, seen in tests)."""
    torch.set_num_threads(1)
    gc.freeze()


def identity(x):
    return x


def cpu_loader(jobs: list[tuple[list[Item], list[Item]]], decoder: CpuDecoder, *, workers: int, pin: bool):
    """Batches' CPU parts in order, decoded by `workers` worker processes (each with its own pipeline)."""
    # its own generator: the workers' seed is not drawn from the global one, whose state an exact
    # resume restores around the loader (the workers decode planned clips, nothing random)
    return torch.utils.data.DataLoader(CpuBatches(jobs, decoder), batch_size=None, num_workers=max(1, workers),
                                       collate_fn=identity, pin_memory=pin, worker_init_fn=worker_init,
                                       prefetch_factor=2, generator=torch.Generator())
