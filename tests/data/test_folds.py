"""The one fold splitter: deterministic, complete, disjoint, balanced per stratum."""

import numpy as np

from hmvnet.data.folds import centre_folds, centre_of, event_centre_folds


def test_centre_folds_deterministic_stratified_and_complete():
    ids = [f"{c}-{i:03d}" for c in ("CHUM", "CHUP", "MDA") for i in range(7)] + ["USZ-001"]
    folds = centre_folds(ids, 5, seed=3)
    assert folds == centre_folds(list(reversed(ids)), 5, seed=3)
    assert folds != centre_folds(ids, 5, seed=4)
    flat = [c for f in folds for c in f]
    assert sorted(flat) == sorted(ids) and len(flat) == len(set(flat))
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    for centre in ("CHUM", "CHUP", "MDA"):
        per_fold = [sum(centre_of(c) == centre for c in f) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1


def test_event_centre_folds_balance_events_and_centres():
    pids = [f"{c}-{i:03d}" for c in ("CHUM", "MDA") for i in range(20)]
    events = [i % 4 == 0 for i in range(40)]
    folds = event_centre_folds(pids, events, 4, seed=0)
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(40))
    per_fold_events = [sum(events[i] for i in f) for f in folds]
    assert max(per_fold_events) - min(per_fold_events) <= 1
    for stratum in {(e, centre_of(p)) for p, e in zip(pids, events, strict=True)}:
        per_fold = [sum((events[i], centre_of(pids[i])) == stratum for i in f) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1
    assert [f.tolist() for f in folds] == [f.tolist() for f in event_centre_folds(pids, events, 4, seed=0)]


def test_centre_of():
    assert centre_of("CHUM-001") == "CHUM" and centre_of("MDA007") == "MDA" and centre_of("X") == "X"
