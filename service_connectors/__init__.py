"""Service connectors: one abstract interface, one module per backend kind, the catalogue."""
