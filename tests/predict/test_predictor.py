"""UncertaintySamPredictor: set an image once (K samples, one encoder forward), then click."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import uncertainty_adapters as ua
from uncertainty_adapters.integrations.sam import Prompts, UncertaintySamPredictor
from uncertainty_adapters.uncertainty import uncertainty_maps

from .conftest import SIZE, lesion_image, tiny_model

H, W = 48, 80
POINT = [[30, 24]]


@pytest.fixture
def predictor(model) -> UncertaintySamPredictor:
    return UncertaintySamPredictor(model)


@pytest.fixture
def image() -> np.ndarray:
    return lesion_image(H, W)


class CallCounter:
    """Counts forward calls of modules and records the batch size each one saw."""

    def __init__(self, **modules: torch.nn.Module) -> None:
        self.calls = {name: 0 for name in modules}
        self.batches: dict[str, list[int]] = {name: [] for name in modules}
        self.handles = [module.register_forward_pre_hook(self._hook(name)) for name, module in modules.items()]

    def _hook(self, name: str):
        def hook(module, args):
            self.calls[name] += 1
            self.batches[name].append(args[0].shape[0] if args and isinstance(args[0], torch.Tensor) else -1)
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def test_predict_returns_k_masks_and_maps_at_the_original_size(predictor, image):
    predictor.set_image(image, num_samples=4, seed=0)
    out = predictor.predict(point_coords=POINT)
    assert out.num_samples == 4
    assert out.masks.shape == out.logits.shape == (4, H, W) and out.masks.dtype == np.bool_
    assert out.mean.shape == out.variance.shape == out.entropy.shape == (H, W)
    assert out.z.shape == (4, predictor.model.config.latent_dim)
    assert predictor.original_size == (H, W) and predictor.num_samples == 4


def test_masks_are_positive_logits_and_maps_are_the_uncertainty_maps_of_the_samples(predictor, image):
    predictor.set_image(image, num_samples=3, seed=0)
    out = predictor.predict(point_coords=POINT)
    np.testing.assert_array_equal(out.masks, out.logits > 0)
    maps = uncertainty_maps(torch.from_numpy(out.logits).sigmoid()[None])
    for name in ("mean", "variance", "entropy"):
        np.testing.assert_allclose(getattr(out, name), maps[name][0].numpy(), atol=1e-6)
    np.testing.assert_array_equal(out.mean_mask, out.mean > 0.5)


def test_the_samples_differ(predictor, image):
    predictor.set_image(image, num_samples=4, seed=0)
    out = predictor.predict(point_coords=POINT)
    assert not np.allclose(out.logits[0], out.logits[1])
    assert out.variance.max() > 0


def test_set_image_is_one_encoder_forward_with_block_0_run_once(predictor, image):
    model = predictor.model
    counter = CallCounter(encoder=model.encoder, block0=model.image_encoder.blocks[0],
                          block1=model.image_encoder.blocks[1], prior=model.latent_heads.prior_net)
    try:
        predictor.set_image(image, num_samples=4, seed=0)
    finally:
        counter.remove()
    assert counter.calls == {"encoder": 1, "block0": 1, "block1": 1, "prior": 1}
    assert counter.batches["block0"] == [1] and counter.batches["block1"] == [4]
    assert predictor.get_image_embedding().shape[0] == 4


def test_a_second_click_runs_only_the_prompt_encoder_and_decoder(predictor, image):
    model = predictor.model
    predictor.set_image(image, num_samples=4, seed=0)
    cached = predictor.get_image_embedding().clone()
    counter = CallCounter(encoder=model.encoder, prior=model.latent_heads.prior_net,
                          prompt_encoding=model.prompt_encoder.pe_layer, transformer=model.mask_decoder.transformer)
    try:
        first = predictor.predict(point_coords=POINT)
        second = predictor.predict(point_coords=[[60, 10]])
    finally:
        counter.remove()
    assert counter.calls == {"encoder": 0, "prior": 0, "prompt_encoding": 2, "transformer": 2}
    assert torch.equal(predictor.get_image_embedding(), cached)
    assert not np.allclose(first.logits, second.logits)


def test_the_same_seed_gives_the_same_samples(predictor, image):
    predictor.set_image(image, num_samples=2, seed=7)
    first = predictor.predict(point_coords=POINT)
    predictor.set_image(image, num_samples=2, seed=7)
    again = predictor.predict(point_coords=POINT)
    predictor.set_image(image, num_samples=2, seed=8)
    other = predictor.predict(point_coords=POINT)
    np.testing.assert_array_equal(first.z, again.z)
    np.testing.assert_array_equal(first.logits, again.logits)
    assert not np.allclose(first.z, other.z)


def test_the_predictor_computes_what_uncertainty_sam_computes(predictor):
    model, k = predictor.model, 3
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    predictor.set_image(x[0].permute(1, 2, 0).numpy(), num_samples=k, seed=5)
    out = predictor.predict(point_coords=[[10, 20]], point_labels=[1])
    prompts = Prompts(points=torch.tensor([[[10.0, 20.0]]]), labels=torch.tensor([[1]]))
    with torch.no_grad():
        reference = model(x, prompts, num_samples=k, generator=torch.Generator().manual_seed(5))
    np.testing.assert_allclose(out.z, reference.z[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(out.logits, reference.logits[0].numpy(), atol=1e-4)


def test_a_model_that_samples_a_mixture_prior_predicts_from_it():
    model, k = tiny_model()[0], 3
    heads = model.latent_heads
    mixed = ua.LatentHeads(**{**heads.config, "prior_components": 3})
    mixed.load_state_dict(heads.state_dict(), strict=False)
    mixed.mixture_net.start_from(mixed.prior_net, spread=2.0, generator=torch.Generator().manual_seed(0))
    mixed.mark_mixture_fitted()
    model.latent_heads = mixed.eval()
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    predictor = UncertaintySamPredictor(model)
    predictor.set_image(x[0].permute(1, 2, 0).numpy(), num_samples=k, seed=5)
    out = predictor.predict(point_coords=[[10, 20]], point_labels=[1])
    with torch.no_grad():
        expected = mixed.mixture_prior(x).rsample(k, generator=torch.Generator().manual_seed(5))
        reference = model(x, Prompts(points=torch.tensor([[[10.0, 20.0]]]), labels=torch.tensor([[1]])),
                          num_samples=k, generator=torch.Generator().manual_seed(5))
    np.testing.assert_allclose(out.z, expected[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(out.logits, reference.logits[0].numpy(), atol=1e-4)


def test_every_image_form_gives_the_same_prediction(predictor, image):
    forms = {
        "gray uint8": image,
        "gray (H, W, 1)": image[..., None],
        "rgb uint8": np.stack([image] * 3, axis=-1),
        "rgba uint8": np.concatenate([np.stack([image] * 3, axis=-1), np.full((H, W, 1), 9, np.uint8)], axis=-1),
        "float in [0, 1]": image.astype(np.float64) / 255,
        "torch float32": torch.from_numpy(image.astype(np.float32) / 255),
        "PIL": Image.fromarray(image),
    }
    results = {}
    for name, form in forms.items():
        predictor.set_image(form, num_samples=2, seed=0)
        results[name] = predictor.predict(point_coords=POINT).logits
    for name, logits in results.items():
        np.testing.assert_allclose(logits, results["gray uint8"], atol=1e-4, err_msg=name)


def test_bgr_images_are_reordered(predictor):
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    predictor.set_image(rgb, num_samples=2, seed=0)
    expected = predictor.predict(point_coords=POINT).logits
    predictor.set_image(rgb[..., ::-1], num_samples=2, seed=0, image_format="BGR")
    np.testing.assert_allclose(predictor.predict(point_coords=POINT).logits, expected, atol=1e-5)


def test_prompts_map_pixel_centres_of_the_original_image_to_the_model_input(predictor, image):
    predictor.set_image(image, num_samples=1, seed=0)
    s = predictor.image_size
    np.testing.assert_allclose(predictor.transform_coords([[0, 0], [W - 1, H - 1]]),
                               [[0.5 * s / W - 0.5, 0.5 * s / H - 0.5], [s - 0.5 * s / W - 0.5, s - 0.5 * s / H - 0.5]])
    np.testing.assert_allclose(predictor.transform_coords([(W - 1) / 2, (H - 1) / 2]), [(s - 1) / 2, (s - 1) / 2])
    prompts = predictor.transform_prompts(box=[8, 4, 40, 30])
    expected = predictor.transform_coords([[8, 4], [40, 30]]).reshape(-1)
    np.testing.assert_allclose(prompts.boxes[0].numpy(), expected, rtol=1e-6)


def test_boxes_and_background_points_are_prompts_too(predictor, image):
    predictor.set_image(image, num_samples=2, seed=0)
    assert predictor.predict(box=[10, 5, 50, 40]).masks.shape == (2, H, W)
    both = predictor.predict(point_coords=[[30, 24], [70, 5]], point_labels=[1, 0], box=[10, 5, 50, 40])
    assert both.masks.shape == (2, H, W)


def test_predict_before_set_image_or_after_reset_is_refused(predictor, image):
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(point_coords=POINT)
    predictor.set_image(image, num_samples=1)
    predictor.reset_image()
    assert not predictor.is_image_set
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(point_coords=POINT)


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_k_must_be_a_positive_integer(predictor, image, k):
    with pytest.raises(ValueError, match="num_samples"):
        predictor.set_image(image, num_samples=k)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((3, H, W), np.uint8), "channels-first"),
        (np.zeros((H, W, 2), np.uint8), r"\(H, W\) grayscale"),
        (np.zeros((1, H, W, 3), np.uint8), r"\(H, W\) grayscale"),
        (np.zeros((0, W), np.uint8), "empty"),
        (np.zeros((H, W), np.int32), "dtype int32"),
        (np.zeros((H, W), np.uint16), "dtype uint16"),
        (np.zeros((H, W), bool), "dtype bool"),
        (np.full((H, W), 2.0), r"\[0, 1\]"),
        (np.full((H, W), np.nan), "NaN"),
    ],
)
def test_images_of_the_wrong_shape_or_dtype_are_refused(predictor, bad, match):
    with pytest.raises(ValueError, match=match):
        predictor.set_image(bad)
    assert not predictor.is_image_set


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"point_coords": [[W, 10]]}, "outside the image of 80 x 48"),
        ({"point_coords": [[10, -1]]}, "outside"),
        ({"point_coords": [[float("nan"), 1]]}, "outside"),
        ({"box": [0, 0, W + 5, 10]}, "outside"),
        ({"box": [30, 10, 20, 40]}, "x0 <= x1"),
        ({"point_coords": [[1, 2, 3]]}, r"\(N, 2\)"),
        ({"point_coords": [[1, 2]], "point_labels": [2]}, "1 \\(foreground\\) or 0"),
        ({"point_coords": [[1, 2]], "point_labels": [1, 1]}, "one label per point"),
        ({}, "point_coords"),
        ({"point_labels": [1], "box": [1, 1, 5, 5]}, "without point_coords"),
    ],
)
def test_bad_prompts_are_refused(predictor, image, kwargs, match):
    predictor.set_image(image, num_samples=1, seed=0)
    with pytest.raises(ValueError, match=match):
        predictor.predict(**kwargs)
