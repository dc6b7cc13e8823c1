"""The ``paper`` engine: SpatimeINR as published (seed 001): encoder, latent lookup, positional
encoding, field MLP, 4D hypercube rendering, cycle consistency."""
