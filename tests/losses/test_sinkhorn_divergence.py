

@pytest.mark.slow
def test_matches_geomloss_online_keops_backend():
    pytest.importorskip("pykeops")
    a, x, b, y = _inputs(60, 45, seed=4)
    ours = SinkhornDivergence(p=2, blur=0.05, backend="online")
    theirs = geomloss.SamplesLoss("sinkhorn", p=2, blur=0.05, backend="online")
    _compare(ours, theirs, [a, x, b, y])
