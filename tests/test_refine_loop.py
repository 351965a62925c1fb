"""The refine stage in the loop: a drone frame registered against the map imagery pulls the filter to the
truth between the tiles (metres, where the tile mixture says tens), imagery of another place is refused,
a map without imagery turns refinement off (said once); the registration check's threshold and the
filter's Gaussian update are checked by hand."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from edge_geoloc.config import ConfigError, load_config
from edge_geoloc.localize.calibrate import RegistrationCheck
from edge_geoloc.localize.filter import FilterConfig, ParticleFilter
from edge_geoloc.localize.refine import RefineConfig
from edge_geoloc.localize.settings import RunConfig


def test_the_threshold_is_the_lowest_quality_above_which_registrations_were_right():
    check = RegistrationCheck(min_samples=10, precision=0.95, min_right=3)
    truth, tight = (0.0, 0.0), np.eye(2) * 0.25
    assert check.threshold() is None
    # qualities 0.9 .. 0.45 right (on the truth), 0.4 .. 0.2 wrong (20 m off): the threshold is 0.45
    for q in np.linspace(0.9, 0.45, 10):
        check.add(q, (0.3, -0.2), tight, truth, tight, 91.0, 90.0)
    for q in (0.4, 0.3, 0.2):
        check.add(q, (20.0, 0.0), tight, truth, tight, 90.0, 90.0)
    assert check.threshold() == pytest.approx(0.45)
    # one confident wrong registration (0.85): only the two best stay 95 % right, the bar rises to 0.85
    check.add(0.85, (0.0, 25.0), tight, truth, tight, 90.0, 90.0)
    assert check.threshold() == pytest.approx(0.85)
    assert check.heading_sigma(0.5) == pytest.approx(1.0)  # the right ones were all 1 degree off
    # d2 of the right ones: (0.09 + 0.04) / 0.75 = 0.173 < the median of chi2(2): no widening
    assert check.cov_scale() == 1.0


def test_a_place_that_registration_never_gets_right_passes_nothing():
    check = RegistrationCheck(min_samples=5, min_right=3)
    for q in (0.9, 0.8, 0.7, 0.6, 0.5, 0.4):
        check.add(q, (15.0, 15.0), np.eye(2), (0.0, 0.0), np.eye(2), 0.0, 0.0)
    assert check.threshold() == math.inf and check.summary()["never_right"]


def test_a_road_registration_pulls_the_cloud_across_the_road_and_leaves_it_along():
    """A measurement sharp across (north) and unsure along (east): the particles' north spread shrinks to the
    measurement's, the east spread stays the cloud's own."""
    f = ParticleFilter(FilterConfig(particles=2000, seed=1))
    f.init_gaussian(0.0, 0.0, 0.0, 10.0, 90.0, 2.0, 0.0)
    cov = np.diag([60.0**2, 0.5**2])
    applied, evidence = f.update_position(0.0, 3.0, 4.0, cov, area_m2=60.0**2 * math.pi)
    assert applied and evidence > 2.0
    est = f.estimate()
    assert abs(est.north - 4.0) < 0.3 and math.sqrt(est.cov[1, 1]) < 1.0
    assert 8.0 < math.sqrt(est.cov[0, 0]) < 12.0 and abs(est.east) < 1.5
    # a measurement the cloud cannot explain at all is refused, as a vision mixture is
    applied, _ = f.update_position(0.0, 500.0, 500.0, np.eye(2), area_m2=100.0**2)
    assert not applied and f.counts["vision_rejected"] == 1


def test_refine_settings_load_from_the_run_yaml(tmp_path):
    good = tmp_path / "loop.yaml"
    good.write_text("loop:\n  refine: {method: features, candidates: 2, max_search_m: 20}\n")
    cfg = load_config(RunConfig, good).loop.refine
    assert (cfg.method, cfg.candidates, cfg.max_search_m) == ("features", 2, 20.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("loop:\n  refine:\n    method: orb\n")
    with pytest.raises(
        ConfigError, match=r"bad.yaml:3: key .loop.refine.method.: expected dense or features, got .orb."
    ):
        load_config(RunConfig, bad)


def test_a_finer_imagery_layer_is_resampled_to_the_working_gsd_about_the_same_point():
    """A 0.25 m/px layer read at 0.5 m/px lines up with a 0.5 m/px layer of the same ground: registering one
    against the other finds no offset (a half-pixel slip would show as 0.125-0.25 m)."""
    from worldkit import REGION, box_world

    from edge_geoloc.localize.refine import Refiner
    from edge_geoloc.localize.registration import register

    rng = np.random.default_rng(2)
    paint = [(float(e), float(n), 3.0, 5.0, 0.0) for e, n in rng.uniform(-30, 30, (25, 2))]
    w = box_world(paint, roof_rgb=[tuple(int(v) for v in c) for c in rng.integers(0, 256, (25, 3))])
    ce, cn = REGION.center_en()
    fine = Refiner(None, WorldImagery(w, 0.25), RefineConfig(gsd_m=0.5))
    assert fine.gsd == 0.5
    img, valid = fine.window(ce + 3.3, cn - 1.7, 16.0)
    assert img.shape[:2] == (65, 65) and valid.all()
    direct, _ = WorldImagery(w, 0.5).window(ce + 3.3, cn - 1.7, 24.0)
    r = register(img, direct, 0.5, 0.5)
    assert abs(r.east_m) < 0.06 and abs(r.north_m) < 0.06, (r.east_m, r.north_m)


class WorldImagery:
    """Map imagery read from the synthetic world, as the bundle's layer serves it (grid-north-up windows of
    2k+1 pixels centred on the point, with a valid mask): the loop's imagery for a map built without one."""

    def __init__(self, w, gsd_m: float = 0.5) -> None:
        self.world, self.gsd_m = w, gsd_m

    def window(self, x: float, y: float, half_m: float) -> tuple[np.ndarray, np.ndarray]:
        from edge_geoloc.world.aerial import render_aerial

        n = 2 * round(half_m / self.gsd_m) + 1
        img = render_aerial(self.world, x, y, n, self.gsd_m, true_north=False)
        return img, np.ones((n, n), bool)


# --- the loop end to end (a small export with a drone branch: see uavkit) ------------------------------------

torch = pytest.importorskip("torch")  # making the small export needs torch; the loop itself does not

from exportkit import one_torch_thread  # noqa: E402, F401 (autouse fixture)
from test_uav_loop import attitude  # noqa: E402
from uavkit import CAMERA, drone_export, drone_map, frame, tiling, world  # noqa: E402

from edge_geoloc.localize.loop import Localizer, LoopConfig  # noqa: E402
from edge_geoloc.localize.odometry import Odometry  # noqa: E402
from edge_geoloc.localize.run import open_models, run_loop  # noqa: E402
from edge_geoloc.localize.sources import Capture, Frame, ListSource  # noqa: E402

OFF = np.array([9.0, -6.0])  # the drone flies between the tile centres (where the mixture has no component)


@pytest.fixture(scope="module")
def opened():
    export = drone_export()
    return open_models(export, drone_map(export), threads=1, branch="drone")[:2]


def flight(opened, imagery, refine: RefineConfig | None = None, budget_ms: float | None = None):
    t = tiling()
    ids = t.tile_id(np.full(t.n_cols, 2), np.arange(t.n_cols))
    east, north = t.centre(ids)
    frames = [
        Frame(
            i, float(i), frame(float(e) + OFF[0], float(n) + OFF[1], 90.0), truth=(float(e) + OFF[0], float(n) + OFF[1])
        )
        for i, (e, n) in enumerate(zip(east, north))
    ]
    cfg = LoopConfig(
        budget_ms=budget_ms,
        temperature=1e-4,
        trust_uncalibrated=True,
        refine=refine or RefineConfig(trust_uncalibrated=True),
    )
    loc = Localizer(*opened, CAMERA, cfg, imagery=imagery)
    if budget_ms is not None:  # registration known to cost more than the whole budget: it never fits
        loc.costs.note("register", 10 * budget_ms)
    odo = Odometry(np.arange(0, 6.01, 0.1), np.full(61, 32.0), np.zeros(61))  # 32 m/s east
    fixes = []
    run_loop(
        loc, Capture(ListSource(frames)), None, odo, on_fix=lambda f, x: fixes.append(x), attitude=attitude(6, 90.0)
    )
    return frames, fixes, loc


def errors(frames, fixes):
    return [math.hypot(x.east - f.truth[0], x.north - f.truth[1]) for f, x in zip(frames, fixes)]


def test_registration_pulls_the_filter_to_the_truth_between_tiles(opened):
    frames, fixes, loc = flight(opened, WorldImagery(world()))
    refined = [x.vision.get("refined") for x in fixes[1:]]
    assert sum(refined) >= 3, refined  # after the first (global) frame, the frames register (the last sees little)
    for f, x in zip(frames, fixes):  # a passed registration is where the drone is, to a few decimetres
        if x.vision and x.vision.get("refined"):
            assert math.hypot(x.vision["refine_east"] - f.truth[0], x.vision["refine_north"] - f.truth[1]) < 0.5
    assert all("register" in x.stages_ms for x in fixes[1:])
    assert max(errors(frames, fixes)[2:]) < 1.5, errors(frames, fixes)
    s = loc.summary()["refine"]
    assert s["on"] and s["passed"] == sum(refined) and s["registered"] >= len(fixes)
    # without imagery the same frames are left to the mixture: metres become many metres
    frames, plain, _ = flight(opened, None, RefineConfig(enabled=False))
    assert np.median(errors(frames, plain)[2:]) > 2.0 * np.median(errors(frames, fixes)[2:])


def test_imagery_of_another_place_is_not_believed(opened):
    from worldkit import box_world

    elsewhere = box_world([(0.0, 0.0, 4.0, 4.0, 0.0)], size_m=400.0)  # a lone painted square on grass
    _, fixes, loc = flight(opened, WorldImagery(elsewhere))
    assert all(x.vision is None or x.vision.get("refined", 0.0) == 0.0 for x in fixes)
    assert loc.summary()["refine"]["failed"] >= 4


def test_a_map_without_imagery_turns_refinement_off_and_says_so_once(opened, caplog):
    with caplog.at_level(logging.WARNING):
        a = Localizer(*opened, CAMERA, LoopConfig(budget_ms=None))
        b = Localizer(*opened, CAMERA, LoopConfig(budget_ms=None))
    said = [r for r in caplog.records if "no imagery layer" in r.getMessage()]
    assert len(said) <= 1  # once per process (an earlier test may already have said it)
    assert a.summary()["refine"] == {"on": False} and b.summary()["refine"] == {"on": False}


def test_registration_that_does_not_fit_the_budget_is_dropped_not_queued(opened):
    frames, fixes, loc = flight(opened, WorldImagery(world()), budget_ms=5000.0)
    assert all("register" in x.skipped for x in fixes[1:] if x.vision is not None)
    assert not any("register" in x.stages_ms for x in fixes)
    assert loc.summary()["refine"]["skipped_budget"] >= len(frames) - 1
