"""What every protocol bridge shares: the asset mapping, devices, health, settings, its event loop thread."""
