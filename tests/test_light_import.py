"""Importing the library, or building the command line's parser, loads none of the heavy
dependencies: they are imported where they are used (figures, training, SAM, data)."""

import json
import subprocess
import sys

HEAVY = ("matplotlib", "accelerate", "segment_anything", "monai", "torchvision")


def _heavy_modules_after(code: str) -> list[str]:
    report = f"import sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    result = subprocess.run([sys.executable, "-c", f"{code}\n{report}"], check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_of_the_library_loads_no_heavy_dependency():
    assert _heavy_modules_after("import uncertainty_adapters") == []


def test_cli_help_loads_no_heavy_dependency():
    code = (
        "from uncertainty_adapters.integrations import cli\n"
        "for argv in (['--help'], ['train', '--help'], ['predict', '--help'], ['reproduce', '--help']):\n"
        "    try:\n"
        "        cli.build_parser().parse_args(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
    )
    assert _heavy_modules_after(code) == []


def test_drawing_a_figure_leaves_the_plotting_backend_alone():
    code = (
        "import matplotlib\n"
        "matplotlib.use('svg')\n"
        "import tempfile, torch\n"
        "from uncertainty_adapters.integrations.pipeline.figures.reproduction import save_latent_dim_plot\n"
        "save_latent_dim_plot([2, 4], [('GED', [0.5, 0.4], [0.1, 0.1])], tempfile.mkdtemp() + '/c.png')\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
    )
    _heavy_modules_after(code)
