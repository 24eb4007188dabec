"""Instance segmentation in Keras 3: RetinaNet detections with a RoIAlign mask head."""

__version__ = "0.3.0.dev0"
