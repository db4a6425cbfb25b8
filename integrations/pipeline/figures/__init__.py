"""The pictures the pipeline writes, drawn through matplotlib's object API (`canvas`): the
evaluation figure of test cases (`cases`), the pictures of `ua-sam predict` (`prediction`), and
the comparison and latent-sweep figures of `ua-sam reproduce` (`reproduction`)."""
