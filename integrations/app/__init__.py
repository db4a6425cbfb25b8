"""`ua-sam app`: a local web page to click on an image and see UA-SAM's K plausible masks, their
uncertainty map and the numbers of summary.json (Gradio; the optional extra ``app``).

`session` is the model side (no web code: runs, images and K-sample embeddings cached),
`prompt` the clicks, `render` the pictures, `page` the Gradio page and `server` the command.
Importing this package does not import Gradio.
"""

from uncertainty_adapters.integrations.lazy_exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".prompt": ["Prompt", "PromptError"],
        ".session": ["Segmentation", "Segmenter"],
    },
)
