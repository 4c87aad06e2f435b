"""Least-squares phase integration with oracle phase differences on real speech: quality, streaming
== whole utterance, batching, digital silence, and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pesq import pesq
from pystoi import stoi

from ppsi_cli import SolverConfig, StftConfig
from ppsi_cli.dsp import bpd, fpd, istft, stft
from ppsi_cli.integrate import PhaseIntegrator, integrate

CFG = StftConfig()


def oracle(x: torch.Tensor, cfg: StftConfig = CFG):
    """Magnitude, BPD and FPD of the signal's own STFT."""
    spec = stft(x, cfg)
    return spec.abs(), bpd(spec, cfg), fpd(spec)


def resynth(x: torch.Tensor, solver: SolverConfig | None = None) -> torch.Tensor:
    mag, b, f = oracle(x)
    return istft(integrate(mag, b, f, CFG, solver), CFG, length=x.shape[-1])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_oracle_round_trip_quality(speech, dtype: torch.dtype) -> None:
    x, sr = speech
    y = resynth(x.to(dtype))
    assert y.dtype == dtype and torch.isfinite(y).all()
    ref, est = x.numpy(), y.double().numpy()
    assert pesq(sr, ref, est, "wb") >= 4.5
    assert stoi(ref, est, sr, extended=True) >= 0.99


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)], ids=str)
def test_streaming_push_equals_integrate(speech, dtype: torch.dtype, tol: float) -> None:
    x, _ = speech
    mag, b, f = oracle(x[:16000].to(dtype))
    whole = integrate(mag, b, f, CFG)
    for chunk in (1, 7):
        integ = PhaseIntegrator(CFG)
        pushed = torch.cat([integ.push(mag[:, t:t + chunk], b[:, t:t + chunk], f[:, t:t + chunk])
                            for t in range(0, mag.shape[-1], chunk)], dim=-1)
        assert pushed.shape == whole.shape and pushed.dtype == whole.dtype
        assert rel(pushed, whole) <= tol
        # per frame too, so one bad frame cannot hide in the total
        per_frame = (pushed - whole).norm(dim=0) / whole.norm(dim=0).clamp_min(1e-30)
        assert per_frame.max() <= 10 * tol


def test_torch_recursion_equals_lapack(speech) -> None:
    """The batched torch solver's recursion (the GPU path) against LAPACK's, chunk by chunk."""
    x, _ = speech
    mag, b, f = oracle(x[:16000])
    ref = integrate(mag, b, f, CFG)
    integ = PhaseIntegrator(CFG, SolverConfig(solver="thomas"))
    got = torch.cat([integ.push(mag[:, t:t + 9], b[:, t:t + 9], f[:, t:t + 9])
                     for t in range(0, mag.shape[-1], 9)], dim=-1)
    assert rel(got, ref) <= 1e-9


@pytest.mark.parametrize("solver", ["reference", "lapack", "ldl", "thomas"])
def test_batch_equals_one_by_one(speech, speech2, solver: str) -> None:
    n = 12000
    xs = torch.stack([speech[0][:n], speech2[0][:n]])
    mag, b, f = oracle(xs)
    cfg = SolverConfig(solver=solver)
    both = integrate(mag, b, f, CFG, cfg)
    assert both.shape == mag.shape
    for i in range(2):
        assert rel(both[i], integrate(mag[i], b[i], f[i], CFG, cfg)) <= 1e-9


def test_solvers_agree_on_the_recursion(speech) -> None:
    x, _ = speech
    mag, b, f = oracle(x[:8000])
    ref = integrate(mag, b, f, CFG, SolverConfig(solver="reference"))
    for name in ("lapack", "ldl", "thomas"):
        assert rel(integrate(mag, b, f, CFG, SolverConfig(solver=name)), ref) <= 1e-9


@pytest.mark.parametrize("p", [0.5, 1.0, 2.0, 3.0, 1.5])
def test_compiled_systems_equal_frame_systems(speech, p: float) -> None:
    """The compiled recursion builds each frame's system itself (numba); against LAPACK on
    ``frame_systems``' systems, for every exponent it special-cases and one it does not, from
    perturbed phase differences (with the true ones any weights give the same phase), with
    digital silence inside, pushed in chunks, in float64 and (30 frames) in float32."""
    from ppsi_cli.solvers.ldl import numba_available

    if not numba_available():
        pytest.skip("needs numba")
    x, sr = speech
    x = torch.cat([x[:8000], torch.zeros(int(0.2 * sr), dtype=x.dtype), x[8000:16000]])
    mag, b, f = oracle(x)
    gen = torch.Generator().manual_seed(0)  # predicted-like differences: then the weights matter
    b = b + 0.5 * torch.randn(b.shape, generator=gen, dtype=b.dtype)
    f = f + 0.5 * torch.randn(f.shape, generator=gen, dtype=f.dtype)
    for dtype, n_t, tol in ((torch.float64, mag.shape[-1], 1e-9), (torch.float32, 30, 1e-4)):
        m, bb, ff = (a[:, :n_t].to(dtype) for a in (mag, b, f))
        out = {}
        for solver in ("lapack", "ldl"):
            integ = PhaseIntegrator(CFG, SolverConfig(p=p, g=3.0, solver=solver))
            assert integ.solver_name == solver
            out[solver] = torch.cat([integ.push(m[:, t:t + 7], bb[:, t:t + 7], ff[:, t:t + 7])
                                     for t in range(0, n_t, 7)], dim=-1)
        assert rel(out["ldl"], out["lapack"]) <= tol, (dtype, rel(out["ldl"], out["lapack"]))
        silent = m.amax(0) == 0
        assert silent.sum() >= (6 if dtype == torch.float64 else 0)
        assert (out["ldl"][:, silent] == 0).all()


def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    return 10 * math.log10(np.sum(ref ** 2) / max(np.sum((ref - est) ** 2), 1e-300))


def test_digital_silence_in_the_middle(speech) -> None:
    x, sr = speech
    mid, gap = len(x) // 2, int(0.2 * sr)
    xg = torch.cat([x[:mid], torch.zeros(gap, dtype=x.dtype), x[mid:]])
    mag, b, f = oracle(xg)
    z = integrate(mag, b, f, CFG)
    assert torch.isfinite(z.real).all() and torch.isfinite(z.imag).all()
    # frames entirely inside the gap: all their samples are zeros, and so is their output
    hop, n_fft, pad = CFG.hop_length, CFG.n_fft, CFG.pad
    start = torch.arange(mag.shape[-1]) * hop - pad  # first sample under each frame
    inside = (start >= mid) & (start + n_fft <= mid + gap)
    assert inside.sum() >= 6
    assert (mag[:, inside] == 0).all() and (z[:, inside] == 0).all()
    y = istft(z, CFG, length=len(xg))
    assert torch.isfinite(y).all()
    covered_by_silence = slice(int(start[inside][0]) + n_fft - hop, int(start[inside][-1]) + hop)
    assert (y[covered_by_silence] == 0).all()  # only all-zero frames overlap there
    ref, est = xg.numpy(), y.numpy()
    after = slice(mid + gap, len(xg))
    # the recursion restarts from frequency integration: the phase after the gap is correct up
    # to a global sign (phi_0 = 0 vs the true DC phase 0 or pi)
    assert max(snr_db(ref[after], est[after]), snr_db(ref[after], -est[after])) > 20
    energy_db = 10 * math.log10(np.sum(est[after] ** 2) / np.sum(ref[after] ** 2))
    assert abs(energy_db) < 1
    assert pesq(sr, ref, est, "wb") >= 4.3


def test_all_silent_input_gives_zeros() -> None:
    k, t = CFG.n_bins, 20
    zeros = torch.zeros(k, t, dtype=torch.float64)
    z = integrate(zeros, zeros, zeros[:-1], CFG)
    assert z.is_complex() and (z == 0).all()
    assert (istft(z, CFG) == 0).all()
    integ = PhaseIntegrator(CFG)
    for _ in range(3):
        frame = integ.push(zeros[:, :1], zeros[:, :1], zeros[:-1, :1])
        assert (frame == 0).all()


def test_speech_after_leading_silence(speech) -> None:
    x, sr = speech
    xs = torch.cat([torch.zeros(sr // 2, dtype=x.dtype), x])
    mag, b, f = oracle(xs)
    y = istft(integrate(mag, b, f, CFG), CFG, length=len(xs))
    assert (y[: sr // 2 - CFG.n_fft] == 0).all()
    assert pesq(sr, xs.numpy(), y.numpy(), "wb") >= 4.3


def _good():
    k, t = CFG.n_bins, 5
    return torch.ones(k, t), torch.zeros(k, t), torch.zeros(k - 1, t)


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.index_put_((torch.tensor(3), torch.tensor(1)), torch.tensor(math.nan)),
     "magnitude contains NaN values"),
    (lambda m: m.index_put_((torch.tensor(3), torch.tensor(1)), torch.tensor(math.inf)),
     "magnitude contains Inf values"),
    (lambda m: m.index_put_((torch.tensor(3), torch.tensor(1)), torch.tensor(-0.5)),
     r"magnitude contains negative values \(min -0.5\)"),
    (lambda m: m[:257], r"magnitude has 257 bins \(n_fft=512\?\); expected 513 \(n_fft=1024\)"),
    (lambda m: m[:, :0], "magnitude has zero frames"),
    (lambda m: m.to(torch.complex64), "magnitude is complex; pass real magnitudes"),
    (lambda m: m[:, 0], r"must have shape \(..., freq, time\)"),
], ids=["nan", "inf", "negative", "bins", "no-frames", "complex", "1d"])
def test_bad_magnitudes_are_refused(mutate, message: str) -> None:
    mag, b, f = _good()
    with pytest.raises(ValueError, match=message):  # magnitudes are checked first
        integrate(mutate(mag), b, f, CFG)


def test_mismatched_phase_differences_are_refused() -> None:
    mag, b, f = _good()
    with pytest.raises(ValueError, match=r"phase differences must be BPD \(513, 5\) and FPD "
                                         r"\(512, 5\)"):
        integrate(mag, b, b, CFG)


def test_non_finite_phase_differences_are_refused():
    cfg = StftConfig()
    mag = torch.rand(cfg.n_bins, 6, dtype=torch.float64)
    b, f = torch.zeros_like(mag), torch.zeros(cfg.n_bins - 1, 6, dtype=torch.float64)
    bad = b.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="BPD contains NaN"):
        integrate(mag, bad, f, cfg)
    badf = f.clone()
    badf[0, 0] = float("inf")
    with pytest.raises(ValueError, match="FPD contains NaN or Inf"):
        integrate(mag, b, badf, cfg)


def test_diagonal_load_leaves_weak_bins_alone(speech) -> None:
    """The float32 safety load must not change the least-squares solution, not even in the
    weakest bins (a load by a fraction of the frame's largest entry used to swamp their weights
    and cost 0.02 WB-PESQ on validation speech). Per frame, from the true previous frame, against
    the unloaded system solved by SciPy."""
    from ppsi_cli.dsp.phase import bpd_to_tpd
    from ppsi_cli.integrate import frame_systems, polar
    from ppsi_cli.solvers.reference import solve_reference

    x, _ = speech
    spec = stft(x[:16000], CFG)
    mag = spec.abs()
    gen = torch.Generator().manual_seed(0)
    b = bpd(spec, CFG) + 0.3 * torch.randn(mag.shape, generator=gen, dtype=mag.dtype)
    f = fpd(spec)
    f = f + 0.3 * torch.randn(f.shape, generator=gen, dtype=mag.dtype)
    unit = (spec / mag.clamp_min(1e-30)).T
    prev = torch.nn.functional.pad(unit[:-1], (0, 0, 1, 0))
    tpd = bpd_to_tpd(b, CFG).T

    def solve(load: float) -> torch.Tensor:
        diag, lower, weight, _, _ = frame_systems(mag, f, SolverConfig(mag_floor=1e-3,
                                                                       diag_load=load))
        rhs = polar(weight.real, tpd) * prev
        return solve_reference(lower[1:], diag[1:].to(rhs.dtype), lower[1:].conj(), rhs[1:])

    exact, loaded = solve(0.0), solve(SolverConfig().diag_load)
    a = mag.T[1:] / mag.T[1:].amax(-1, keepdim=True)
    weak = a < 1e-2
    assert weak.sum() > 1000  # the test covers many weak bins
    diff = torch.angle(loaded * exact.conj()).abs()
    assert diff[weak].max() < 1e-3 and diff.max() < 1e-3
