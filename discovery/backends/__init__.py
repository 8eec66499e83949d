"""Store backends, one module each; `discovery.registry` maps URL schemes to them."""
