"""Scoring a trained segmenter on a data spec with the paper's metrics (`scoring`): N samples per
image drawn in bounded forwards (`sample_drawing`), 95% bootstrap intervals (`bootstrap`), and
the per-image sample files of ``--save-samples`` (`sample_files`)."""
