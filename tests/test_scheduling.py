"""Dependency-driven scheduling: the sweep's Tune searcher hands out a model as soon as its upstream's
record is `ok` in the lake, not when the upstream's whole stage has ended; a model whose upstream
failed is recorded as failed without running. Driven here through the searcher's own interface
(suggest / on_trial_complete, as Tune calls it) on a real Parquet lake; the sweep tests run it in Ray."""

import time

import pytest
from ray.tune.search import Searcher

from core.results import write_table
from core.results.lake import now
from sweeps.runner import graph_searcher
from sweeps.stages import SweepSpec, finished_run_ids, lake_root, plan


def spec_for(tmp_path) -> SweepSpec:
    return SweepSpec(sweep="sched", preset="smoke", storage=str(tmp_path / "res"), data_root=str(tmp_path / "data"),
                     ratios=["1:2", "2:1"], seeds=[0], kinds=["baseline", "monkey_predictor", "oracle", "oracle_readout",
                                                              "mtl_monkey", "mtl_shuffled", "mtl_oracle"])


def record(spec, task, status="ok"):
    """What a finished trial writes before it ends: its row in the runs table."""
    write_table(lake_root(spec), "runs", [{"run_id": task.run_id, "kind": task.kind, "ratio": task.ratio, "seed": task.seed,
                                           "preset": spec.preset, "status": status, "error": "", "created_at": now()}],
                spec.sweep, task.kind, task.run_id)


class Driver:
    """Plays Tune's part: asks for trials while slots are free, ends trials by id."""

    def __init__(self, spec, tasks):
        self.spec = spec
        self.tasks = tasks
        self.s = graph_searcher(spec, tasks, None, log=None, total=len(tasks), t0=0.0)
        self.running = {}   # trial id -> run id
        self.n = 0

    def ask(self):
        self.n += 1
        cfg = self.s.suggest(f"trial{self.n}")
        if cfg is None or cfg == Searcher.FINISHED:
            return cfg
        self.running[f"trial{self.n}"] = cfg["t"]["task"]["run_id"]
        return cfg["t"]["task"]["kind"], cfg["t"]["task"]["ratio"]

    def end(self, tasks, kind, ratio="", status="ok"):
        task = next(t for t in tasks if t.kind == kind and t.ratio == ratio)
        trial = next(k for k, v in self.running.items() if v == task.run_id)
        if status is not None:
            record(self.spec, task, status)
        del self.running[trial]
        self.s.on_trial_complete(trial)


@pytest.fixture
def graph(tmp_path):
    spec = spec_for(tmp_path)
    tasks = [t for w in plan(spec, {"classification": "c", "neural": "n"}) for t in w]
    return spec, tasks, Driver(spec, tasks)


def test_a_model_starts_when_its_upstream_is_in_the_lake_not_when_its_stage_ends(graph):
    spec, tasks, d = graph
    assert [d.ask() for _ in range(3)] == [("monkey_predictor", ""), ("oracle", ""), ("baseline", "")]
    d.end(tasks, "oracle")                              # the Oracle ends first: its readout is next,
    assert d.ask() == ("oracle_readout", "")            # though the Monkey Predictor (same stage) still runs
    d.end(tasks, "oracle_readout")
    # mtl_oracle's upstream is ok: it starts before the stage-2 MTL-Monkey models have even started
    assert [d.ask(), d.ask()] == [("mtl_oracle", "1:2"), ("mtl_oracle", "2:1")]
    assert d.ask() is None                               # MTL-Monkey waits for the Monkey Predictor
    d.end(tasks, "monkey_predictor")
    rest = [d.ask() for _ in range(4)]
    assert sorted(rest) == [("mtl_monkey", "1:2"), ("mtl_monkey", "2:1"), ("mtl_shuffled", "1:2"), ("mtl_shuffled", "2:1")]
    assert d.ask() == Searcher.FINISHED


def test_a_failed_upstream_fails_its_models_without_running_them(graph):
    spec, tasks, d = graph
    d.ask(), d.ask()                                     # monkey_predictor, oracle
    d.end(tasks, "oracle", status="failed")
    d.end(tasks, "monkey_predictor")
    started = []
    while (x := d.ask()) not in (None, Searcher.FINISHED):
        started.append(x)
    assert ("oracle_readout", "") not in started and not any(k == "mtl_oracle" for k, _ in started)
    status = finished_run_ids(spec)
    for t in tasks:
        if t.kind in ("oracle_readout", "mtl_oracle"):
            assert status[t.run_id] == "failed", t.label()


def drain(d, limit=50):
    """Ask until the searcher says FINISHED, ending each model as soon as it starts, as Tune would with
    free slots; a searcher that answers None ("not yet") with nothing running would keep Tune waiting
    forever, so the number of asks is bounded. Returns the (kind, ratio) of the models started."""
    started = []
    for _ in range(limit):
        x = d.ask()
        if x == Searcher.FINISHED:
            return started
        assert x is not None or d.running, f"nothing runs and nothing is handed out: the sweep would never end ({started})"
        if x is None:
            d.end(d.tasks, *next(((t.kind, t.ratio) for t in d.tasks if t.run_id in d.running.values())))
        else:
            started.append(x)
            d.end(d.tasks, *x)
    raise AssertionError(f"the searcher did not finish in {limit} asks ({started})")


@pytest.mark.parametrize("restored", [False, True], ids=["running", "after-a-searcher-restore"])
def test_an_upstream_that_crashed_past_its_retries_without_a_record_fails_its_models_and_the_sweep_ends(graph, tmp_path,
                                                                                                     restored):
    """The Oracle's trial ends with no record (a crash Ray retried until it gave up): its readout and the
    MTL-Oracle models are recorded as failed without running, and the searcher finishes. With `restored`,
    the searcher was saved while the Oracle ran and restored (Tune's experiment restore) before it ended."""
    spec, tasks, d = graph
    d.tasks = tasks
    assert [d.ask(), d.ask()] == [("monkey_predictor", ""), ("oracle", "")]
    if restored:
        d.s.save(str(tmp_path / "searcher.json"))
        fresh = graph_searcher(spec, tasks, None, log=None, total=len(tasks), t0=0.0)
        fresh.restore(str(tmp_path / "searcher.json"))
        d.s = fresh   # Tune keeps its trial ids across the restore: the Driver's running trials are those
    d.end(tasks, "oracle", status=None)   # no record: crashed past its retries
    started = drain(d)
    # everything else ran (the Monkey Predictor had started before); nothing downstream of the Oracle did
    assert sorted(started) == [("baseline", ""), ("mtl_monkey", "1:2"), ("mtl_monkey", "2:1"), ("mtl_shuffled", "1:2"),
                               ("mtl_shuffled", "2:1")], started
    status = finished_run_ids(spec)
    for t in tasks:
        if t.kind in ("oracle_readout", "mtl_oracle"):
            assert status.get(t.run_id) == "failed", t.label()
    assert next(t for t in tasks if t.kind == "oracle").run_id not in status   # the crash itself is recorded by run_graph


def test_an_upstream_that_failed_before_is_retried_first_and_its_models_wait_for_it(graph):
    """A re-run after a failure: the lake says the Oracle failed, but it is in this run again, so its
    readout waits for the new attempt instead of failing on the old record."""
    spec, tasks, d = graph
    record(spec, next(t for t in tasks if t.kind == "oracle"), "failed")
    d.s.done = finished_run_ids(spec)
    assert [d.ask(), d.ask()] == [("monkey_predictor", ""), ("oracle", "")]
    assert d.ask() == ("baseline", "") and d.ask() is None   # oracle_readout waits, not failed
    assert all(finished_run_ids(spec).get(t.run_id) != "failed" for t in tasks if t.kind == "oracle_readout")
    d.end(tasks, "oracle")
    assert d.ask() == ("oracle_readout", "")


def test_the_searchers_state_round_trips(graph, tmp_path):
    """Tune saves the searcher with its experiment state: what is still to hand out survives a restore."""
    spec, tasks, d = graph
    d.ask(), d.ask()
    d.s.save(str(tmp_path / "searcher.json"))
    fresh = graph_searcher(spec, tasks, None, log=None, total=len(tasks), t0=0.0)
    fresh.restore(str(tmp_path / "searcher.json"))
    assert [t.run_id for t in fresh.pending] == [t.run_id for t in d.s.pending] and len(fresh.pending) == len(tasks) - 2
    # the Oracle was running when saved: its readout waits for it rather than failing
    oracle_readout = next(t for t in tasks if t.kind == "oracle_readout")
    assert fresh._may_come(next(t for t in tasks if t.kind == "oracle").run_id)
    while (x := fresh.suggest("t")) not in (None, Searcher.FINISHED):
        assert x["t"]["task"]["kind"] not in ("oracle_readout", "mtl_oracle"), x["t"]["task"]
    assert finished_run_ids(spec).get(oracle_readout.run_id) is None


def test_the_wall_time_follows_the_slots_and_the_dependencies():
    """sweeps.timing.simulate: the models as the searcher hands them out. A is upstream of C; B and D free."""
    from sweeps.timing import simulate

    secs = {"a": 10.0, "b": 4.0, "c": 6.0, "d": 3.0}
    up = {"c": "a"}
    # one slot: one after another, whatever the order
    assert simulate(["a", "b", "c", "d"], secs, up, 1) == pytest.approx(23.0)
    # two slots: a | b, then d beside a (b done at 4, d until 7), c after a at 10 -> 16
    assert simulate(["a", "b", "c", "d"], secs, up, 2) == pytest.approx(16.0)
    # more slots than models: the critical path a -> c, not the sum divided by the slots (5.75)
    assert simulate(["a", "b", "c", "d"], secs, up, 4) == pytest.approx(16.0)
    # a model already running with 2 s to go, and one whose upstream is outside the run (it will fail: no time)
    assert simulate(["c", "b"], secs, {"c": "a", "b": "z"}, 2, running={"a": 2.0}) == pytest.approx(8.0 + 4.0 - 4.0)


def test_the_time_left_scales_the_plan_by_what_each_groups_finished_models_took(tmp_path):
    """The searcher's estimate: planned seconds, scaled per group (classifiers, neural-only) by the ratio of the
    seconds its finished models took to their plan, the prior where a group has none finished."""
    spec = spec_for(tmp_path)
    tasks = [t for w in plan(spec, {"classification": "c", "neural": "n"}) for t in w if t.kind in ("baseline", "oracle")]
    weights = {t.run_id: 100.0 for t in tasks}
    s = graph_searcher(spec, tasks, None, log=None, total=len(tasks), t0=time.perf_counter(), slots=1, weights=weights,
                       prior=1.0)
    assert s.left(0.0) == pytest.approx(200.0)                 # nothing finished: the plan as it is
    s.took.append((False, 100.0, 250.0))                       # a neural-only fit took 2.5 x its plan: the
    assert s.left(0.0) == pytest.approx(200.0)                 # classifiers keep the prior, not its factor
    s.took.append((True, 100.0, 150.0))                        # a classifier took 1.5 x its plan
    assert s.left(0.0) == pytest.approx(300.0)
    nogpu = graph_searcher(spec, tasks, None, log=None, total=len(tasks), t0=time.perf_counter(), slots=1, weights=weights,
                           prior=None)
    assert nogpu.left(0.0) is None                             # no prior (a GPU): nothing to go by yet


def test_the_progress_lines_say_the_time_left_once_a_model_has_finished(tmp_path):
    from sweeps.console import clock

    spec = spec_for(tmp_path)
    tasks = [t for w in plan(spec, {"classification": "c", "neural": "n"}) for t in w if t.kind in ("baseline", "oracle")]
    lines = []
    s = graph_searcher(spec, tasks, None, log=lines.append, total=len(tasks), t0=time.perf_counter(), slots=1)
    first = s.suggest("a")["t"]["task"]
    assert lines[0] == f"model 1 of 2 starts: {first['kind']}[-, seed 0] (0 s elapsed, time left: known when a model has finished)"
    record(spec, next(t for t in tasks if t.run_id == first["run_id"]))
    s.on_trial_complete("a")
    second = s.suggest("b")["t"]["task"]
    assert second["kind"] != first["kind"]
    # the estimate printed is the first one the searcher keeps (the sweep's summary compares it with the outcome)
    assert lines[1] == f"model 2 of 2 starts: {second['kind']}[-, seed 0] (0 s elapsed, about {clock(s.first_estimate[1])} left)"
