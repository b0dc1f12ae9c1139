"""The simulated world: virtual cover glass with defects, the dark-field optics that render it,
calibration targets, bench imperfections, and recordings rendered from it (`simulate`).

The simulated *devices* (GRBL and ring-light emulators on pseudo-terminals, the bench state they
share with the simulated camera) are in `rig.sim`; training data and the simulated camera both
render through this package. It imports only the recording format and the rig's pure geometry.
"""
