"""Online models per twin: novelty, condition, sensor health, forecasts, failure prediction, replay."""
