"""Volume reconstruction on a real local Ray cluster: same outputs as in-process whatever the
replicas and request sizes, survives a killed replica, resumes, streams to a zarr store."""

import os
import signal

import numpy as np
import pytest
import ray

import ebsdray
from ebsdray.api import prepare_output
from ebsdray.distributed.runner import LocalBackend, run_sections
from ebsdray.distributed.work import FinishSpec
from ebsdray.io.reconstruction_store import ReconstructionStore
from ebsdray.precision import cpu_has_native_bf16

SAMPLER = ebsdray.SamplerSpec(steps=4, particles=2)
BUDGET = ebsdray.Budget(samples=3, sampler=SAMPLER)


@pytest.fixture(scope="module")
def model(tiny_models):
    return tiny_models["multimodal"][0]


@pytest.fixture(scope="module")
def observation():
    vol = ebsdray.synthetic_volume((4, 16, 24), seed=21, grain_size=6)
    return ebsdray.observe(vol, ebsd_fraction=1 / 4, pattern="grid", pl_noise=0.05, seed=2)


@pytest.fixture(scope="module")
def in_process(model, observation):
    return ebsdray.reconstruct(
        observation, model, BUDGET, seed=7, keep_samples=True, progress=False
    )


class RecordingBackend(LocalBackend):
    """The in-process backend, keeping what each draw request carries."""

    def __init__(self, model):
        super().__init__(model)
        self.requests = []

    def draw(self, section, sampler, seed, indices, precision):
        self.requests.append(sampler)
        return super().draw(section, sampler, seed, indices, precision)


def test_a_draw_request_carries_the_sampler_spec_only(model, observation):
    """The budget stays in the driver; replicas get what they sample with."""
    budget = ebsdray.Budget(samples=2, sampler=SAMPLER, per_section={1: 3}, max_samples=4)
    backend = RecordingBackend(model)
    spec = FinishSpec(codec=model.codec, variant=model.variant, evaluate=False)
    done = run_sections(
        backend, observation, model, budget, spec, seed=7, sections=[1], progress=False
    )
    assert done[1]["record"]["info"]["samples"] >= 3
    assert backend.requests and all(type(s) is ebsdray.SamplerSpec for s in backend.requests)
    assert set(backend.requests) == {SAMPLER}


PRECISIONS = [
    "fp32",
    pytest.param(
        "bf16",
        marks=pytest.mark.skipif(
            not cpu_has_native_bf16(), reason="this CPU has no native bf16 (AVX512_BF16 / AMX)"
        ),
    ),
]


def assert_same(a, b):
    assert len(a.sections) == len(b.sections)
    for x, y in zip(a.sections, b.sections, strict=True):
        assert x.index == y.index
        np.testing.assert_array_equal(x.samples, y.samples)
        np.testing.assert_array_equal(x.boundary, y.boundary)
        np.testing.assert_array_equal(x.ebsd_quaternions, y.ebsd_quaternions)
        np.testing.assert_array_equal(x.pl_denoised, y.pl_denoised)
        for name in x.uncertainty:
            np.testing.assert_array_equal(x.uncertainty[name], y.uncertainty[name])


@pytest.mark.parametrize("precision", PRECISIONS)
def test_ray_replicas_give_the_in_process_outputs_bitwise(
    ray_cluster, model, observation, precision
):
    """1, 2 and 4 replicas and any request size: the very same bits, in fp32 and in bf16."""
    reference = ebsdray.reconstruct(
        observation, model, BUDGET, seed=7, keep_samples=True, progress=False, precision=precision
    )
    assert {r["info"]["precision"] for r in reference.records} == {precision}
    small = ebsdray.ReplicaResources(num_cpus=0.4, aggregation_cpus=0.2)
    for replicas, per_request in [(1, None), (2, 1), (2, 2), (4, 3)]:
        on_ray = ebsdray.reconstruct(
            observation,
            model,
            BUDGET,
            seed=7,
            keep_samples=True,
            placement=ebsdray.Placement(
                replicas=replicas, resources=small, samples_per_request=per_request
            ),
            progress=False,
            precision=precision,
        )
        assert_same(on_ray, reference)
        assert [r["section"] for r in on_ray.records] == [0, 1, 2, 3]


def test_a_killed_replica_changes_nothing(ray_cluster, model, observation, in_process):
    killed = []

    def kill_one_replica(record):
        if killed:
            return
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
        replica = ray.get_actor(next(n for n in names if n.endswith("-replica-0")))
        pid = ray.get(replica.pid.remote())
        os.kill(pid, signal.SIGKILL)  # a real crash, mid-job: sections 1-3 are still to come
        killed.append(pid)

    result = ebsdray.reconstruct(
        observation,
        model,
        BUDGET,
        seed=7,
        keep_samples=True,
        placement=ebsdray.Placement(replicas=2, samples_per_request=1),
        on_section=kill_one_replica,
        progress=False,
    )
    assert killed
    assert_same(result, in_process)


def test_store_resumes_an_interrupted_job_without_recomputing(
    ray_cluster, model, observation, tmp_path, in_process
):
    out = tmp_path / "run"

    class Interrupt(Exception):
        pass

    def stop_after_two(record):
        if record["section"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        ebsdray.reconstruct(
            observation, model, BUDGET, seed=7, keep_samples=True, output_dir=out,
            on_section=stop_after_two, progress=False,
        )  # fmt: skip
    finished = ReconstructionStore(out).completed()
    assert finished == [0, 1]
    before = {i: (out / "sections" / f"section_{i:05d}.json").stat().st_mtime_ns for i in finished}

    computed = []
    resumed = ebsdray.reconstruct(
        observation, model, BUDGET, seed=7, keep_samples=True, output_dir=out,
        placement=ebsdray.Placement(replicas=2), on_section=lambda r: computed.append(r["section"]),
        progress=False,
    )  # fmt: skip
    assert sorted(computed) == [2, 3]  # 0 and 1 were kept
    for i, mtime in before.items():
        assert (out / "sections" / f"section_{i:05d}.json").stat().st_mtime_ns == mtime
    assert_same(resumed, in_process)  # read back from zarr, identical to the in-memory run
    assert len(list((out / "sections").glob("*.png"))) == 4
    assert ebsdray.evaluate(resumed) == ebsdray.evaluate(in_process)


def test_output_dir_of_another_job_is_refused_untouched(model, observation, tmp_path):
    out = tmp_path / "run"
    ebsdray.reconstruct(
        observation, model, BUDGET, seed=7, sections=[0], output_dir=out, progress=False
    )
    files = sorted(p.relative_to(out) for p in out.rglob("*"))
    other = ebsdray.Budget(samples=4, sampler=SAMPLER)
    with pytest.raises(FileExistsError, match=r"budget\.samples: 3 there, 4 now"):
        ebsdray.reconstruct(observation, model, other, seed=7, output_dir=out, progress=False)
    with pytest.raises(FileExistsError, match="seed: 7 there, 8 now"):
        ebsdray.reconstruct(observation, model, BUDGET, seed=8, output_dir=out, progress=False)
    faster = ebsdray.Budget(samples=3, sampler=ebsdray.SamplerSpec(steps=2, particles=2))
    with pytest.raises(FileExistsError, match=r"budget\.sampler\.steps: 4 there, 2 now"):
        ebsdray.reconstruct(observation, model, faster, seed=7, output_dir=out, progress=False)
    with pytest.raises(FileExistsError, match=r"grain_tolerance_deg: 5\.0 there, 2\.0 now"):
        ebsdray.reconstruct(
            observation, model, BUDGET, seed=7, grain_tolerance_deg=2.0, output_dir=out,
            progress=False,
        )  # fmt: skip
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == files

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds other files"):
        ebsdray.reconstruct(observation, model, BUDGET, output_dir=busy, progress=False)
    assert (busy / "notes.txt").read_text() == "mine"


def test_a_prepared_store_is_used_only_for_its_own_job(model, observation, tmp_path):
    store = prepare_output(
        tmp_path / "run", observation, model, BUDGET, seed=7, identity={"volume": "tiny"}
    )
    try:
        with pytest.raises(ValueError, match=r"prepared for another job.*in seed"):
            ebsdray.reconstruct(observation, model, BUDGET, seed=8, output_dir=store)
        result = ebsdray.reconstruct(
            observation, model, BUDGET, seed=7, sections=[0], output_dir=store, progress=False
        )
        assert result.output_dir == store.output_dir
        assert store.attrs["identity"]["volume"] == "tiny"
    finally:
        store.release()


def test_adaptive_budget_stops_when_the_aggregate_settles(model, observation):
    loose = ebsdray.Budget(samples=2, sampler=SAMPLER, max_samples=8, tolerance=10.0)
    strict = ebsdray.Budget(samples=2, sampler=SAMPLER, max_samples=8, tolerance=1e-9)
    quick = ebsdray.reconstruct(observation, model, loose, sections=[0, 1], progress=False)
    full = ebsdray.reconstruct(observation, model, strict, sections=[0, 1], progress=False)
    # a round can only be judged against the one before: the loosest tolerance stops after two
    assert [r["info"]["samples"] for r in quick.records] == [4, 4]
    assert [r["info"]["rounds"] for r in quick.records] == [2, 2]
    assert [r["info"]["samples"] for r in full.records] == [8, 8]
    assert all(r["info"]["last_change"] > 0 for r in full.records)


def test_adaptive_budget_is_deterministic_on_ray(ray_cluster, model, observation):
    b = ebsdray.Budget(samples=2, sampler=SAMPLER, max_samples=6, tolerance=0.05)
    a = ebsdray.reconstruct(observation, model, b, seed=1, keep_samples=True, progress=False)
    r = ebsdray.reconstruct(
        observation, model, b, seed=1, keep_samples=True,
        placement=ebsdray.Placement(replicas=2, samples_per_request=1), progress=False,
    )  # fmt: skip
    assert [x["info"]["samples"] for x in a.records] == [x["info"]["samples"] for x in r.records]
    assert_same(a, r)


def test_too_many_replicas_are_refused_before_any_work(ray_cluster, model, observation):
    with pytest.raises(ValueError, match="do not fit this cluster"):
        ebsdray.reconstruct(
            observation, model, BUDGET, placement=ebsdray.Placement(replicas=8), progress=False
        )


def test_sections_smaller_than_the_window_are_refused(model):
    small = ebsdray.observe(
        ebsdray.synthetic_volume((1, 8, 8), seed=1, grain_size=4), ebsd_fraction=1
    )
    with pytest.raises(ValueError, match="smaller than the model's 16-pixel window"):
        ebsdray.reconstruct(small, model, BUDGET, progress=False)
