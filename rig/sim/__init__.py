"""The simulated devices: GRBL and ring-light emulators speaking the real protocols on
pseudo-terminals, the bench state they share with the simulated camera, and the simulated bench
that puts virtual samples (from `world`) under the camera."""
