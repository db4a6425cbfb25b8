"""Training a segmenter of `models` on a data spec: the Accelerate loop with exact resume
(`loop`), its resumable checkpoints (`checkpoints`), the prior-fit phase (`prior_fit`), the
training step as one CUDA graph (`graphed_step`), reproducible randomness (`seeding`) and the
throughput the logs report (`throughput`)."""
