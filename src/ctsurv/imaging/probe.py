"""Does the image encoder see what matters?  Probes of a cohort's image features, before and after pretraining.

Rule ``probe_features`` (demo survival cohorts, which hold the truth table of the latent
image fields and which the encoder never saw) probes the pooled features of the feature
store against those fields (:mod:`ctsurv.probe`), and beside them the pooled features of
the random-weights encoder that pretraining starts from, encoded here on the same studies in
the store's precision (bf16 where the store is). The two columns of ``probe.md`` then show what pretraining added.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import DataError
from ..features import FeatureStore
from ..probe import align, probe_features, read_id_table, write_probe
from .merlin import build_encoder

log = logging.getLogger(__name__)


def pooled_features(study_ids: Sequence[str], cache_dir: str | Path, model, batch_size: int = 4,
                    precision: str = "fp32", channels_last: bool | str = "auto", tokens: str | None = None):
    """Pooled layer-4 features (N, C) of preprocessed volumes on the CPU, float16 like a feature store's.

    Computed the way ``encode_images`` computes a store's (:mod:`ctsurv.imaging.encode`):
    the same autocast precision (``fp32``, ``bf16`` or ``auto``) and memory format
    (``channels_last`` True, False or ``auto``: both timed on the first batch), then
    rounded to float16, so two encoders compared by a probe differ only in their weights.

    With ``tokens`` ("inplane" or "all", :func:`ctsurv.imaging.merlin.pool_feature_map`) the
    visual tokens (N, T, C) are returned too, as a pair ``(pooled, tokens)``.
    """
    from tqdm.auto import tqdm

    from .cache import load_preprocessed
    from .encode import autocast_context, channels_last_is_faster, resolve_precision
    from .merlin import pool_feature_map

    device = torch.device("cpu")
    dtype = resolve_precision(precision, device)
    out = np.zeros((len(study_ids), model.out_channels), dtype=np.float16)
    token_rows: list[np.ndarray] = []
    model = model.eval()
    try:
        with torch.inference_mode():
            for start in tqdm(range(0, len(study_ids), batch_size), desc="encode (random weights)", unit="batch"):
                ids = study_ids[start:start + batch_size]
                batch = torch.from_numpy(np.stack([load_preprocessed(cache_dir, s) for s in ids]))[:, None]
                if start == 0:
                    use = (channels_last_is_faster(model, batch, dtype, repeats=1) if channels_last == "auto"
                           else bool(channels_last))
                    model.to(memory_format=torch.channels_last_3d if use else torch.contiguous_format)
                with autocast_context(device, dtype):
                    fmap = model(batch)
                pooled, toks = pool_feature_map(fmap, tokens or "inplane")
                out[start:start + len(ids)] = pooled.numpy().astype(np.float16)
                if tokens:
                    token_rows.append(toks.numpy().astype(np.float16))
    finally:
        model.to(memory_format=torch.contiguous_format)
    if tokens:
        return out, (np.concatenate(token_rows) if token_rows else np.zeros((0, 0, model.out_channels), np.float16))
    return out


def store_precision(store_dir: str | Path, default: str) -> str:
    """The precision a feature store was encoded in (its ``encoder.json``), else ``default``."""
    return _store_setting(store_dir, "precision", ("fp32", "bf16"), default)


def store_token_mode(store_dir: str | Path, default: str) -> str:
    """The token mode ("inplane" or "all") a feature store was encoded with (its ``encoder.json``), else ``default``."""
    return _store_setting(store_dir, "token_mode", ("inplane", "all"), default)


def _store_setting(store_dir: str | Path, key: str, known: tuple[str, ...], default: str) -> str:
    """``key`` of the store's ``encoder.json`` when it is one of ``known``, else ``default``."""
    from .stamps import read_store_meta

    recorded = read_store_meta(store_dir).get(key)
    return recorded if recorded in known else default


def probe_dataset(
    store_dir: str | Path,
    qc_table: str | Path,
    truth_table: str | Path,
    out_dir: str | Path,
    encoder: dict,
    probe: dict,
    pretrained: bool,
) -> dict:
    """Probe a cohort's image features against its truth table; write probe.md and probe.json.

    Every column is probed from the pooled features; the columns of ``probe["token_columns"]``
    (findings that are local, such as tumour size) also from the visual tokens, concatenated
    (T x C features). When the store was made with trained weights (a checkpoint, e.g.
    ``packaged:demo-merlin``, or the in-run pretrained encoder), the random-weights encoder of the
    same architecture is encoded here on the same studies and probed beside it.

    Args:
        store_dir: the cohort's image feature store (``results/{dataset}/features/image``).
        qc_table: its ``ct/qc.parquet`` (the preprocessed cache is that folder).
        truth_table: the table of latent fields (``study_id`` + columns).
        out_dir: where probe.md and probe.json go.
        encoder: config ``imaging.encoder`` (``layers``, ``width``, ``seed``: the random-weights encoder;
            ``checkpoint``: names the trained column).
        probe: config ``imaging.probe`` (``columns``, ``token_columns``, ``folds``, ``bootstrap``,
            ``max_studies``, ``seed``).
        pretrained: the store was made by trained weights (the in-run pretrained encoder or a checkpoint).
    """
    from .merlin import token_mode

    store = FeatureStore(store_dir)
    table = read_id_table(truth_table, "study_id")
    rows, aligned = align(store.study_ids, table, "study_id", str(truth_table))
    ids = [store.study_ids[i] for i in rows]
    limit = probe.get("max_studies")
    if limit is not None and len(ids) > limit:
        pick = np.sort(np.random.default_rng(probe["seed"]).choice(len(ids), size=limit, replace=False))
        ids = [ids[i] for i in pick]
        aligned = aligned.iloc[pick].reset_index(drop=True)
        log.info("probing a seeded sample of %d of %d studies", limit, len(rows))
    checkpoint = encoder.get("checkpoint")
    trained = pretrained or checkpoint is not None
    if checkpoint is not None:
        name = str(checkpoint).split(":", 1)[1] if str(checkpoint).startswith("packaged:") else "checkpoint"
    else:
        name = "pretrained" if pretrained else "random weights"
    token_columns = list(probe.get("token_columns") or [])
    pooled = {name: store.get(ids, "pooled")}
    tokens = {}
    if token_columns:
        tokens[f"{name} tokens"] = store.get(ids, "tokens").reshape(len(ids), -1)
    for label, x in {**pooled, **tokens}.items():
        if not np.isfinite(x).all():
            raise DataError(f"{store_dir}: the {label} features hold non-finite values; re-run encode_images")
    precision = None
    if trained:
        model = build_encoder(None, encoder["layers"], encoder["width"], encoder["seed"])
        from .encode import precision_name, resolve_precision

        precision = precision_name(resolve_precision(store_precision(store_dir, encoder.get("precision", "auto")),
                                                     torch.device("cpu")))
        random = pooled_features(ids, Path(qc_table).parent, model, batch_size=encoder.get("batch_size", 4),
                                 precision=precision, channels_last=encoder.get("channels_last", "auto"),
                                 tokens=store_token_mode(store_dir, token_mode(encoder.get("tokens", 49))) if token_columns else None)
        if token_columns:
            pooled["random weights"], random_tokens = random[0], random[1]
            tokens["random weights tokens"] = random_tokens.reshape(len(ids), -1)
        else:
            pooled["random weights"] = random
    kwargs = dict(folds=probe["folds"], seed=probe["seed"], n_boot=probe["bootstrap"], source=str(truth_table))
    result = probe_features(pooled, aligned, probe["columns"], **kwargs)
    if token_columns:
        by_token = probe_features(tokens, aligned, token_columns, **kwargs)
        merge_probes(result, by_token)
    result["notes"] = [
        f"Features: {store_dir} ({name}" + (f", {checkpoint}" if checkpoint is not None else "") + ")" + (
            f"; random weights: the same architecture (layers {list(encoder['layers'])}, width {encoder['width']}) "
            f"with the seeded initialisation (seed {encoder['seed']}), encoded here "
            f"on the same {len(ids)} studies in {precision} like the store." if trained else "."),
        "Pooled: the mean of the layer-4 map. Tokens: the visual tokens the language model reads, concatenated "
        f"(only for {', '.join(token_columns)}: findings that are local)." if token_columns else "Pooled: the mean of the layer-4 map.",
        f"Targets: {truth_table}. The encoder never saw this cohort.",
    ]
    write_probe(result, out_dir, title=f"Linear probes of the image features: {Path(store_dir).parent.parent.name}")
    return result


def merge_probes(result: dict, extra: dict) -> dict:
    """Add ``extra``'s feature sets (probed on the same rows and folds) to ``result``, in place:
    its columns gain those sets' results; columns it does not probe show them as not probed."""
    result["feature_sets"] = result["feature_sets"] + [s for s in extra["feature_sets"] if s not in result["feature_sets"]]
    by_column = {t["column"]: t for t in result["targets"]}
    for t in extra["targets"]:
        mine = by_column.get(t["column"])
        if mine is None:
            result["targets"].append(t)
        elif "results" in t and "results" in mine:
            mine["results"].update(t["results"])
    return result
