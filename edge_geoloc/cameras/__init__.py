"""Camera models and ground geometry, shared by the device loop and the workstation (datasets, training).

:mod:`.street`: a vehicle's 360-degree panorama or pinhole camera and its north-aligned views;
:mod:`.uav`: a drone's lens, mount and attitude; :mod:`.rectify`: a drone frame warped to north-up
ground patches at a known GSD. Device wing: numpy and OpenCV only.
"""
