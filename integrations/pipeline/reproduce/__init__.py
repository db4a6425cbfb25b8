"""`ua-sam reproduce`: every row of the paper's Tables 1 and 2 (and the latent sweep) over seeds.

`cli` (options and budgets, turned into a job), `job` (training and scoring every row, resumable),
`layout` (every path and file name of a reproduction folder), `tables` (per-seed records to
Markdown tables) and `report` (tables, figures and results.json from plain records).
"""
