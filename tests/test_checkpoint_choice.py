"""The main job's choice of the checkpoint the study uses (`pipeline.best_epoch`)."""

import pytest

from xraygan_jax import errors, pipeline


def _record(epoch, name, gap, *, recall=0.5, diversity=0.9, coarse=0.9):
    return {
        "epoch": epoch,
        "class_name": name,
        "fid": 100.0 + gap,
        "fid_matched": 100.0 + gap,
        "fid_floor": 100.0,
        "recall": recall,
        "diversity": diversity,
        "coarse_diversity": coarse,
    }


def test_the_lowest_mean_gap_over_classes_wins():
    records = [_record(10, "A", 50.0), _record(10, "B", 10.0)]
    records += [_record(20, "A", 20.0), _record(20, "B", 30.0)]
    epoch, scores = pipeline.best_epoch(records)
    assert epoch == 20
    assert scores == {10: 30.0, 20: 25.0}


def test_a_collapsed_checkpoint_loses_to_a_worse_one_that_is_not():
    """Epoch 20 has the lower gap, but one class is a template (recall 0, coarse diversity 0.1)."""
    records = [_record(10, "A", 50.0), _record(10, "B", 40.0)]
    records += [_record(20, "A", 5.0, recall=0.0, coarse=0.1), _record(20, "B", 5.0)]
    epoch, scores = pipeline.best_epoch(records)
    assert epoch == 10
    assert scores[20] < scores[10]


def test_when_every_checkpoint_collapsed_the_lowest_gap_still_wins():
    records = [_record(e, "A", gap, recall=0.0, diversity=0.1) for e, gap in ((10, 9.0), (20, 3.0))]
    assert pipeline.best_epoch(records)[0] == 20


def test_a_class_without_a_floor_is_scored_by_its_fid():
    records = [{"epoch": 10, "class_name": "A", "fid": 70.0}, _record(20, "A", 80.0)]
    assert pipeline.best_epoch(records) == (10, {10: 70.0, 20: 80.0})


def test_no_records_is_refused():
    with pytest.raises(errors.MissingError, match="no evaluation records"):
        pipeline.best_epoch([])
