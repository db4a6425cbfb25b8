"""Set the image once, click many times: t(second click) / t(set_image) of `UncertaintySamPredictor`.

    python -m benchmarks.bench_predictor            # a line of text
    python -m benchmarks.bench_predictor --json     # {"click_to_set_image_ratio": ..., ...}
    pytest benchmarks/bench_predictor.py --benchmark-only

``set_image`` draws K = 4 prior samples and runs the adapted encoder once for all of them (one
batched forward); a second ``predict`` on the same image runs only the prompt encoder and the
mask decoder on the cached embeddings, then resizes the K logits to the image and computes the
uncertainty maps. The fixed CPU configuration: the CPU demo's architecture (SAM spec 'demo' at
128 px, random weights, adapters and latent heads moved off their init, latent heads at 64 px),
a 256 x 256 uint8 image, one point prompt, float32, one torch thread. Both calls are timed in
the same process, interleaved round by round; the ratio is of the medians.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from benchmarks.timing import interleaved, machine
from benchmarks.workloads import synchronize
from uncertainty_adapters.integrations.sam import UncertaintySam, UncertaintySamPredictor, build_sam

SPEC, INPUT_SIZE, IMAGE_SIZE, SAMPLES = "demo", 128, 256, 4
FIRST_CLICK, SECOND_CLICK = [[100, 120]], [[140, 90]]


def make_predictor(seed: int = 0) -> UncertaintySamPredictor:
    """The benchmark's predictor (see the module docstring)."""
    torch.manual_seed(seed)
    model = UncertaintySam(build_sam(SPEC, image_size=INPUT_SIZE), latent_heads_kwargs={"resolution": 64}).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.trainable_state_dict().values():
            tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.1)
    return UncertaintySamPredictor(model)


def make_image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)


def test_set_image_k4(benchmark, rounds):
    predictor, image = make_predictor(), make_image()
    benchmark.group = "predictor"
    benchmark.pedantic(lambda: predictor.set_image(image, num_samples=SAMPLES, seed=0),
                       rounds=rounds, iterations=1, warmup_rounds=1)
    assert predictor.num_samples == SAMPLES


def test_second_click(benchmark, rounds):
    predictor = make_predictor()
    predictor.set_image(make_image(), num_samples=SAMPLES, seed=0)
    predictor.predict(point_coords=FIRST_CLICK)
    benchmark.group = "predictor"
    out = benchmark.pedantic(lambda: predictor.predict(point_coords=SECOND_CLICK),
                             rounds=rounds, iterations=1, warmup_rounds=1)
    assert out.masks.shape == (SAMPLES, IMAGE_SIZE, IMAGE_SIZE)


def measure(rounds: int, warmup: int = 2, predictor: UncertaintySamPredictor | None = None,
            image: np.ndarray | None = None) -> dict[str, object]:
    """The figures `main` prints: medians of ``rounds`` interleaved rounds and their ratio.

    ``predictor`` / ``image`` default to the fixed CPU configuration (`make_predictor`,
    `make_image`); gpu_check.py passes UA-SAM vit_b at 1024 px on the GPU and a 1024 x 1024 image.
    """
    predictor = make_predictor() if predictor is None else predictor
    image = make_image() if image is None else image
    scale = image.shape[0] / IMAGE_SIZE  # the clicks sit at the same place on any image size
    first, second = ([[round(c * scale) for c in click[0]]] for click in (FIRST_CLICK, SECOND_CLICK))
    predictor.set_image(image, num_samples=SAMPLES, seed=0)
    predictor.predict(point_coords=first)
    device = predictor.device

    def timed(call):
        def step():
            result = call()
            synchronize(device)
            return result

        return step

    cases = {
        "set_image": timed(lambda: predictor.set_image(image, num_samples=SAMPLES, seed=0)),
        "second_click": timed(lambda: predictor.predict(point_coords=second)),
    }
    timings = interleaved(cases, rounds=rounds, warmup=warmup)
    return {
        "click_to_set_image_ratio": round(timings.ratio("second_click", "set_image"), 4),
        "click_to_set_image_ratio_cpu_time": round(timings.ratio("second_click", "set_image", clock="cpu"), 4),
        "t_set_image_s": round(timings.median("set_image"), 5),
        "t_second_click_s": round(timings.median("second_click"), 5),
        "rounds": rounds,
        "config": {"input_size": predictor.image_size, "image_size": list(image.shape[:2]), "samples": SAMPLES,
                   "device": str(device)},
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a line of text")
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds (default 20)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = measure(args.rounds)
    result["machine"] = machine()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"second click / set_image = {result['click_to_set_image_ratio']:.3f}: "
            f"{1000 * result['t_second_click_s']:.1f} ms vs {1000 * result['t_set_image_s']:.1f} ms "
            f"(K = {SAMPLES}, SAM '{SPEC}' at {INPUT_SIZE} px, {IMAGE_SIZE} x {IMAGE_SIZE} image, "
            f"{args.threads} thread(s), median of {args.rounds} interleaved rounds)"
        )
    return result


if __name__ == "__main__":
    main()
