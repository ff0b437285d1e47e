"""gaze.viz.heat (PIM's heat.py for any backbone) and the cub/folder heat CLIs, against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cub import heat as cub_heat
from cub.experiment import build_model as build_cub_model
from cub.experiment import load_cub_config
from folder import heat as folder_heat
from folder.experiment import build_model as build_folder_model
from folder.experiment import load_folder_config
from gaze.engine.checkpoint import make_checkpoint, save_checkpoint
from gaze.models import create_model
from gaze.viz.heat import (
    HEAT_FILES,
    class_grad_cam,
    heat_input,
    normalize_image,
    overlay,
    pim_heat_maps,
    published_heat,
    red_heat_image,
    resize_side,
    stage_heat,
    write_heat_images,
)

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 1e-7


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of 1-D linear interpolation with half-pixel centres (cv2.resize, align_corners=False)."""
    source = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    matrix = np.zeros((n_out, n_in))
    np.add.at(matrix, (np.arange(n_out), low), 1 - (source - low))
    np.add.at(matrix, (np.arange(n_out), high), source - low)
    return matrix


def _numpy_stage_heat(stages: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """The spec (cub_pim.md §3.6) by hand for one sample: stages [(C,h,w)] -> (H,W)."""
    total = np.zeros(size)
    for stage, weight in zip(stages, (8, 4, 2, 1)):
        activation = np.maximum(stage, 0).sum(0)
        activation = (activation - activation.min()) / (activation.max() - activation.min() + EPS)
        h, w = activation.shape
        total += weight * _bilinear_matrix(h, size[0]) @ activation @ _bilinear_matrix(w, size[1]).T
    total /= 15
    return (total - total.min()) / (total.max() - total.min() + EPS)


def test_stage_heat_is_the_hand_computation_on_any_grids():
    generator = torch.Generator().manual_seed(0)
    grids = [(3, 8, 8), (5, 4, 6), (4, 2, 3), (6, 1, 1)]  # the 1x1 stage is constant: it adds zeros, not NaN
    stages = [torch.randn(2, c, h, w, generator=generator) for c, h, w in grids]
    heat = stage_heat(stages, (16, 20))
    assert heat.shape == (2, 16, 20) and torch.isfinite(heat).all()
    for b in range(2):
        expected = _numpy_stage_heat([s[b].numpy().astype(np.float64) for s in stages], (16, 20))
        np.testing.assert_allclose(heat[b].numpy(), expected, atol=1e-5)
    assert float(heat.amin()) == 0.0 and float(heat.amax()) == pytest.approx(1.0, abs=1e-5)


def test_constant_stages_give_zeros_not_nan():
    heat = stage_heat([torch.ones(1, 2, 4, 4)] * 4, (8, 8))
    assert torch.equal(heat, torch.zeros(1, 8, 8))


def test_red_heat_image_and_overlay_are_the_published_arithmetic():
    heat = torch.tensor([[0.0, 0.5, 0.749], [0.75, 0.9, 0.999]])
    image = red_heat_image(heat, threshold=0.75)
    assert image.dtype == np.uint8 and image.shape == (2, 3, 3)
    np.testing.assert_array_equal(image[..., 0], [[0, 0, 0], [191, 229, 254]])  # int(h * 255), as astype(uint8)
    assert not image[..., 1:].any()
    photo = np.full((2, 3, 3), 101, dtype=np.uint8)
    np.testing.assert_array_equal(overlay(photo, image), (0.5 * photo + 0.5 * image).astype(np.uint8))


def test_the_view_is_squashed_to_510_at_384_then_centre_cropped():
    assert resize_side(384) == 510 and resize_side(64) == 85 and resize_side(64, 100) == 100
    with pytest.raises(ValueError, match="smaller"):
        resize_side(64, 32)
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    view = heat_input(photo, 64)
    assert view.dtype == torch.uint8 and view.shape == (3, 64, 64)


def _tiny_pim(backbone: str, size: int, upsample: str, classes: int = 4):
    torch.manual_seed(0)
    return create_model("pim", num_classes=classes, backbone=backbone, input_size=size, fpn_size=16,
                        fpn_upsample=upsample).eval()


def _photo(size: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size + 17, 3), dtype=np.uint8))


@pytest.mark.parametrize("backbone, size, upsample", [("resnet18", 64, "bilinear"),
                                                      ("swin_tiny_patch4_window7_224", 112, "conv")])
def test_every_image_is_written_for_cnn_and_token_backbones(backbone, size, upsample, tmp_path):
    model = _tiny_pim(backbone, size, upsample)
    view = heat_input(_photo(size), size)
    maps = pim_heat_maps(model, view, threshold=0.75)
    with torch.no_grad():
        stages = model.backbone.forward_stages(normalize_image(view))
    torch.testing.assert_close(maps.heat, stage_heat(stages, (size, size))[0])
    heatmap = maps.images["heatmap"]
    assert not heatmap[..., 1:].any()  # red only (RGB channel 0 = the published BGR channel 2)
    assert not heatmap[..., 0][maps.heat.numpy() < 0.75].any() and heatmap[..., 0].any()
    np.testing.assert_array_equal(maps.images["rbg_img"], view.permute(1, 2, 0).numpy())
    np.testing.assert_array_equal(maps.images["mix"], overlay(maps.images["rbg_img"], heatmap))
    assert not maps.images["gradcam"][..., 1:].any()
    written = write_heat_images(maps.images, tmp_path / "out")
    assert [p.name for p in written] == list(HEAT_FILES.values())
    assert [p.name for p in written][:3] == ["heatmap.jpg", "rbg_img.jpg", "mix.jpg"]
    for path in written:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == (size, size) and image.mode == "RGB"
    assert not list((tmp_path / "out").glob(".*.tmp"))


def _hand_grad_cam(model, images, target):
    """Grad-CAM by hand: the combiner's logit of ``target`` against the last stage map."""
    stages = model.backbone.forward_stages(images)
    last = stages[-1]
    logits = model.heads(stages)["comb_outs"]
    (gradient,) = torch.autograd.grad(logits[0, target], last)
    cam = F.relu((gradient.mean(dim=(2, 3), keepdim=True) * last).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[0, 0].detach()
    return (cam - cam.min()) / (cam.max() - cam.min() + EPS)


@pytest.mark.parametrize("backbone, size, upsample", [("resnet18", 96, "bilinear"),
                                                      ("swin_tiny_patch4_window7_224", 112, "conv")])
def test_grad_cam_is_class_specific_while_the_published_heat_is_not(backbone, size, upsample):
    model = _tiny_pim(backbone, size, upsample)
    view = heat_input(_photo(size, seed=1), size)
    images = normalize_image(view)
    cams = {t: class_grad_cam(model, images, t).cams[0, 0] for t in range(4)}
    for t, cam in cams.items():
        torch.testing.assert_close(cam, _hand_grad_cam(model, images, t), atol=1e-4, rtol=1e-4)
    assert any(not torch.allclose(cams[0], cams[t], atol=1e-3) for t in (1, 2, 3))
    first, second = pim_heat_maps(model, view, target_class=0), pim_heat_maps(model, view, target_class=1)
    assert (first.target, second.target) == (0, 1) and first.predicted == second.predicted
    torch.testing.assert_close(first.heat, second.heat)
    np.testing.assert_array_equal(first.images["heatmap"], second.images["heatmap"])
    torch.testing.assert_close(first.heat, published_heat(model, images)[0])
    default = pim_heat_maps(model, view)
    assert default.target == default.predicted == int(model(images).argmax())
    assert model.training is False


def test_target_class_out_of_range_is_an_error():
    model = _tiny_pim("resnet18", 64, "bilinear")
    with pytest.raises(ValueError, match="target_class=9: the model has 4 classes"):
        pim_heat_maps(model, heat_input(_photo(64), 64), target_class=9)


TINY_PIM = ["--model_type=pim", "--backbone=resnet18", "--pretrain_path=None", "--input_size=64", "--fpn_size=16",
            "--num_selects=[32,8,4,1]"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny PIM checkpoint of each tree (folder: K from the weights; cub: num_classes saved), a baseline one, a photo."""
    folder = tmp_path_factory.mktemp("heat")
    folder_config = load_folder_config(TINY_PIM)
    save_checkpoint(folder / "folder.pt", make_checkpoint(build_folder_model(folder_config, 3), config=folder_config))
    cub_config = load_cub_config([*TINY_PIM, "--num_classes=5"])
    save_checkpoint(folder / "cub.pt", make_checkpoint(build_cub_model(cub_config), config=cub_config))
    baseline_config = load_folder_config(["--model_type=baseline", "--backbone=resnet18", "--pretrain_path=None"])
    save_checkpoint(folder / "baseline.pt", make_checkpoint(build_folder_model(baseline_config, 3),
                                                            config=baseline_config))
    _photo(40).convert("L").save(folder / "photo.jpg")  # grey: the project's loader makes it RGB
    return folder


@pytest.mark.parametrize("tree, name", [(folder_heat, "folder.pt"), (cub_heat, "cub.pt")])
def test_the_cli_writes_every_image_of_a_checkpoint(tree, name, checkpoints, tmp_path, capsys):
    out = tmp_path / "heat"
    argv = [f"--checkpoint={checkpoints / name}", f"--img={checkpoints / 'photo.jpg'}", f"--save_img={out}",
            "--threshold=0.5", "--target_class=2", "--device=cpu"]
    assert tree.main(argv) == 0
    for file in HEAT_FILES.values():
        with Image.open(out / file) as image:
            assert image.size == (64, 64), file
    assert "Grad-CAM of class 2" in capsys.readouterr().err


def test_cli_errors_name_the_file_and_exit_with_2(checkpoints, tmp_path, capsys):
    good = [f"--checkpoint={checkpoints / 'folder.pt'}", f"--img={checkpoints / 'photo.jpg'}", f"--save_img={tmp_path}"]
    cases = {
        "missing image": ([good[0], f"--img={tmp_path / 'nope.jpg'}", good[2]], str(tmp_path / "nope.jpg")),
        "missing checkpoint": ([f"--checkpoint={tmp_path / 'nope.pt'}", *good[1:]], str(tmp_path / "nope.pt")),
        "not a PIM": ([f"--checkpoint={checkpoints / 'baseline.pt'}", *good[1:]], "holds a 'baseline' model"),
        "bad class": ([*good, "--target_class=3"], "target_class=3: the model has 3 classes"),
        "bad threshold": ([*good, "--threshold=1.5"], "--threshold=1.5"),
        "unknown key": ([*good, "--thresold=0.5"], "unknown config key 'thresold'"),
    }
    for case, (argv, expected) in cases.items():
        assert folder_heat.main(argv) == 2, case
        assert expected in capsys.readouterr().err, case
    assert not list(tmp_path.glob("*.jpg"))
