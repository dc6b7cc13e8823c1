"""The engines that learn and render a stack: ``fast`` (optical flow + refiner, with the z decoder),
``paper`` (the published 4D INR) and the classical interpolations (docs/architecture.md)."""
