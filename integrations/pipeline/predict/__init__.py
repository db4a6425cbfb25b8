"""`ua-sam predict`: one image and one prompt -> K plausible masks, the uncertainty map, pictures.

`options` (the parser, light to import), `command` (`run_predict` and the files it writes),
`image_io` (PNG/JPEG, DICOM and NIfTI reading); its pictures are in `..figures.prediction`.
"""

from uncertainty_adapters.integrations.lazy_exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".command": ["UNCERTAIN_ENTROPY_BITS", "checkpoint_record", "model_line", "run_predict", "summarize",
                     "write_outputs"],
        ".options": ["DEFAULT_SAMPLES", "add_predict_parser", "predict_command_line"],
    },
)
