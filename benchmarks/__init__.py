"""Parameter counts, throughput suite, speed ratios and the GPU check of uncertainty-adapters (see RESULTS.md)."""
