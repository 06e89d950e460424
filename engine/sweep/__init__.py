"""`gan-tui sweep`: populations of ordinary gan-tui runs on Ray Tune (random, grid or PBT).

spec.py (records in the sweep folder, no Ray), trial.py (the trainable), driver.py (the Ray driver),
rows.py (what viewers show per trial, read from the trial folders).
"""
