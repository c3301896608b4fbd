"""Stage 2: the survival branch's gradients, batch composition, ensemble, training, prediction, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from vlm_fixtures import QUESTIONS, question_records, tiny_decoder, tiny_store

from ctsurv.vlm.ensemble import ensemble_risks, patient_tables
from ctsurv.vlm.data import collate
from ctsurv.vlm.stage2_data import SurvivalExamples, load_split_data, patient_batches, question_table
from ctsurv.vlm.stage2_model import CTSurvivalVLM
from ctsurv.vlm.survival import RiskMemory, SurvivalBranch, pool_hidden, survival_branch_loss

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
N = 30


@pytest.fixture(autouse=True)
def _pinned():
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny decoder, feature store, cohort (hazard in feature 0), instruction JSON per split."""
    tmp = tmp_path_factory.mktemp("stage2")
    ids = [f"s{i:02d}" for i in range(N)]
    decoder = tiny_decoder(tmp / "decoder")
    store = tiny_store(tmp / "store", ids, tokens=4, dim=8)
    rng = np.random.default_rng(0)
    split = np.array(["train"] * 20 + ["val"] * 4 + ["test"] * 6)
    time = rng.exponential(100, N) + 1
    event = (rng.random(N) < 0.7).astype(int)
    event[[0, 1, 20, 24, 25]] = 1
    cohort = pd.DataFrame({"study_id": ids, "patient_id": ids, "split": split, "time": time,
                           "event": pd.array(event, dtype="Int64")})
    paths = {}
    for s in ("train", "val", "test"):
        paths[s] = tmp / f"{s}.json"
        paths[s].write_text(json.dumps(question_records([i for i, sp in zip(ids, split) if sp == s])), encoding="utf-8")
    return {"tmp": tmp, "ids": ids, "decoder": decoder, "store": store, "cohort": cohort, "paths": paths}


def _model(world, head="deepsurv", frozen_w=True, cuts=None):
    from ctsurv.vlm import build

    vlm = build(world["decoder"], 8, 4, lora=LORA, feature_fingerprint="tiny-encoder")
    vlm.freeze(projector=frozen_w, decoder=False)
    branch = SurvivalBranch(vlm.config.hidden_size, head, None if cuts is None else len(cuts), bottleneck=8)
    return CTSurvivalVLM(vlm, branch, cuts)


def _batch(world, model, cuts=None, n=8):
    tables, followup, feats, ids = load_split_data({"train": world["paths"]["train"]}, world["cohort"], world["store"])
    data = SurvivalExamples(tables["train"], followup, feats, ids, model.vlm.tokenizer, model.vlm.config.prompt_format,
                            model.vlm.config.max_length, cuts)
    return collate([data[i] for i in range(0, 3 * n, 3)], model.vlm.tokenizer.pad_token_id)


def test_pool_hidden_ignores_padding():
    h = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    z = pool_hidden(h, mask)
    assert torch.equal(z[0], h[0, :2].mean(0)) and torch.equal(z[1], h[1].mean(0))
    assert torch.equal(pool_hidden(h, torch.zeros(2, 3)), torch.zeros(2, 4))


def _grads(model, features, loss):
    model.zero_grad(set_to_none=True)
    features.grad = None
    loss.backward(retain_graph=True)
    parts = {"lora": [p for n, p in model.vlm.decoder.named_parameters() if "lora_" in n],
             "projector": list(model.vlm.projector.parameters()), "adaptor": list(model.branch.adaptor.parameters()),
             "head": list(model.branch.head.parameters())}
    reached = {k: any(p.grad is not None and p.grad.abs().sum() > 0 for p in ps) for k, ps in parts.items()}
    reached["features"] = features.grad is not None and bool(features.grad.abs().sum() > 0)
    return reached


@pytest.mark.parametrize("head", ["deepsurv", "deephit"])
def test_each_loss_term_reaches_only_what_it_should(world, head):
    cuts = np.array([0.0, 50.0, 100.0, 400.0]) if head == "deephit" else None
    model = _model(world, head, frozen_w=True, cuts=cuts)
    batch = _batch(world, model, cuts)
    features = batch["features"].clone().requires_grad_(True)  # the encoder's output: must get nothing
    res = model({**batch, "features": features})
    parts = survival_branch_loss(head, res["z"], res["z_surv"], res["out"], batch["time"], batch["event"], batch["idx"])
    # the head's output layer starts at zero: the survival loss then reaches only the head
    surv = _grads(model, features, parts["surv"])
    assert surv["head"] and not surv["lora"] and not surv["adaptor"] and not surv["features"]
    # nudge it (as one step would) so gradients can pass through the head
    with torch.no_grad():
        model.branch.head.net[-1].weight.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(0))
    res = model({**batch, "features": features})
    parts = survival_branch_loss(head, res["z"], res["z_surv"], res["out"], batch["time"], batch["event"], batch["idx"])
    # the adaptor starts as the identity (zero output layer); nudge it so gradients can pass through it
    lm = _grads(model, features, res["lm"])
    assert lm == {"lora": True, "projector": False, "adaptor": False, "head": False, "features": False}
    surv = _grads(model, features, parts["surv"])
    assert surv["lora"] and surv["head"] and not surv["projector"] and not surv["features"]
    assert surv["adaptor"]  # the up-projection gets a gradient even at its zero start
    align = _grads(model, features, parts["alignment"] + parts["dispersion"])
    assert not align["head"] and not align["projector"] and not align["features"]
    assert all(p.grad is None for p in model.vlm.projector.parameters())
    # without pre-training W trains: the LM loss reaches it, and still not the features
    fresh = _model(world, head, frozen_w=False, cuts=cuts)
    features = batch["features"].clone().requires_grad_(True)
    res = fresh({**batch, "features": features})
    lm = _grads(fresh, features, res["lm"])
    assert lm["projector"] and lm["lora"] and not lm["features"] and not lm["head"]


def test_alignment_reaches_the_adaptor_once_it_moves(world):
    model = _model(world)
    with torch.no_grad():
        model.branch.adaptor.up.weight.normal_(0, 0.1)
    batch = _batch(world, model)
    res = model(batch)
    parts = survival_branch_loss("deepsurv", res["z"], res["z_surv"], res["out"], batch["time"], batch["event"])
    model.zero_grad(set_to_none=True)
    parts["alignment"].backward()
    assert model.branch.adaptor.up.weight.grad.abs().sum() > 0
    assert model.branch.head.net[-1].weight.grad is None


def test_risk_memory_joins_the_risk_sets():
    log_hz = torch.tensor([0.5, -0.2], requires_grad=True)
    time, event = torch.tensor([1.0, 3.0]), torch.tensor([1.0, 0.0])
    z = torch.zeros(2, 4)
    alone = survival_branch_loss("deepsurv", z, z, log_hz, time, event)["surv"]
    memory = RiskMemory(size=3)
    memory.push(torch.tensor([2.0, 1.0, 0.0, 9.0]), torch.tensor([2.0, 5.0, 0.5, 7.0]), torch.tensor([0.0, 1.0, 1.0, 0.0]))
    assert len(memory.risk) == 3 and memory.risk.tolist() == [2.0, 1.0, 0.0]  # newest first, capped
    joined = survival_branch_loss("deepsurv", z, z, log_hz, time, event, memory=memory.get())["surv"]
    # events: t=1 (batch; risk set {0.5,-0.2,2.0,1.0}), t=0.5 (memory; everyone), t=5 (memory; {1.0})
    h = {"a": 0.5, "b": -0.2, "m1": 2.0, "m2": 1.0, "m3": 0.0}
    lse = lambda keys: np.log(sum(np.exp(h[k]) for k in keys))  # noqa: E731
    # the sum over all three events, divided by the batch's one event (the gradient scale)
    expected = -((h["a"] - lse(["a", "b", "m1", "m2"])) + (h["m3"] - lse(list(h))) + (h["m2"] - lse(["m2"]))) / 1
    assert joined.item() == pytest.approx(expected, rel=1e-5)
    assert alone.item() == pytest.approx(-(0.5 - np.log(np.exp(0.5) + np.exp(-0.2))), rel=1e-5)
    assert RiskMemory(size=0).get() is None


def test_risk_memory_gradient_scale_matches_a_hand_computed_cox_loss():
    """The batch's gradient with a detached memory equals the gradient of Cox's partial
    likelihood written out by hand over batch + memory, divided by the batch's events (not by
    all events, which would shrink it by D_batch / (D_batch + D_memory))."""
    gen = torch.Generator().manual_seed(3)
    b_risk = torch.randn(8, generator=gen, dtype=torch.float64)
    b_time, b_event = torch.rand(8, generator=gen, dtype=torch.float64) * 10, torch.tensor([1, 0, 1, 1, 0, 0, 1, 0.0])
    m_risk = torch.randn(16, generator=gen, dtype=torch.float64)
    m_time = torch.rand(16, generator=gen, dtype=torch.float64) * 10
    m_event = (torch.rand(16, generator=gen) < 0.5).to(torch.float64)
    d_batch, d_memory = int(b_event.sum()), int(m_event.sum())
    assert d_batch == 4 and d_memory > 0
    z = torch.zeros(8, 4, dtype=torch.float64)

    log_hz = b_risk.clone().requires_grad_(True)
    parts = survival_branch_loss("deepsurv", z, z, log_hz, b_time, b_event, memory=(m_risk, m_time, m_event))
    (grad,) = torch.autograd.grad(parts["surv"], log_hz)

    hand_hz = b_risk.clone().requires_grad_(True)
    h = torch.cat([hand_hz, m_risk])  # the memory: constants
    t, e = torch.cat([b_time, m_time]), torch.cat([b_event, m_event])
    terms = [h[i] - torch.logsumexp(h[t >= t[i]], 0) for i in range(len(h)) if e[i] == 1]
    hand = -torch.stack(terms).sum() / d_batch
    (hand_grad,) = torch.autograd.grad(hand, hand_hz, retain_graph=True)
    assert parts["surv"].item() == pytest.approx(hand.item(), rel=1e-10)
    assert torch.allclose(grad, hand_grad, rtol=1e-10, atol=1e-12)
    # divided by all events instead, the gradient would be D_b / (D_b + D_m) of it
    (all_events,) = torch.autograd.grad(hand * d_batch / (d_batch + d_memory), hand_hz)
    assert torch.allclose(all_events, grad * d_batch / (d_batch + d_memory), rtol=1e-10)
    # an empty memory: the batch-only Cox loss, unchanged
    alone = survival_branch_loss("deepsurv", z, z, b_risk, b_time, b_event)["surv"]
    empty = (torch.empty(0), torch.empty(0), torch.empty(0))
    assert survival_branch_loss("deepsurv", z, z, b_risk, b_time, b_event, memory=empty)["surv"].item() == alone.item()


def test_batches_hold_distinct_patients_and_cycle_questions():
    ids = [f"p{i}" for i in range(10) for _ in range(6)]  # six questions each
    sampler = patient_batches(ids, batch_size=4, seed=3)
    seen = {}
    for epoch in range(6):
        batches = sampler(epoch)
        assert [len(b) for b in batches] == [4, 4, 2]
        for b in batches:
            assert len({ids[i] for i in b}) == len(b)  # distinct patients
        flat = [i for b in batches for i in b]
        assert sorted(ids[i] for i in flat) == sorted(set(ids))  # every patient once per epoch
        for i in flat:
            seen.setdefault(ids[i], set()).add(i)
    assert all(len(v) == 6 for v in seen.values())  # over six epochs, each of the six questions
    assert sampler(2) == patient_batches(ids, 4, 3)(2)  # a function of the epoch only (resume)


def test_ensemble_averages_six_risks():
    rows = []
    for p, (split, t, e) in enumerate([("train", 5.0, 1), ("train", 8.0, 0), ("train", 3.0, 1), ("test", 4.0, 1)]):
        for q in range(6):
            rows.append({"study_id": f"p{p}", "question_id": f"q{q}", "split": split, "time": t, "event": e,
                         "risk": p + 0.1 * q, "surv_at_cuts": np.array([1.0 - 0.1 * q, 0.5 - 0.05 * q])})
    per_question = pd.DataFrame(rows)
    patients = ensemble_risks(per_question, expected=6)
    assert patients["study_id"].tolist() == ["p0", "p1", "p2", "p3"]
    assert patients["risk"].to_numpy() == pytest.approx([0.25, 1.25, 2.25, 3.25])  # mean of p + 0.1 q, q = 0..5
    assert (patients["n_questions"] == 6).all()
    preds, surv = patient_tables(per_question, "deephit", cuts=np.array([0.0, 4.0]))
    grid = np.array([float(c) for c in surv.columns[1:]])
    # the mean curve: S(0) = 0.75, S(4) = 0.375, so 1 before 0, 0.75 on [0, 4), 0.375 after
    assert surv.iloc[0, 1:].to_numpy()[grid >= 4.0] == pytest.approx(0.375)
    assert surv.iloc[0, 1:].to_numpy()[(grid > 0) & (grid < 4.0)] == pytest.approx(0.75)
    preds, surv = patient_tables(per_question, "deepsurv")
    vals = surv.iloc[:, -1].to_numpy()
    assert vals[3] < vals[0]  # higher risk, lower survival at the end (Breslow)


def test_question_table_splits_multi_turn_records():
    rec = {"id": "s1", "study_id": "s1", "question_ids": ["a", "b"],
           "conversations": [{"from": "human", "value": "A 61-year-old female.\n<image>\nQ1?"}, {"from": "gpt", "value": "x"},
                             {"from": "human", "value": "Q2?"}, {"from": "gpt", "value": "y"}]}
    table = question_table([rec])
    assert table["human"].tolist() == ["A 61-year-old female.\n<image>\nQ1?", "A 61-year-old female.\n<image>\nQ2?"]
    assert table["question_id"].tolist() == ["a", "b"] and table["answer"].tolist() == ["x", "y"]


TRAIN = """
import json, os, signal, sys
import pandas as pd, torch
from ctsurv.vlm import stage2_loss, stage2_train
from ctsurv.vlm.trainer import TrainSettings


def run(w, out, head, pretrain, kill_at=0):
    torch.set_num_threads(1)
    calls = {"n": 0}
    original = stage2_loss.Stage2Loss.__call__

    def killing(self, model, batch):
        if model.training:
            calls["n"] += 1
            if calls["n"] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return original(self, model, batch)

    stage2_loss.Stage2Loss.__call__ = killing
    try:
        settings = stage2_train.Stage2Settings(bottleneck=8, num_durations=4, risk_memory=int(w["memory"]),
                                         loss={"alpha": 0.5, "dispersion": 0.1, "alignment": 0.1})
        ts = TrainSettings(lr=5e-3, batch_size=8, max_steps=6, warmup_steps=1, checkpoint_every=3, eval_every=2,
                           seed=1, precision="fp32", gradient_checkpointing=False, progress=False)
        return stage2_train.train_stage2(w["paths"], pd.read_parquet(w["cohort"]), w["store"], head, pretrain, settings, ts,
                                   out, stage1_dir=w["stage1"], decoder_path=w["decoder"], vlm_options={"lora": w["lora"], "feature_norm": w.get("feature_norm", "none")},
                                   branch_lr=5e-2)
    finally:
        stage2_loss.Stage2Loss.__call__ = original


if __name__ == "__main__":
    print("SUMMARY", json.dumps(run(json.load(open(sys.argv[1])), sys.argv[2], sys.argv[4], sys.argv[5], int(sys.argv[3]))))
"""


def _world(world, memory=0) -> dict:
    from ctsurv.vlm import build, save

    stage1 = world["tmp"] / "stage1"
    if not stage1.exists():
        save(build(world["decoder"], 8, 4, lora=LORA, feature_fingerprint="tiny-encoder"), stage1)
    world["cohort"].to_parquet(world["tmp"] / "cohort.parquet")
    return {"paths": {k: str(v) for k, v in world["paths"].items()}, "cohort": str(world["tmp"] / "cohort.parquet"),
            "store": str(world["store"]), "stage1": str(stage1), "decoder": str(world["decoder"]), "lora": LORA,
            "memory": memory}


def _train_module(tmp: Path):
    import importlib.util

    path = tmp / "stage2_train.py"
    path.write_text(TRAIN, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("stage2_train", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def _run(script: Path, spec: dict, out: Path, kill_at=0, head="deepsurv", pretrain="with"):
    wf = out.parent / f"{out.name}.world.json"
    wf.write_text(json.dumps(spec), encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, str(script), str(wf), str(out), str(kill_at), head, pretrain],
                          capture_output=True, text=True, env=env, timeout=300)


def test_train_kill_9_resume_and_predict(world, tmp_path):
    from ctsurv.vlm.stage2_io import load_stage2
    from ctsurv.vlm.stage2_predict import predict_questions, validation_cindex

    spec = _world(world, memory=0)
    script, module = _train_module(tmp_path)
    summary = module.run(spec, tmp_path / "whole", "deepsurv", "with")
    assert summary["steps"] == 6 and summary["trainable"].get("projector") is None  # W frozen with pre-training
    assert summary["trainable"]["branch"] > 0 and summary["trainable"]["decoder"] > 0
    assert summary["branch_lr"] == 5e-2 and summary["standardizer"]["patients"] == 20  # one pass, each training patient
    killed = _run(script, spec, tmp_path / "killed", kill_at=5)  # after the checkpoint at step 3
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = _run(script, spec, tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = pd.read_csv(tmp_path / "whole" / "metrics.csv"), pd.read_csv(tmp_path / "killed" / "metrics.csv")
    cols = ["step", "loss", "lm", "surv", "dispersion", "alignment", "val_loss"]
    assert a["step"].tolist() == list(range(1, 7)) == b["step"].tolist()
    assert (a[cols].fillna(-1) - b[cols].fillna(-1)).abs().to_numpy().max() < 1e-5

    # the checkpoint follows the validation c-index of the six-question ensemble (loss breaks ties)
    evals = a.dropna(subset=["val_cindex"])
    assert len(evals) == 3 and evals["val_cindex"].between(0, 1).all()
    top = evals.sort_values(["val_cindex", "val_loss"], ascending=[False, True], kind="stable").iloc[0]
    assert summary["best_step"] == int(top["step"]) and summary["best_val_cindex"] == pytest.approx(top["val_cindex"])
    model = load_stage2(tmp_path / "whole" / "best", feature_fingerprint="tiny-encoder")
    val_tables, val_fu, val_feats, val_ids = load_split_data({"val": world["paths"]["val"]}, world["cohort"], world["store"])
    assert len(val_tables["val"]) == 4 * len(QUESTIONS)
    again_c = validation_cindex(model, val_tables["val"], val_fu, val_feats, val_ids)
    assert again_c == pytest.approx(summary["best_val_cindex"], abs=1e-6)  # the saved model is the one picked
    # the standardiser was fitted once before step 1, and the resumed run took it from the checkpoint
    again = json.loads(resumed.stdout.split("SUMMARY", 1)[1])
    assert again["standardizer"] is None
    other = load_stage2(tmp_path / "killed" / "best", feature_fingerprint="tiny-encoder")
    assert not torch.equal(model.branch.z_std, torch.ones_like(model.branch.z_std))
    assert torch.equal(model.branch.z_mean, other.branch.z_mean) and torch.equal(model.branch.z_std, other.branch.z_std)
    tables, followup, feats, ids = load_split_data(world["paths"], world["cohort"], world["store"])
    per_q = predict_questions(model, tables, followup, feats, ids, generate_splits=("test",), max_new_tokens=4)
    assert len(per_q) == N * len(QUESTIONS)
    test = per_q[per_q["split"] == "test"]
    assert test["generated"].map(lambda s: isinstance(s, str)).all() and per_q["risk"].notna().all()
    patients, surv = patient_tables(per_q, "deepsurv", expected=len(QUESTIONS))
    assert len(patients) == N and surv.shape == (N, 101)
    # the workflow step: training patients on one question each (cycling), files written
    from ctsurv.vlm.stage2 import predict_stage2

    files = [tmp_path / f for f in ("q.parquet", "p.parquet", "s.parquet")]
    summary = predict_stage2(tmp_path / "whole" / "best", world["paths"], world["cohort"], world["store"], *files,
                             max_new_tokens=4, train_questions="one")
    assert summary["questions"] == 20 + (4 + 6) * len(QUESTIONS) and summary["generated"] == 6 * len(QUESTIONS)
    written = pd.read_parquet(files[1])
    assert len(written) == N and (written.loc[written["split"] == "test", "n_questions"] == len(QUESTIONS)).all()


def test_without_pretraining_trains_w_and_deephit_runs(world, tmp_path):
    from safetensors.torch import load_file

    from ctsurv.features import FeatureStore

    _, module = _train_module(tmp_path)
    summary = module.run(dict(_world(world, memory=16), feature_norm="standardize"), tmp_path / "dh", "deephit", "without")
    assert summary["trainable"]["projector"] == 8 * 32 + 32  # W trains when stage 1 did not train it
    best = tmp_path / "dh" / "best"
    saved = json.loads((best / "survival.json").read_text(encoding="utf-8"))
    assert saved["branch"]["head"] == "deephit" and len(saved["cuts"]) == saved["branch"]["num_bins"]
    # the fresh W's visual-token standardiser: fitted on the 20 training patients' tokens, saved with the model
    train_ids = world["ids"][:20]
    tokens = FeatureStore(world["store"]).get(train_ids, name="tokens").astype("float64").reshape(-1, 8)
    norm = load_file(str(best / "feature_norm.safetensors"))
    assert torch.allclose(norm["mean"], torch.from_numpy(tokens.mean(0)).float(), atol=1e-5)
    assert torch.allclose(norm["std"], torch.from_numpy(tokens.std(0)).float(), atol=1e-5)


def test_validation_asks_each_patient_one_question_cycling():
    from ctsurv.vlm.stage2_data import one_question_each

    table = pd.DataFrame({"study_id": np.repeat(["a", "b", "c", "d"], 3), "question_id": ["q1", "q2", "q3"] * 4})
    picked = one_question_each(table)
    assert picked["study_id"].tolist() == ["a", "b", "c", "d"]
    assert picked["question_id"].tolist() == ["q1", "q2", "q3", "q1"]


def test_without_pretraining_starts_the_same_whatever_ran_before(world):
    """A fresh W (and LoRA) is seeded: two builds after different random draws are identical."""
    from ctsurv.vlm.stage2_train import Stage2Settings, build_stage2_model

    built = []
    for draws in (0, 7):
        torch.rand(draws)  # what another step of the same process might have drawn
        model = build_stage2_model("deepsurv", "without", Stage2Settings(bottleneck=8), decoder_path=world["decoder"],
                                   vlm_options={"lora": LORA}, feature_dim=8, tokens=4,
                                   feature_fingerprint="tiny-encoder")
        built.append({k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad})
    assert built[0].keys() == built[1].keys() and any("projector" in k for k in built[0])
    for name, value in built[0].items():
        assert torch.equal(value, built[1][name]), name


@pytest.mark.parametrize("pool", ["prompt", "all"])
def test_risks_do_not_depend_on_reference_answers(world, pool):
    """One scoring path: a patient's risk is the same with the reference answer, another
    answer or none (prompt: the branch reads the prompt only; all: every split is scored on the
    generated answers); with ``prompt`` it is also the risk the teacher-forced training pass sees."""
    from ctsurv.vlm.stage2_predict import predict_questions

    model = _model(world)
    model.pool = pool
    with torch.no_grad():
        model.branch.head.net[-1].weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(0))
    tables, followup, feats, ids = load_split_data({"val": world["paths"]["val"]}, world["cohort"], world["store"])
    val = tables["val"]
    runs = [predict_questions(model, {"val": t}, followup, feats, ids, generate_splits=(), max_new_tokens=3)
            for t in (val, val.assign(answer=None), val.assign(answer="a different answer altogether"))]
    risk = runs[0]["risk"].to_numpy()
    assert len(risk) == 4 * len(QUESTIONS) and np.unique(risk.round(6)).size > 4  # risks differ between rows
    for other in runs[1:]:
        assert np.array_equal(other["risk"].to_numpy(), risk)
    assert runs[0]["reference"].tolist() == val["answer"].tolist()
    assert runs[0]["generated"].notna().all() == (pool == "all")
    if pool == "prompt":  # the training pass (teacher-forced on the reference answer) reads the same inputs
        data = SurvivalExamples(val, followup, feats, ids, model.vlm.tokenizer, model.vlm.config.prompt_format,
                                model.vlm.config.max_length)
        model.eval()
        with torch.no_grad():
            out = model(collate([data[i] for i in range(len(data))], model.vlm.tokenizer.pad_token_id))
        assert np.allclose(out["out"].reshape(-1).numpy(), risk, atol=1e-5)


def test_a_better_validation_score_wins_and_the_loss_breaks_ties():
    from ctsurv.vlm.trainer import is_better

    assert is_better(1.0, None, None, None, None) and is_better(0.9, None, 1.0, None, 2)
    assert not is_better(1.1, None, 1.0, None, 2)  # without a score: the loss
    assert is_better(5.0, 0.71, 1.0, 0.70, 2)  # a higher c-index wins over a lower loss
    assert not is_better(0.5, 0.69, 1.0, 0.70, 2)
    assert is_better(0.9, 0.70, 1.0, 0.70, 2) and not is_better(1.1, 0.70, 1.0, 0.70, 2)  # ties: the loss
    assert not is_better(0.1, float("nan"), 1.0, 0.5, 2) and is_better(0.1, 0.5, 1.0, float("nan"), 2)  # NaN ranks last

