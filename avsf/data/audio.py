"""Log-mel features as the paper's authors compute them (REFERENCE_FACTS, "Audio features").

16 kHz; n_fft = window = 512 (32 ms); hop 256 (16 ms); HTK mel scale, unnormalised
triangles (peak 1); periodic Hann window; no centring; power spectrogram; natural
log(S + 1e-8); then (x - mean) / std. The reference path is torch + torchaudio; the DALI
pipeline uses fn.spectrogram + fn.mel_filter_bank with the same window and constants.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

LOG_EPS = 1e-8


@lru_cache(maxsize=8)
def hann(n_fft: int) -> np.ndarray:
    return torch.hann_window(n_fft, periodic=True, dtype=torch.float64).numpy().astype(np.float32)


@lru_cache(maxsize=8)
def mel_fbanks(n_fft: int, mel_bins: int, sample_rate: int) -> torch.Tensor:
    import torchaudio.functional as AF

    return AF.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, mel_bins, sample_rate, norm=None, mel_scale="htk")


def read_audio(path, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 samples of a sidecar (FLAC/WAV/OGG); resampled if its rate differs."""
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != sample_rate:
        import torchaudio.functional as AF

        x = AF.resample(torch.from_numpy(x), sr, sample_rate).numpy()
    return x


def window(samples: np.ndarray, start: int, length: int) -> np.ndarray:
    """samples[start:start+length], zero-padded (silence) outside the signal."""
    out = np.zeros(length, np.float32)
    lo, hi = max(start, 0), min(start + length, len(samples))
    if hi > lo:
        out[lo - start: hi - start] = samples[lo:hi]
    return out


def logmel(x: np.ndarray | torch.Tensor, *, n_fft: int, hop: int, mel_bins: int, sample_rate: int,
           mean: float, std: float) -> torch.Tensor:
    """(frames, mel_bins) normalised log-mel of a 1-D signal; frames = 1 + (len - n_fft) // hop."""
    x = torch.as_tensor(x, dtype=torch.float32)
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=n_fft, window=torch.from_numpy(hann(n_fft)),
                      center=False, return_complex=True)
    power = spec.real ** 2 + spec.imag ** 2  # (freq, time)
    mel = power.T @ mel_fbanks(n_fft, mel_bins, sample_rate)  # (time, mel)
    return (torch.log(mel + LOG_EPS) - mean) / std
