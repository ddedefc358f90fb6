"""VQ tokenizer: shapes, FSQ ids, save/load, size, and the resumable training entry point on the CPU."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import maskmamba.train.tokenizer as train_tokenizer
from maskmamba.eval.tokenizer import codebook_usage, psnr_db, recon_grid, reconstruct, save_png
from maskmamba.models.tokenizer import FSQ, VQTokenizer, output_to_uint8, uint8_to_input

TINY = ["--enc-channels", "8", "8", "16", "16", "--dec-channels", "8", "8", "16", "16",
        "--enc-blocks", "1", "--dec-blocks", "1"]


def synthetic_images(count: int, seed: int = 0, size: int = 128) -> np.ndarray:
    """Flat-coloured circles and boxes on white, uint8 (count, size, size, 3)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        image = Image.new("RGB", (size, size), "white")
        draw = ImageDraw.Draw(image)
        for _ in range(2):
            x0, y0 = rng.integers(size // 16, size // 2, 2)
            x1, y1 = np.array([x0, y0]) + rng.integers(size // 5, size * 7 // 16, 2)
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
        images.append(np.asarray(image))
    return np.stack(images)


@pytest.fixture
def one_thread():
    """Tiny convs run far faster on one thread, above all when other processes share the two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> VQTokenizer:
    torch.manual_seed(0)
    return VQTokenizer().eval()


def test_shapes_and_id_range(model):
    x = uint8_to_input(torch.from_numpy(synthetic_images(2)))
    ids = model.encode(x)
    assert ids.shape == (2, 16, 16) and ids.dtype == torch.int64
    assert 0 <= int(ids.min()) and int(ids.max()) < model.codebook_size == 1000
    assert model.grid == 16
    images = model.decode(ids)
    assert images.shape == (2, 3, 128, 128) and images.min() >= -1 and images.max() <= 1
    recon, train_ids = model(x)
    assert recon.shape == (2, 3, 128, 128) and torch.equal(train_ids, ids)


def test_fsq_ids_are_a_bijection_and_quantize_passes_gradients():
    fsq = FSQ((8, 5, 5, 5))
    ids = torch.arange(1000)
    codes = fsq.ids_to_codes(ids)
    assert torch.equal(fsq.codes_to_ids(codes), ids)
    z = (torch.randn(64, 4) * 3).requires_grad_()
    zq = fsq.quantize(z)
    assert torch.equal(fsq.ids_to_codes(fsq.codes_to_ids(zq)), zq.detach())
    zq.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    sweep = fsq.quantize(torch.linspace(-8, 8, 4001)[:, None].expand(-1, 4))
    assert [sweep[:, d].unique().numel() for d in range(4)] == [8, 5, 5, 5]


def test_save_load_round_trip_is_bit_exact(model, tmp_path):
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    loaded = VQTokenizer.from_pretrained(tmp_path).eval()
    x = uint8_to_input(torch.from_numpy(synthetic_images(2, seed=1)))
    ids = model.encode(x)
    assert torch.equal(loaded.encode(x), ids)
    assert torch.equal(loaded.decode(ids), model.decode(ids))


def test_fp16_export_fits_in_4_mb(model, tmp_path):
    path = train_tokenizer.export_weights(model, tmp_path)
    assert path.stat().st_size <= 4_000_000
    loaded = VQTokenizer.from_pretrained(tmp_path)
    assert next(loaded.parameters()).dtype == torch.float32
    ids = torch.randint(0, 1000, (1, 16, 16))
    assert (loaded.decode(ids) - model.decode(ids)).abs().max() < 0.05


def test_uint8_conversions_round_trip():
    images = torch.from_numpy(synthetic_images(2))
    assert torch.equal(output_to_uint8(uint8_to_input(images)), images)


def test_metrics_and_grid(tmp_path):
    a = synthetic_images(8)
    assert psnr_db(a, a) == 100.0
    noisy = np.where(a >= 10, a - 10, a + 10).astype(np.uint8)
    assert psnr_db(a, noisy) == pytest.approx(10 * np.log10(255**2 / 100))
    assert codebook_usage(np.array([[0, 1], [1, 999]]), 1000) == 0.003
    grid = recon_grid(a, noisy)
    assert grid.size == (8 * 128, 2 * 128)
    assert save_png(grid, tmp_path / "grid.png") == (tmp_path / "grid.png").stat().st_size <= 100_000


def read_log(run) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_training_reduces_loss_and_resumes(tmp_path, monkeypatch, one_thread):
    images = synthetic_images(16, size=32)  # the nets are fully convolutional: 32x32 keeps the test fast
    monkeypatch.setattr(train_tokenizer, "load_split", lambda root, split: images)
    run = tmp_path / "run"
    common = ["--data", "unused", "--out", str(run), "--device", "cpu", "--batch", "4", "--lr", "3e-3",
              "--warmup", "2", "--log-every", "5", "--val-images", "4", "--seed", "1", *TINY]
    first = train_tokenizer.main([*common, "--steps", "40"])
    assert first.step == 40 and (run / "ckpt.pt").is_file()
    losses = [r["loss"] for r in read_log(run) if "loss" in r]
    assert len(losses) == 8 and losses[-1] < 0.6 * losses[0], losses

    export = tmp_path / "export"
    second = train_tokenizer.main([*common, "--steps", "45", "--export", str(export)])
    assert second.step == 45
    log = read_log(run)
    starts = [r for r in log if r.get("event") == "start"]
    assert [r["step"] for r in starts] == [0, 40]
    assert [r["step"] for r in log if r.get("event") == "checkpoint"] == [40, 45]
    loaded = VQTokenizer.from_pretrained(export)
    recon, ids = reconstruct(loaded, images[:2])
    assert recon.shape == (2, 32, 32, 3) and ids.shape == (2, 4, 4)


def test_training_with_gan_term(tmp_path, monkeypatch, one_thread):
    monkeypatch.setattr(train_tokenizer, "load_split", lambda root, split: synthetic_images(4, size=32))
    run = tmp_path / "gan"
    args = ["--data", "unused", "--out", str(run), "--device", "cpu", "--batch", "2", "--steps", "3",
            "--gan-weight", "0.1", "--gan-start", "1", "--fm-weight", "1.0", "--log-every", "3", "--val-images", "2", *TINY]
    trainer = train_tokenizer.main(args)
    record = next(r for r in read_log(run) if "loss" in r)
    assert np.isfinite(record["d_loss"]) and np.isfinite(record["g_loss"]) and record["gan_w"] > 0
    assert record["fm"] > 0
    assert "disc" in torch.load(run / "ckpt.pt", weights_only=True) and trainer.step == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_steps_on_cuda_with_bf16_and_gan(tmp_path, monkeypatch):
    monkeypatch.setattr(train_tokenizer, "load_split", lambda root, split: synthetic_images(16))
    run = tmp_path / "cuda"
    args = ["--data", "unused", "--out", str(run), "--device", "cuda", "--batch", "8", "--steps", "20",
            "--warmup", "2", "--gan-weight", "0.1", "--gan-start", "10", "--log-every", "10", "--val-images", "8"]
    trainer = train_tokenizer.main(args)
    records = [r for r in read_log(run) if "loss" in r]
    assert trainer.step == 20 and all(np.isfinite(r["loss"]) for r in records)
    assert records[-1]["l1"] < records[0]["l1"] and "d_loss" in records[-1]


def test_feature_matching_is_zero_for_identical_images_and_positive_otherwise():
    disc = train_tokenizer.PatchDiscriminator()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert len(disc.features(x)) == 3
    assert train_tokenizer.feature_matching(disc, x, disc.features(x)).item() == 0
    assert train_tokenizer.feature_matching(disc, x, disc.features(x.flip(-1))).item() > 0
    assert torch.equal(disc.net[-1](disc.features(x)[-1]), disc(x))  # the logits follow from the last features


def test_new_decoder_keeps_the_init_encoder_and_its_token_ids_and_resumes_frozen(tmp_path, monkeypatch, one_thread):
    images = synthetic_images(4, size=32)
    monkeypatch.setattr(train_tokenizer, "load_split", lambda root, split: images)
    torch.manual_seed(0)
    init = VQTokenizer(image_size=32, enc_channels=(8, 8, 16, 16), dec_channels=(8, 8, 16, 16), enc_blocks=1, dec_blocks=1)
    init.save_pretrained(tmp_path / "init")
    run = ["--data", "unused", "--out", str(tmp_path / "run"), "--device", "cpu", "--batch", "2",
           "--log-every", "3", "--val-images", "2"]
    new_decoder = ["--init", str(tmp_path / "init"), "--freeze-encoder", "--new-decoder",
                   "--dec-channels", "8", "16", "16", "24", "--dec-blocks", "2"]
    trainer = train_tokenizer.main([*run, *new_decoder, "--steps", "3"])
    assert trainer.model_config["dec_channels"] == [8, 16, 16, 24] and trainer.model_config["dec_blocks"] == 2
    x = uint8_to_input(torch.from_numpy(images))
    assert torch.equal(trainer.model.encode(x), init.encode(x))
    resumed = train_tokenizer.main([*run, "--steps", "4"])  # the checkpoint remembers the frozen encoder
    assert resumed.step == 4 and not any(p.requires_grad for p in resumed.model.encoder.parameters())
    assert torch.equal(resumed.model.encode(x), init.encode(x))


def test_shift_on_white_moves_each_image_by_whole_pixels_within_the_limit():
    x = -torch.ones(64, 3, 16, 16)  # black images; a shift brings in white from outside
    x[:, :, 8, 8] = 0.5  # one grey marker pixel
    torch.manual_seed(0)
    shifted = train_tokenizer.shift_on_white(x, 3)
    offsets = set()
    for image in shifted:
        (y, x_), = torch.nonzero(image[0] == 0.5).tolist()
        dy, dx = y - 8, x_ - 8
        offsets.add((dy, dx))
        assert abs(dy) <= 3 and abs(dx) <= 3
        white = image[0] == 1.0  # exactly the rows and columns uncovered by the shift
        expect = torch.zeros(16, 16, dtype=torch.bool)
        expect[:dy] = dy > 0
        expect[16 + dy:] = dy < 0
        expect[:, :dx] |= dx > 0
        expect[:, 16 + dx:] |= dx < 0
        assert torch.equal(white, expect), (dy, dx)
    assert len(offsets) > 20  # offsets differ per image
    assert torch.equal(train_tokenizer.sample_batch(torch.zeros(2, 8, 8, 3, dtype=torch.uint8), 4, 0).abs(),
                       torch.ones(4, 3, 8, 8))  # no shift: flips only, black stays black


def test_levels_set_the_codebook_and_augmented_training_resumes(tmp_path, monkeypatch, one_thread):
    images = synthetic_images(8, size=32)
    monkeypatch.setattr(train_tokenizer, "load_split", lambda root, split: images)
    run, export = tmp_path / "run", tmp_path / "export"
    common = ["--data", "unused", "--out", str(run), "--device", "cpu", "--batch", "4", "--warmup", "1",
              "--val-images", "4", "--augment", "--max-shift", "2", *TINY]
    first = train_tokenizer.main([*common, "--steps", "3", "--levels", "4", "4", "4", "4", "4"])
    assert first.model.codebook_size == 1024
    second = train_tokenizer.main([*common, "--steps", "5", "--export", str(export)])  # levels from the checkpoint
    assert second.step == 5 and second.model.codebook_size == 1024
    loaded = VQTokenizer.from_pretrained(export)
    assert loaded.codebook_size == 1024 and reconstruct(loaded, images[:2])[1].max() < 1024
    with pytest.raises(SystemExit):
        train_tokenizer.main([*common, "--levels", "8", "1", "5"])
