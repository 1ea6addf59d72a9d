"""Staging: geometry (Feret diameter, midline from the body outline, sides), the 7th-edition rule on hand-built
labels with known answers, the JSON classifier, the synthetic truth's noise rates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from hmvnet import Label
from hmvnet.errors import WeightsError
from hmvnet.staging.geometry import feret_and_extent, staging_geometry
from hmvnet.staging.model import StageClassifier, StagingModel
from hmvnet.staging.rules import n_stage_rule, t_stage_rule
from hmvnet.staging.training import parse_stage
from hmvnet.staging.truth import ONE_OFF_RATE, synthetic_stages
from tests.helpers import image_from_function

SIZE, SPACING, ORIGIN = (160, 60, 40), (1.0, 1.0, 2.0), (-80.0, -30.0, -40.0)
MIDLINE = 0.0  # given to staging_geometry unless a test checks the body outline


def _label(spheres):
    """Label image with spheres [(label, centre (x, y, z) mm, diameter mm)]; later spheres overwrite."""

    def fn(x, y, z):
        out = np.zeros(x.shape, np.uint8)
        for label, (cx, cy, cz), diameter in spheres:
            out[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= (diameter / 2) ** 2] = label
        return out

    return image_from_function(fn, SIZE, SPACING, ORIGIN, dtype=np.uint8)


def _stages(spheres, **kw):
    g = staging_geometry(_label(spheres), midline_x_mm=kw.pop("midline", MIDLINE), **kw)
    return t_stage_rule(g), n_stage_rule(g), g


# patient left is +x (LPS); the primary sits on the left
PRIMARY_25 = (Label.GTVP, (15.0, 0.0, 0.0), 25.0)


def test_25_mm_primary_is_t2_and_no_node_is_n0():
    t, n, g = _stages([PRIMARY_25])
    assert t == "T2" and n == "N0"
    assert 25.0 <= g.gtvp_feret_mm <= 27.5  # voxel corners add at most one voxel diagonal
    assert g.primary_side == "left"


def test_t_thresholds():
    assert _stages([(Label.GTVP, (15.0, 0.0, 0.0), 16.0)])[0] == "T1"
    assert _stages([(Label.GTVP, (15.0, 0.0, 0.0), 46.0)])[0] == "T3"


def test_one_35_mm_ipsilateral_node_is_n2():
    _, n, g = _stages([PRIMARY_25, (Label.GTVN, (50.0, 0.0, 0.0), 35.0)])
    assert n == "N2" and g.node_count == 1 and g.nodes[0].relation == "ipsilateral"


def test_one_small_ipsilateral_node_is_n1_and_one_contralateral_node_is_n2():
    assert _stages([PRIMARY_25, (Label.GTVN, (45.0, 0.0, 0.0), 20.0)])[1] == "N1"
    _, n, g = _stages([PRIMARY_25, (Label.GTVN, (-45.0, 0.0, 0.0), 20.0)])
    assert n == "N2" and g.n_contralateral == 1 and g.bilateral is False
    assert g.nodes[0].side == "right"


def test_two_ipsilateral_nodes_are_n2_and_a_65_mm_node_is_n3():
    nodes = [(Label.GTVN, (45.0, 0.0, -20.0), 15.0), (Label.GTVN, (45.0, 0.0, 20.0), 15.0)]
    assert _stages([PRIMARY_25, *nodes])[1] == "N2"
    assert _stages([(Label.GTVP, (-5.0, 0.0, 0.0), 10.0), (Label.GTVN, (40.0, 0.0, 0.0), 65.0)])[1] == "N3"


def test_empty_mask_is_t1_n0_and_no_gtvp_is_never_t0():
    t, n, g = _stages([])
    assert (t, n) == ("T1", "N0") and not g.gtvp_present
    t, n, g = _stages([(Label.GTVN, (45.0, 0.0, 0.0), 20.0)])
    assert (t, n) == ("T1", "N1") and g.primary_side == "left"  # the node's side stands in for the primary's


def test_feret_of_a_box_counts_whole_voxels_in_physical_units():
    mask = np.zeros((20, 30, 40), bool)
    mask[2:32, 5:25, 10:20] = True  # z 30 voxels (2 mm) slices beyond the array are clipped: 18 slices
    image = sitk.Image(40, 30, 20, sitk.sitkUInt8)
    image.SetSpacing((1.0, 1.0, 2.0))
    image.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    feret, extent = feret_and_extent(mask, image)
    assert extent == pytest.approx([10.0, 20.0, 36.0])
    assert feret == pytest.approx(np.sqrt(10.0**2 + 20.0**2 + 36.0**2))


def test_midline_from_the_body_outline_not_the_image_centre():
    def ct(x, y, z):
        body = ((x - 25.0) / 60.0) ** 2 + (y / 25.0) ** 2 <= 1.0
        couch = (y > 27.0) & (y < 29.0)  # a couch wider than the body, off centre, not connected to it
        return np.where(body, 40.0, np.where(couch & (x < 60), 100.0, -1000.0))

    image = image_from_function(ct, SIZE, SPACING, ORIGIN)
    label = _label([(Label.GTVP, (30.0, 0.0, 0.0), 12.0), (Label.GTVN, (0.0, 0.0, 0.0), 12.0)])
    g = staging_geometry(label, image)
    assert g.midline_source == "body outline"
    assert g.midline_x_mm == pytest.approx(25.0, abs=3.0)  # image centre is at x = -0.5
    assert g.nodes[0].side == "right"  # x = 0 is 25 mm to the patient's right of the midline
    assert n_stage_rule(g) == "N2"  # contralateral


def _toy(rng, n=200):
    x = rng.normal(size=(n, 3))
    y = [("T1", "T2", "T3")[int(np.digitize(v, [-0.5, 0.5]))] for v in x[:, 0]]
    return x, y


def test_classifier_learns_separable_stages_and_round_trips_json():
    x, y = _toy(np.random.default_rng(0))
    model = StageClassifier(("T1", "T2", "T3", "T4"), C=10.0).fit(x, y)
    assert np.mean(np.array(model.predict(x)) == np.array(y)) > 0.9
    assert "T4" not in model.predict(x)  # a class never seen in training is never predicted
    again = StageClassifier.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.allclose(again.predict_proba(x), model.predict_proba(x))


def test_staging_model_checksum_and_methods(tmp_path):
    x, y = _toy(np.random.default_rng(1))
    model = StagingModel(
        {"t": "learned", "n": "rule"}, {"t": StageClassifier(("T1", "T2", "T3", "T4")).fit(x, y)}
    )
    model.save(tmp_path)
    assert StagingModel.load(tmp_path).methods == {"t": "learned", "n": "rule"}
    assert StagingModel.load(tmp_path / "absent").methods == {"t": "rule", "n": "rule"}
    (tmp_path / "model.json").write_text((tmp_path / "model.json").read_text() + " ")
    with pytest.raises(WeightsError, match="sha256"):
        StagingModel.load(tmp_path)


def test_synthetic_stages_noise_rate_and_t4_for_large_primaries():
    g = staging_geometry(_label([PRIMARY_25, (Label.GTVN, (45.0, 0.0, 0.0), 20.0)]), midline_x_mm=0.0)
    rng = np.random.default_rng(0)
    draws = [synthetic_stages(g, rng) for _ in range(2000)]
    n_off = np.mean([d["N-stage"] != "N1" for d in draws])
    assert n_off == pytest.approx(ONE_OFF_RATE, abs=0.03)
    assert not any(d["T-stage"] == "T4" for d in draws if d["T-stage"] != "T3")  # T2 primary: no T4 by size
    big = staging_geometry(_label([(Label.GTVP, (15.0, 0.0, 0.0), 50.0)]), midline_x_mm=0.0)
    t4 = np.mean([synthetic_stages(big, rng)["T-stage"] == "T4" for _ in range(1000)])
    assert 0.2 < t4 < 0.5


def test_parse_stage_accepts_table_spellings():
    assert parse_stage("T2b", "t") == "T2" and parse_stage("n2c", "n") == "N2" and parse_stage(3, "n") == "N3"
    assert (
        parse_stage("T0", "t") == "T0" and parse_stage("Tx", "t") is None and parse_stage("nan", "n") is None
    )


def test_shipped_staging_weights_load_and_predict_valid_stages():
    from tests.helpers import REPO

    model = StagingModel.load(REPO / "weights" / "staging")
    config = json.loads((REPO / "weights" / "staging" / "config.json").read_text())
    assert model.methods == config["methods"]
    for stage, report in config["out_of_fold"].items():  # learned ships only where it beat the rule
        assert (model.methods[stage] == "learned") == (report["ba_learned"] > report["ba_rule"])
    out = model.predict(staging_geometry(_label([PRIMARY_25]), midline_x_mm=0.0))
    assert out["t"] in {"T1", "T2", "T3", "T4"} and out["n"] == "N0"
