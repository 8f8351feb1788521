"""Forecasting: features, the global LightGBM model, prediction, backtests and the model store."""
