"""Segmentation models: plan files, networks, training, inference, post-processing and export.

A *plan* (a YAML file, see :mod:`covseg.model.plan` and ``docs/presets.md``) holds every value a
training run depends on; it is written next to the model so that a run can be repeated and so
that prediction preprocesses scans exactly as training did.
"""
