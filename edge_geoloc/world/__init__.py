"""Synthetic world: layout, renderers (aerial, panorama, pinhole, UAV), trajectories, sensors."""
