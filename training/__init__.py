"""Offline pipeline: generate data, split by time, fit, calibrate, pick thresholds, evaluate, export."""
