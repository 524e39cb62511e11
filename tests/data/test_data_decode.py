"""decode.py: every PIL mode -> uint8 CHW, orientation, resizing, bad files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.data.decode import (
    BadImageError,
    ImageTooLarge,
    decode_arrays,
    decode_file,
    decode_files,
    open_image,
    to_uint8_chw,
)
from imgcls.errors import UserError

RED, WHITE = (255, 0, 0), (255, 255, 255)


def _palette_image(transparent: bool) -> Image.Image:
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)  # index 1 = red
    if transparent:
        image.info["transparency"] = 1
    return image


def _mode_images() -> dict[str, Image.Image]:
    gradient16 = np.tile(np.array([0, 32768, 65535], dtype=np.uint16), (3, 1))
    return {
        "1": Image.new("1", (8, 8), 1),
        "L": Image.new("L", (8, 8), 100),
        "LA": Image.new("LA", (8, 8), (100, 255)),
        "P": _palette_image(transparent=False),
        "P-transparent": _palette_image(transparent=True),
        "RGB": Image.new("RGB", (8, 8), RED),
        "RGBA": Image.new("RGBA", (8, 8), (*RED, 255)),
        "CMYK": Image.new("CMYK", (8, 8), (0, 255, 255, 0)),
        "I;16": Image.fromarray(gradient16),
        "I": Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8) * 100_000),
        "F": Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)),
    }


@pytest.mark.parametrize("name", list(_mode_images()))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_mode_gives_uint8_chw(name: str, channels: int) -> None:
    out = to_uint8_chw(_mode_images()[name], channels=channels, size=6)
    assert out.dtype == torch.uint8
    assert out.shape == (channels, 6, 6)
    assert out.is_contiguous()


@pytest.mark.parametrize(
    ("name", "rgb"),
    [
        ("1", WHITE),
        ("L", (100, 100, 100)),
        ("LA", (100, 100, 100)),
        ("P", RED),
        ("P-transparent", WHITE),  # transparent palette entry -> white background
        ("RGB", RED),
        ("RGBA", RED),
        ("CMYK", RED),
    ],
)
def test_mode_values(name: str, rgb: tuple[int, int, int]) -> None:
    out = to_uint8_chw(_mode_images()[name], channels=3, size=8)
    assert out[:, 4, 4].tolist() == list(rgb)


def test_alpha_is_composited_on_white() -> None:
    clear = to_uint8_chw(Image.new("RGBA", (4, 4), (*RED, 0)), channels=3, size=4)
    half = to_uint8_chw(Image.new("RGBA", (4, 4), (*RED, 128)), channels=3, size=4)
    gray_clear = to_uint8_chw(Image.new("LA", (4, 4), (0, 0)), channels=1, size=4)
    assert clear[:, 0, 0].tolist() == [255, 255, 255]
    assert half[0, 0, 0] == 255 and abs(int(half[1, 0, 0]) - 127) <= 1
    assert gray_clear[0, 0, 0] == 255


def test_red_to_one_channel_is_luminance() -> None:
    out = to_uint8_chw(Image.new("RGB", (4, 4), RED), channels=1, size=4)
    assert out[0, 0, 0] == 76  # ITU-R 601: 0.299 * 255


def test_wide_modes_scale_by_their_own_range() -> None:
    images = _mode_images()
    sixteen = to_uint8_chw(images["I;16"], channels=1, size=3)[0, 0].tolist()
    assert sixteen[0] == 0 and abs(sixteen[1] - 128) <= 1 and sixteen[2] == 255
    int32 = to_uint8_chw(images["I"], channels=1, size=8)[0]
    floats = to_uint8_chw(images["F"], channels=3, size=8)
    assert int32.min() == 0 and int32.max() == 255
    assert floats[:, 0, 0].tolist() == [0, 0, 0] and floats[:, 7, 7].tolist() == [255] * 3


def test_sixteen_bit_png_file(tmp_path: Path) -> None:
    # 12-bit data in a 16-bit PNG: its brightest value becomes white, not 4095/65535 of it
    twelve_bit = np.array([[0, 2048, 4095]] * 3, dtype=np.uint16)
    Image.fromarray(twelve_bit).save(tmp_path / "twelve.png")
    Image.fromarray(twelve_bit * 16).save(tmp_path / "sixteen.png")
    twelve = to_uint8_chw(open_image(tmp_path / "twelve.png"), channels=3, size=3)
    sixteen = to_uint8_chw(open_image(tmp_path / "sixteen.png"), channels=3, size=3)
    assert twelve[:, 1].tolist() == [[0, 128, 255]] * 3
    assert torch.equal(twelve, sixteen)


def write_rotated_jpeg(path: Path) -> Path:
    """Stored 40x20: left half red, right half blue. Orientation 6 = display rotated 90 deg
    clockwise, so the viewer sees 20x40 with red on top."""
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, exif=exif.tobytes(), quality=95)
    return path


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = write_rotated_jpeg(tmp_path / "rotated.jpg")
    out = to_uint8_chw(open_image(path), channels=3, size=20)
    top_row, bottom_row = out[:, 2, :], out[:, 17, :]
    assert (top_row[0] > 200).all() and (top_row[2] < 60).all()  # all red across
    assert (bottom_row[2] > 200).all() and (bottom_row[0] < 60).all()  # all blue across


@pytest.mark.parametrize("width_height", [(50, 30), (30, 50), (33, 64), (17, 17), (7, 9)])
def test_resize_matches_torchvision_resize_centercrop(width_height: tuple[int, int]) -> None:
    from torchvision.transforms import v2

    pixels = np.random.default_rng(0).integers(0, 256, (*width_height[::-1], 3), np.uint8)
    image = Image.fromarray(pixels)
    reference = v2.Compose([v2.Resize(16, antialias=True), v2.CenterCrop(16), v2.PILToTensor()])
    assert torch.equal(to_uint8_chw(image, channels=3, size=16), reference(image))


def test_square_image_of_the_target_size_is_untouched() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (12, 12, 3), np.uint8)
    out = to_uint8_chw(Image.fromarray(pixels), channels=3, size=12)
    assert torch.equal(out, torch.from_numpy(pixels).permute(2, 0, 1))


def _png_bytes(seed: int, size: int = 64) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_bytes(seed: int, size: int = 64) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_bad_files_are_skipped_and_named(tmp_path: Path) -> None:
    files = {
        "good1.png": _png_bytes(0),
        "truncated.png": _png_bytes(1)[:3000],
        "good2.jpg": _jpeg_bytes(2),
        "truncated.jpg": _jpeg_bytes(3)[:1500],
        "text.png": b"this is not an image\n",
        "empty.png": b"",
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    paths = [tmp_path / name for name in files] + [tmp_path / "missing.png"]
    images, decoded, skipped = decode_files(paths, channels=3, size=32)
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.uint8
    assert decoded == [0, 2]
    reasons = {Path(path).name: reason for path, reason in skipped}
    assert set(reasons) == {"truncated.png", "truncated.jpg", "text.png", "empty.png",
                            "missing.png"}
    assert "truncated" in reasons["truncated.png"] and "truncated" in reasons["truncated.jpg"]
    assert "not an image" in reasons["text.png"]
    assert "empty" in reasons["empty.png"]
    assert "not found" in reasons["missing.png"]
    # the good ones decode exactly as they would alone (through decode_file: for this JPEG,
    # libjpeg's 1/2-scale decode, which differs from a full decode + resize by rounding)
    assert torch.equal(images[1], decode_file(paths[2], channels=3, size=32))


def test_decode_files_with_no_paths() -> None:
    images, decoded, skipped = decode_files([], channels=1, size=8)
    assert images.shape == (0, 1, 8, 8) and decoded == [] and skipped == []


# PIL warns above 1x its limit (imgcls's own check refuses, from the header) and raises above
# 2x (PIL's refusal, passed on).
@pytest.mark.parametrize(("pixels", "own_check"), [(150, True), (400, False)])
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pixels: int, own_check: bool
) -> None:
    path = tmp_path / "bomb.png"
    Image.new("L", (pixels, 1)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(BadImageError, match="decompression bomb") as caught:
        open_image(path)
    assert caught.value.path == str(path)
    assert isinstance(caught.value, ImageTooLarge) is own_check
    assert isinstance(caught.value.__cause__, Image.DecompressionBombError) is not own_check


def test_bad_image_error_is_a_one_line_user_error(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_text("no\nimage\n")
    with pytest.raises(UserError) as caught:
        open_image(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_decode_arrays_matches_the_file_path() -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (5, 10, 10, 3), np.uint8)
    gray = rgb[..., 0].copy()
    for arrays in (rgb, gray):
        for channels in (1, 3):
            for size in (10, 14):
                batch = decode_arrays(arrays, channels=channels, size=size)
                one_by_one = torch.stack([
                    to_uint8_chw(Image.fromarray(a), channels=channels, size=size)
                    for a in arrays
                ])
                assert torch.equal(batch, one_by_one), (arrays.shape, channels, size)


def _photo(width: int, height: int, gray: bool = False) -> Image.Image:
    """Smooth colour gradients plus mild noise: a stand-in for a photo."""
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    rgb = np.stack([np.sin(3 * x + c) * np.cos(4 * y - c) for c in range(3)], axis=-1)
    noise = np.random.default_rng(width).normal(0, 4, (height, width, 3))
    image = Image.fromarray((rgb * 100 + 128 + noise).clip(0, 255).astype(np.uint8))
    return image.convert("L") if gray else image


@pytest.mark.parametrize("gray", [False, True])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [24, 64, 120])  # 1/8 and 1/2 libjpeg scale; torchvision path
def test_decode_file_matches_the_reference_path(
    tmp_path: Path, gray: bool, channels: int, size: int
) -> None:
    path = tmp_path / "photo.jpg"
    _photo(200, 150, gray).save(path, quality=92)
    fast = decode_file(path, channels=channels, size=size)
    reference = to_uint8_chw(open_image(path), channels=channels, size=size)
    assert fast.shape == reference.shape and fast.dtype == torch.uint8
    difference = (fast.int() - reference.int()).abs()
    assert difference.float().mean() < 1.5 and difference.max() <= 24  # rounding, no shift


@pytest.mark.parametrize("size", [10, 20])  # libjpeg-scaled (PIL) and torchvision paths
def test_decode_file_applies_exif_orientation(tmp_path: Path, size: int) -> None:
    path = write_rotated_jpeg(tmp_path / "rotated.jpg")
    out = decode_file(path, channels=3, size=size)
    assert out[0, 1].min() > 200 and out[2, 1].max() < 60  # red across the top row
    assert out[2, -2].min() > 200 and out[0, -2].max() < 60  # blue across the bottom row


def test_decode_file_truncated_jpeg_on_the_torchvision_path(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    path.write_bytes(_jpeg_bytes(4, size=64)[:1500])
    with pytest.raises(BadImageError, match="truncated"):
        decode_file(path, channels=3, size=64)  # 64 px: no libjpeg scaling, torchvision decodes


def test_worker_processes_decode_like_threads(tmp_path: Path, monkeypatch) -> None:
    """Large folders decode in DataLoader worker processes: same images, order and skips."""
    import imgcls.data.decode as decode_module

    from imagefolder import write_folder

    root = write_folder(tmp_path / "shapes", per_class=5)
    (root / "top" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    paths = sorted(root.rglob("*.*"))
    threads = decode_module.decode_files(paths, channels=3, size=32)
    monkeypatch.setattr(decode_module, "_PROCESS_MIN_FILES", 1)
    processes = decode_module.decode_files(paths, channels=3, size=32)
    assert torch.equal(threads[0], processes[0])
    assert threads[1] == processes[1] and threads[2] == processes[2]
    assert len(processes[2]) == 1 and "zz_broken.png" in processes[2][0][0]
