"""From pictures, videos and streams to results: the `Predictor`, its input transform, sources and tiles."""
