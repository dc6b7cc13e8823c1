import numpy as np

from napari_spatimeinr.data.synthetic import make_nuclei_timelapse


def test_shape_metadata_and_determinism():
    a = make_nuclei_timelapse((5, 6, 32, 40), seed=1)
    b = make_nuclei_timelapse((5, 6, 32, 40), seed=1)
    assert a.shape == (5, 6, 32, 40)
    assert a.voxel_size == (1.0, 0.2, 0.2) and a.frame_interval == 30.0
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, make_nuclei_timelapse((5, 6, 32, 40), seed=2).data)
    assert a.data.min() >= 0 and a.data.max() <= 65535
    assert np.array_equal(a.data, np.round(a.data))  # integer counts like a camera


def test_nuclei_move_between_frames():
    s = make_nuclei_timelapse((6, 4, 48, 48), seed=0, photons=1e4, read_noise=0)
    d = s.data
    # bright signal above background, and frames differ by more than noise
    assert d.max() > 100 + 1000
    change = np.abs(d[-1] - d[0]).mean()
    noise = np.abs(d[1] - d[0]).mean()
    assert change > noise


def test_division_shows_both_daughters_at_once():
    """No dip in total signal at a division: both daughters appear in the same frame."""
    s = make_nuclei_timelapse((12, 6, 64, 64), n_nuclei=3, seed=3, photons=1e4, read_noise=0)
    total = (s.data - 100).clip(0).sum((1, 2, 3))
    assert (total[1:] / total[:-1]).min() > 0.9  # a daughter drawn a frame late dips to ~0.78


def test_z_volumes_of_known_truth():
    from napari_spatimeinr.data.synthetic import Z_KINDS, make_z_volume

    for kind in Z_KINDS:
        s = make_z_volume(kind, (8, 48, 48), (0.5, 0.1, 0.1), (0.8, 0.25, 0.25), seed=1)
        assert s.shape == (1, 8, 48, 48) and s.voxel_size == (0.5, 0.1, 0.1)
        clean = s.extra["clean"]
        assert clean.shape == s.shape and clean.max() > 100 + 50  # objects above the background
        resid = s.data - clean  # Poisson-Gaussian noise around the noiseless volume
        assert abs(float(resid.mean())) < 1.0 and 1.5 < float(resid.std()) < 20
        again = make_z_volume(kind, (8, 48, 48), (0.5, 0.1, 0.1), (0.8, 0.25, 0.25), seed=1)
        np.testing.assert_array_equal(s.data, again.data)
    # beads: the axial profile of a bead is wider than its lateral one (an elongated PSF)
    b = (
        make_z_volume(
            "beads",
            (24, 64, 64),
            (0.25, 0.05, 0.05),
            (0.8, 0.2, 0.2),
            photons=1e4,
            read_noise=0,
            density=0.3,
            seed=2,
        ).extra["clean"][0]
        - 100
    )
    z, y, x = np.unravel_index(np.argmax(b), b.shape)
    half = b[z, y, x] / 2
    fw_z = (b[:, y, x] > half).sum() * 0.25
    fw_x = (b[z, y, :] > half).sum() * 0.05
    assert fw_z > 2 * fw_x
