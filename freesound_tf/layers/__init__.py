"""Keras layers: in-graph audio frontend, convolutional blocks and heads (all serializable)."""
