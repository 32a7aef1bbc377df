"""`rally demo`: a whole fleet on one machine, with the failures a real one meets."""
