"""Evaluation: protocol scoring, 1:N lists, attention on the truth, item ids and publishing."""
