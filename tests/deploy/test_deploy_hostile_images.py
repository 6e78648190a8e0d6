"""Issue 17, item 8: image files by bit depth, bounded decoding, non-regular files, per-file failures."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pytest
from hostile import FASHION, assert_error, png_header_size, pooled_onnx, run_cli, write_grey_tiff
from PIL import Image

import deploy
from deploy.images import MAX_PIXELS, read_image

GIB = 1 << 30


def save(path: Path, array: np.ndarray, **kwargs) -> Path:
    Image.fromarray(array).save(path, **kwargs)
    return path


def deep_twins(tmp_path: Path, u8: np.ndarray) -> dict[str, Path]:
    """The same grey picture at other bit depths, each value u8 / 255 of its full scale (to < 1e-7)."""
    wide = u8.astype(np.float64) / 255
    return {
        "16-bit PNG": save(tmp_path / "a16.png", u8.astype(np.uint16) * 257),
        "16-bit TIFF": save(tmp_path / "a16.tif", u8.astype(np.uint16) * 257),
        "16-bit PPM": save(tmp_path / "a16.ppm", u8.astype(np.uint16) * 257),
        "float TIFF": save(tmp_path / "f32.tif", u8.astype(np.float32) / 255),
        "int32 TIFF": save(tmp_path / "i32.tif", np.round(wide * (2**31 - 1)).astype(np.int32)),
        "uint32 TIFF": write_grey_tiff(tmp_path / "u32.tif", np.round(wide * (2**32 - 1)).astype(np.uint32), 1),
    }


def test_deep_images_give_the_8_bit_answer(onnx_model, raw_images, tmp_path):
    u8 = raw_images[7]
    runner = deploy.load(onnx_model[0])
    eight = save(tmp_path / "a8.png", u8)
    want = runner.predict(read_image(eight))[0]
    twins = deep_twins(tmp_path, u8)
    for kind, path in twins.items():
        pixels = read_image(path)
        assert pixels.dtype == np.float32 and pixels.shape == (28, 28), kind
        np.testing.assert_allclose(pixels, u8 / 255, atol=1e-7, err_msg=kind)
        np.testing.assert_allclose(runner.predict(pixels)[0], want, atol=1e-5, err_msg=kind)
    run = run_cli("classify", onnx_model[0], eight, *twins.values(), "--top", "10")
    assert run.returncode == 0 and run.stderr == "", run.stderr
    answers = [line.split(": ", 1)[1] for line in run.stdout.splitlines()]
    assert len(answers) == 1 + len(twins) and set(answers) == {answers[0]}, run.stdout


def test_signed_tiffs_scale_by_their_positive_range(tmp_path, raw_images):
    u8 = raw_images[2]
    path = write_grey_tiff(tmp_path / "s16.tif", np.round(u8 / 255 * 32767).astype(np.int16), 2)
    np.testing.assert_allclose(read_image(path), u8 / 255, atol=0.5 / 32767 + 1e-7)


@pytest.mark.parametrize("make, message", [
    (lambda p, u8: save(p / "hdr.tif", u8.astype(np.float32)), r"float pixel values must lie in \[0, 1\]"),
    (lambda p, u8: save(p / "nan.tif", np.full((28, 28), np.nan, np.float32)),
     r"float pixel values must lie in \[0, 1\]"),
    (lambda p, u8: save(p / "neg.tif", u8.astype(np.int32) - 128),
     r"pixel values -128\.\.127 do not fit the declared 32-bit signed depth"),
    (lambda p, u8: write_grey_tiff(p / "neg16.tif", u8.astype(np.int16) - 1, 2),
     r"pixel values -1\.\.254 do not fit the declared 16-bit signed depth"),
])
def test_out_of_range_deep_images_are_refused(onnx_model, raw_images, tmp_path, make, message):
    path = make(tmp_path, raw_images[0])
    assert_error(run_cli("classify", onnx_model[0], path), 1, f"cannot read image '.*{path.name}': {message}")


def png_of_blank_rows(path: Path, width: int, height: int, colour: bool) -> Path:
    """A valid PNG of ``width`` x ``height`` black pixels, written row by row: kilobytes on disk."""
    header = Image.new("RGB" if colour else "L", (1, 1))
    header.save(path)
    small = png_header_size(path.read_bytes(), width, height)
    ihdr_end = 8 + 25
    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + width * (3 if colour else 1))
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    chunk = b"IDAT" + idat
    path.write_bytes(small[:ihdr_end] + len(idat).to_bytes(4, "big") + chunk
                     + zlib.crc32(chunk).to_bytes(4, "big") + b"\x00\x00\x00\x00IEND\xaeB`\x82")
    return path


def test_a_small_png_declaring_too_many_pixels_is_refused_before_decoding(onnx_model, tmp_path, raw_images):
    side = int(MAX_PIXELS**0.5) + 64  # just over the limit, under Pillow's own bomb check
    bomb = png_of_blank_rows(tmp_path / "bomb.png", side, side, colour=True)
    assert bomb.stat().st_size < 1 << 20
    good = save(tmp_path / "good.png", raw_images[0])
    run = run_cli("classify", onnx_model[0], bomb, good, limit=GIB)
    assert_error(run, 1, rf"'.*bomb.png': {side} x {side} pixels is more than the 67 megapixels deploy decodes")
    assert run.stdout.startswith(f"{good}: ")
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header_size(good.read_bytes(), 100_000, 100_000))  # past Pillow's limit too
    assert_error(run_cli("classify", onnx_model[0], huge, limit=GIB), 1, "its size is more than the 67 megapixels")


def test_the_largest_allowed_rgb_image_classifies_in_bounded_memory(onnx_model, tmp_path):
    side = int(MAX_PIXELS**0.5)
    path = png_of_blank_rows(tmp_path / "big.png", side, side, colour=True)
    run = run_cli("classify", onnx_model[0], path, limit=3 * GIB, timeout=120)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    small = save(tmp_path / "small.png", np.zeros((28, 28, 3), np.uint8))
    assert run.stdout.split(": ")[1] == run_cli("classify", onnx_model[0], small).stdout.split(": ")[1]


def test_a_thin_strip_does_not_blow_up_the_resize(tmp_path):
    """Shorter side 1 px scaled to resize_size 32 used to build a 32 x 32,000,000 float image (4 GB)."""
    model = pooled_onnx(tmp_path / "model.onnx", preprocessing={**FASHION, "resize_size": 32})
    strip = save(tmp_path / "strip.png", np.tile(np.arange(256, dtype=np.uint8), 4000)[None, :1_000_000])
    run = run_cli("classify", model, strip, limit=GIB)
    assert run.returncode == 0 and run.stderr == "" and run.stdout.startswith(f"{strip}: class "), run.stderr


def test_non_regular_files_are_refused_without_blocking(onnx_model, raw_images, tmp_path):
    fifo = tmp_path / "camera.png"
    os.mkfifo(fifo)
    good = save(tmp_path / "good.png", raw_images[1])
    run = run_cli("classify", onnx_model[0], fifo, tmp_path, "/dev/zero", good, timeout=30)
    assert_error(run, 1, "'.*camera.png': it is a FIFO, socket or device, not a regular file", lines=3)
    assert "it is a directory" in run.stderr and "'/dev/zero': it is a FIFO, socket or device" in run.stderr
    assert len(run.stdout.splitlines()) == 1 and run.stdout.startswith(f"{good}: ")


def test_one_bad_file_does_not_stop_the_batch(onnx_model, raw_images, tmp_path):
    runner = deploy.load(onnx_model[0])
    files = [save(tmp_path / f"img{i}.png", raw_images[i]) for i in range(3)]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(files[0].read_bytes()[:60])
    eps = tmp_path / "page.eps"  # Pillow would hand EPS to Ghostscript: not a format deploy reads
    eps.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nshowpage\n")
    order = [files[0], corrupt, files[1], tmp_path / "missing.png", eps, files[2]]
    run = run_cli("classify", onnx_model[0], *order)
    assert_error(run, 1, "'.*corrupt.png'", lines=3)
    assert [line.split("'")[1] for line in run.error_lines] == [str(corrupt), str(tmp_path / "missing.png"), str(eps)]
    assert "No such file or directory" in run.error_lines[1] and "cannot identify image file" in run.error_lines[2]
    names = runner.class_names
    expected = [f"{path}: {names[label]}" for path, label in zip(files, runner.predict(raw_images[:3])[1])]
    assert [line.rsplit(" ", 1)[0] for line in run.stdout.splitlines()] == expected


def test_help_says_what_happens_to_failed_files(capsys):
    from deploy.cli import main

    with pytest.raises(SystemExit) as done:
        main(["classify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert done.value.code == 0
    assert "reported on stderr, one line each; the other files are still classified" in text
    assert "exit status: 0 all done, 1 a bad model or image file or a failed run, 2 a bad option value" in text
