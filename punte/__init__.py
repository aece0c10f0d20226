"""The operator side of Punte: the embedded stack, the `punte` CLI and the demo network."""
