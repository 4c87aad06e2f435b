"""The one vocabulary of methods (``ppsi_cli.methods``) and the shipped-weights registry."""

from __future__ import annotations

import hashlib
from fractions import Fraction
import shutil

import pytest
import torch

import ppsi_cli.weights as W
from ppsi_cli import Inverter, invert
from ppsi_cli.methods import METHODS, parse_method, parse_methods


@pytest.mark.parametrize("spelling, label", [
    ("ppsi", "ppsi"),
    ("gl32", "griffin-lim+iters=32"),
    ("griffin-lim-32", "griffin-lim+iters=32"),
    ("griffin-lim", "griffin-lim+iters=32"),
    ("gl100", "griffin-lim+iters=100"),
    ("griffin-lim+iters=100+momentum=0", "griffin-lim+iters=100+momentum=0"),
    ("ppsi+gl32", "ppsi+refine=32"),
    ("ppsi-strided+refine=8", "ppsi-strided+refine=8"),
    ("rtisi-la+lookahead=2", "rtisi-la+lookahead=2"),
    (" pghi ", "pghi"),
])
def test_spellings_parse_to_one_method(spelling, label) -> None:
    m = parse_method(spelling)
    assert m.label == label
    assert parse_method(m.label) == m  # the label is itself a spelling of the same method


def test_defaults_overrides_and_properties() -> None:
    m = parse_method("griffin-lim", iters=7, momentum=None)  # None: not given
    assert m.opts == {"iters": 7, "momentum": 0.99, "seed": 0}
    assert not m.online and not m.uses_network
    assert parse_method("ppsi").online and parse_method("ppsi-strided").variant == "strided"
    assert not parse_method("ppsi+refine=2").online  # refining is offline
    assert set(METHODS) == {"ppsi", "ppsi-strided", "ppsi-offline", "oracle", "griffin-lim",
                            "rtisi", "rtisi-la", "pghi", "rtpghi", "librosa", "pghipy",
                            "torchaudio"}
    offline = parse_method("ppsi-offline")  # refines by default: offline; without, a stream
    assert offline.opts["refine"] == 16 and offline.opts["band"] == 0 and not offline.online
    assert parse_method("ppsi-offline+refine=0").online and offline.variant == "offline"
    assert parse_method("ppsi-offline+band=2000").label == "ppsi-offline+band=2000"
    # a result's description names the options it ran with, not the defaults
    assert parse_method("ppsi-offline+refine=8").description.endswith("; refine=8")
    assert parse_method("gl100").description.endswith("; iters=100")
    assert ";" not in parse_method("ppsi").description
    big = parse_method("ppsi-offline+band=1e6")  # its label parses back to it (no "e+")
    assert big.label == "ppsi-offline+band=1e06" and parse_method(big.label) == big


@pytest.mark.parametrize("text, overrides, message", [
    ("magic", {}, "unknown method 'magic'"),
    ("ppsi+iters=3", {}, "method ppsi has no option iters"),
    ("ppsi", {"iters": 3}, "method ppsi has no option iters"),
    ("oracle", {"refine": 2}, "method oracle has no option refine"),
    ("griffin-lim+iters=x", {}, "iters='x' is not an integer"),
    ("griffin-lim+iters=0", {}, "iters must be >= 1"),
    ("griffin-lim+momentum=1.5", {}, r"momentum must be in \[0, 1\]"),
    ("ppsi+refine", {}, "write options as \\+KEY=VALUE"),
    ("ppsi", {"refine": -1}, "refine must be >= 0"),
    ("ppsi-offline+band=-1", {}, "band must be >= 0"),
    ("ppsi-offline+band=nan", {}, "band must be a finite frequency"),
    ("ppsi+band=2000", {}, "method ppsi has no option band"),
])
def test_bad_spellings_name_the_problem(text, overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_method(text, **overrides)


def test_method_lists_refuse_two_spellings_of_one_method() -> None:
    assert [m.label for m in parse_methods("ppsi, gl32 ,pghi")] == [
        "ppsi", "griffin-lim+iters=32", "pghi"]
    with pytest.raises(ValueError, match="listed twice"):
        parse_methods("gl32,griffin-lim")


def test_options_given_two_ways_give_one_result(speech) -> None:
    from ppsi_cli.config import StftConfig
    from ppsi_cli.dsp.stft import stft

    mag = stft(speech[0][:12000].float(), StftConfig()).abs()
    a = invert(mag, "griffin-lim+iters=3+momentum=0")
    b = invert(mag, "griffin-lim", iters=3, momentum=0.0)
    assert torch.equal(a, b)
    assert not torch.allclose(a, invert(mag, "griffin-lim", iters=3))  # momentum is used


def _stft_of(entry) -> "StftConfig":
    from ppsi_cli.config import StftConfig

    return StftConfig(window=entry.window, hop_length=int(1024 * entry.hop_over_win))


def test_registry_names_every_shipped_file_with_its_hash() -> None:
    from ppsi_cli.weights import model_family, model_input, model_variant

    assert len({(e.variant, e.family, e.input) for e in W.SHIPPED}) == len(W.SHIPPED)
    for entry in W.SHIPPED:
        path = W.shipped_weights(entry.variant, _stft_of(entry), entry.input)
        assert path.name == entry.file
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256
        model = W.load_model(variant=entry.variant, stft=_stft_of(entry), input=entry.input)
        # the file declares what the registry says
        assert model_variant(model) == entry.variant and model_input(model) == entry.input
        assert model_family(model) == entry.family
    assert W.shipped_for("online").family == ("hann", Fraction(1, 4))  # the default
    with pytest.raises(ValueError, match="no shipped weights variant 'huge'"):
        W.shipped_weights("huge")
    # every shipped file is in the wheel's package data (the weights/ folder)
    assert {e.file for e in W.SHIPPED} <= {p.name for p in W.weights_dir().glob("*.pt")}


def test_a_shipped_file_that_fails_its_hash_is_refused(tmp_path, monkeypatch) -> None:
    for entry in W.SHIPPED:
        shutil.copy(W.weights_dir() / entry.file, tmp_path / entry.file)
    name = W.shipped_for("online").file
    data = bytearray((tmp_path / name).read_bytes())
    data[-100] ^= 1  # one flipped bit
    (tmp_path / name).write_bytes(bytes(data))
    monkeypatch.setattr(W, "weights_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="fail their SHA-256 check"):
        Inverter("ppsi")
    Inverter("ppsi-strided")  # the intact file still loads
    (tmp_path / name).unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        W.load_model()


def test_shipped_files_declare_their_family_and_measured_windows() -> None:
    from ppsi_cli.config import stft_config
    from ppsi_cli.weights import measured_window_ms, model_family

    online, strided = W.load_model(variant="online"), W.load_model(variant="strided")
    assert model_family(online) == model_family(strided) == ("hann", Fraction(1, 4))
    assert measured_window_ms(online) == (25.0, 64.0)
    assert measured_window_ms(strided) == (42.0, 64.0)
    assert Inverter("ppsi", stft=stft_config({"sample_rate": 48000, "n_fft": 2048})).notices == []
    far = Inverter("ppsi", stft=stft_config({"n_fft": 2048}))  # 128 ms at 16 kHz
    assert len(far.notices) == 1 and "128 ms window is outside the 25-64 ms" in far.notices[0]
    assert Inverter("ppsi-strided", stft=stft_config({"n_fft": 512})).notices  # 32 ms
