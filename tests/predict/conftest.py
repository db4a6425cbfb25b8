"""A small trained-looking model and run folder, image files in every format `ua-sam predict` reads, and a
way to call the command (through `ua-sam` itself once cli.py dispatches it)."""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything.modeling import Sam

import uncertainty_adapters as ua
from uncertainty_adapters.checkpoint import CheckpointMismatchError
from uncertainty_adapters.integrations import cli
from uncertainty_adapters.integrations.data import DataError
from uncertainty_adapters.integrations.pipeline import run_dir
from uncertainty_adapters.integrations.pipeline.predict import add_predict_parser, run_predict
from uncertainty_adapters.integrations.sam import SamSpec, UncertaintySam, build_sam, save_sam_weights

# Run folders use the registered 'demo' architecture at 64 px (8 x 8 tokens): `load_run` rebuilds
# a model by spec name. The predictor tests use a smaller spec of the same family, built directly.
SIZE = 64
HEADS = {"num_filters": [8, 16], "convs_per_block": 1, "resolution": 32}
RUN_SAMPLES = 3
TINY = SamSpec(
    encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=(1,),
    patch_size=8, window_size=4, prompt_embed_dim=32, decoder_mlp_dim=64, decoder_num_heads=2,
    iou_head_hidden_dim=32, mask_in_chans=4, image_size=SIZE,
)


def trained_looking(model: UncertaintySam, seed: int = 0) -> UncertaintySam:
    """Stand-in for training: move the adapters and latent heads off their (identity) init."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.trainable_state_dict().values():
            tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.3)
    return model


def tiny_model(spec: SamSpec | str = TINY, seed: int = 0) -> tuple[UncertaintySam, Sam]:
    """A trained-looking UA-SAM at 64 px, and a plain SAM with the weights it was built from."""
    torch.manual_seed(seed)
    sam = build_sam(spec, image_size=SIZE)
    plain = build_sam(spec, image_size=SIZE)
    plain.load_state_dict(sam.state_dict())
    model = UncertaintySam(sam, ua.UncertaintyAdapterConfig(mlp_hidden_dim=16), latent_heads_kwargs=HEADS)
    return trained_looking(model.eval(), seed), plain


def make_run(directory: Path, seed: int = 0) -> Path:
    """A run folder as `ua-sam train` writes it (the fields `load_run` reads)."""
    model, plain = tiny_model("demo", seed)
    directory.mkdir(parents=True, exist_ok=True)
    save_sam_weights(plain, directory / run_dir.BACKBONE)
    run_dir.save_run(directory, model, {
        "backbone": run_dir.BACKBONE, "sam": "demo", "image_size": SIZE, "train_decoder": False,
        "preset": {"name": "demo", "eval_samples": RUN_SAMPLES},
    })
    return directory


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy CI machine the thread pool
    can make them a hundred times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("predict") / "run")


@pytest.fixture(scope="session")
def model() -> UncertaintySam:
    return tiny_model()[0]


# -- calling the command ----------------------------------------------------------------------
def _cli_dispatches_predict() -> bool:
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            cli.build_parser().parse_args(
                ["predict", "--checkpoint", "c", "--image", "i", "--point", "1,1", "--out", "o"]
            )
        except SystemExit:
            return False
    return True


def _local_main(argv: Sequence[str]) -> int:
    """What cli.main does for 'predict': parse, run, one-line errors with exit status 2."""
    parser = argparse.ArgumentParser(prog="ua-sam")
    add_predict_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        run_predict(args)
    except (DataError, CheckpointMismatchError, FileNotFoundError, ValueError) as error:
        print(f"ua-sam {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


def ua_sam_predict(*argv: str) -> int:
    """`ua-sam predict ARGV` -> exit status (argparse errors included)."""
    main = cli.main if _cli_dispatches_predict() else _local_main
    try:
        return main(["predict", *argv])
    except SystemExit as exit_:
        return int(exit_.code)


# -- image files --------------------------------------------------------------------------------
def lesion_image(height: int = 48, width: int = 80) -> np.ndarray:
    """(H, W) uint8: a bright blob with a soft rim on a dark noisy background."""
    yy, xx = np.mgrid[:height, :width]
    distance = np.hypot((yy - height / 2) / (height / 5), (xx - width / 2.5) / (width / 6))
    image = 40 + 170 / (1 + np.exp(6 * (distance - 1))) + np.random.default_rng(0).normal(0, 6, (height, width))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_png(path: Path, rgb: bool = False) -> Path:
    image = lesion_image()
    Image.fromarray(np.stack([image] * 3, axis=-1) if rgb else image).save(path)
    return path


def ct_phantom_hu(size: int = 40) -> np.ndarray:
    """(size, size) Hounsfield units: air, a soft-tissue body, two lungs, a nodule in one lung."""
    yy, xx = np.mgrid[:size, :size] / size
    hu = np.full((size, size), -1000.0)
    hu[(yy - 0.5) ** 2 / 0.16 + (xx - 0.5) ** 2 / 0.2 <= 1] = 40.0
    for cx in (0.32, 0.68):
        hu[(yy - 0.5) ** 2 / 0.08 + (xx - cx) ** 2 / 0.02 <= 1] = -850.0
    hu[(yy - 0.45) ** 2 + (xx - 0.3) ** 2 <= 0.004] = 20.0
    return hu


def write_ct_dicom(path: Path, hu: np.ndarray, intercept: float = -1024.0, **fields) -> Path:
    """A single-frame CT in DICOM: int16 stored values with RescaleSlope 1 and ``intercept``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, intercept
    for name, value in fields.items():
        setattr(ds, name, value)
    ds.PixelData = np.round(hu - intercept).astype(np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_nifti(path: Path, volume: np.ndarray) -> Path:
    import nibabel

    nibabel.save(nibabel.Nifti1Image(volume.astype(np.float32), np.eye(4)), str(path))
    return path
