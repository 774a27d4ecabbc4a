"""Experiment drivers shared by the notebooks: build the cases of a table, run every method
on them, and return per-case rows. Notebooks only orchestrate and display."""
