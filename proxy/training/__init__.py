"""Build-time tools for the trained router: corpus features, fitting (scikit-learn, the `[train]`
extra), the quality-dial curve, feedback calibration and replay. Never imported on the hot path."""
