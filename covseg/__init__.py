"""covseg: COVID-19 lung CT lesion segmentation, quantification, evaluation, ranking and hosting."""

__version__ = "0.1.0"
