"""The pieces core.pipeline.run_job orchestrates: the job's progress bar (progress),
training and compressing one model (stages), and the Result blocks built from a
compressed model (blocks)."""
