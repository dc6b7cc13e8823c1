"""The ``fast`` engine: optical flow between neighbouring frames, a refiner CNN trained on the
stack's own neighbour pairs, the uncertainty of its renders and the motion as velocities."""
