"""How good a model is: COCO metrics for every data set type (`coco_metrics`), the seed's mask
mAP@0.5 (`average_precision`), and the tables, curves, confusion matrix and pictures (`reports`),
from one pass of the model over the data set (`records`, `run`)."""
