"""``python -m index.generate_codes``: export unique semantic IDs from a trained quantizer.

Every item gets its nearest code at every level; items that share a full code are then resolved by
the chosen policy (``assign``: exact minimum-distance reassignment, default; ``dedup-token``: a 5th
token). Uniqueness holds across all datasets of a multi-dataset checkpoint (``--scope all``) or within
each dataset (``--scope dataset``). Writes ``<ds>.index_lemb.json`` (text, ``<a_i><b_j><c_k><d_l>``)
or ``<ds>.index_vitemb.json`` (image, ``<A_i>...<D_l>``) into each dataset folder (or ``--out``),
plus ``<ds>.lemb-report.json`` / ``<ds>.vitemb-report.json`` with collisions before/after and how far
items moved.

Example::

    python -m index.generate_codes --data-root data --dataset Scientific --modality text
    python -m index.generate_codes --ckpt log/index/Scientific-text-rqvae/best --policy dedup-token
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrec.data import DataError, codes_to_json, format_code
from genrec.data.codes import CODE_FILE, REPORT_FILE, CodeSpec, spec_path
from genrec.utils.io import atomic_outputs, atomic_write_json, remove_stale_temps, terminate_as_exit
from index.checkpoint import load_model, read_meta
from index.collisions import DEFAULT_MAX_CANDIDATES, OBJECTIVES, POLICIES, get_policy
from index.config import QUANTIZER_KINDS, add_dataclass_args, default_run_dir, overrides_from_args
from index.data import load_embedding_set
from index.metrics import code_stats, collision_stats
from index.train import check_compatible, resolve_device

logger = logging.getLogger("index.generate_codes")



def _opt(default: Any, help: str) -> Any:
    from dataclasses import field

    return field(default=default, metadata={"help": help})


@dataclass
class ExportConfig:
    ckpt: str = _opt("", "checkpoint folder (default log/index/<datasets>-<modality>-<kind>/best)")
    data_root: str = _opt("data", "data root")
    datasets: tuple[str, ...] = _opt((), "datasets to export (default: the checkpoint's)")
    embedding: str = _opt("", "embedding name (default: the checkpoint's)")
    modality: str = _opt("", "text or image; must match the checkpoint (default: the checkpoint's)")
    kind: str = _opt("rqvae", "quantizer kind, only used to find the default checkpoint")
    policy: str = _opt("assign", "collision policy: assign (unique 4-token codes) or dedup-token (5th token)")
    beam: int = _opt(16, "initial beam width per prefix depth for colliding items (assign; widens automatically)")
    objective: str = _opt("prefix", "assign: keep the longest prefix first (prefix) or minimise total distance (distance)")
    scope: str = _opt("all", "uniqueness across all exported datasets (all) or within each (dataset)")
    out: str = _opt("", "write code files here instead of each dataset folder")
    report: str = _opt("", "also write the combined JSON report to this path")
    max_candidates: int = _opt(DEFAULT_MAX_CANDIDATES, "assign: most (item, code) candidates one round may build; "
                               "a codebook too tight to fit fails fast, suggesting --policy dedup-token")
    progress: bool = _opt(True, "show a tqdm progress bar over the assignment rounds")
    device: str = _opt("auto", "auto, cpu, cuda, ...")
    num_threads: int = _opt(0, "torch CPU threads (0 = torch default)")

    def validate(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy {self.policy!r}: expected one of {', '.join(POLICIES)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective {self.objective!r}: expected one of {', '.join(OBJECTIVES)}")
        if self.max_candidates < 1:
            raise ValueError(f"--max-candidates must be positive, got {self.max_candidates}")
        if self.scope not in ("all", "dataset"):
            raise ValueError(f"scope {self.scope!r}: expected all or dataset")
        if self.modality not in ("", "text", "image"):
            raise ValueError(f"modality {self.modality!r}: expected text or image")
        if self.kind not in QUANTIZER_KINDS:
            raise ValueError(f"kind {self.kind!r}: expected one of {', '.join(QUANTIZER_KINDS)}")
        if len(set(self.datasets)) != len(self.datasets):
            raise ValueError(f"datasets listed twice: {','.join(self.datasets)}")


def checkpoint_path(cfg: ExportConfig) -> Path:
    if cfg.ckpt:
        return Path(cfg.ckpt)
    if not cfg.datasets or not cfg.modality:
        raise ValueError("give --ckpt, or --dataset/--datasets and --modality to find the default checkpoint")
    return default_run_dir(cfg.datasets, cfg.modality, cfg.kind) / "best"


@torch.no_grad()
def latents(model, x: np.ndarray, device: torch.device, chunk: int = 8192) -> torch.Tensor:
    model.eval()
    out = [model.latent(torch.from_numpy(x[s:s + chunk]).to(device)) for s in range(0, len(x), chunk)]
    return torch.cat(out)


def export(cfg: ExportConfig) -> dict[str, Any]:
    """Compute unique codes for every dataset, then write code files and reports (atomically)."""
    cfg.validate()
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    ckpt = checkpoint_path(cfg)
    meta = read_meta(ckpt)
    modality = cfg.modality or meta.get("modality")
    if modality not in ("text", "image"):
        raise DataError(ckpt, f"checkpoint has no valid modality ({modality!r})")
    check_compatible(meta, ckpt, modality, int(meta.get("input_dim", -1)))
    datasets = tuple(cfg.datasets or meta.get("datasets") or ())
    embedding = cfg.embedding or meta.get("embedding") or ""
    if not datasets or not embedding:
        raise ValueError("no datasets / embedding given and the checkpoint names none")
    data = load_embedding_set(cfg.data_root, datasets, embedding, expect_dim=int(meta["input_dim"]))
    model, meta = load_model(ckpt, device)
    rq = model.rq

    z = latents(model, data.x, device)
    nearest = rq.encode(z).cpu().numpy()
    policy = get_policy(cfg.policy, beam=cfg.beam, objective=cfg.objective, max_candidates=cfg.max_candidates,
                        progress=None if cfg.progress else False) if cfg.policy == "assign" \
        else get_policy(cfg.policy)
    if cfg.scope == "all":
        resolution = policy.resolve(z, rq, nearest)
        final = resolution.codes
        resolutions: Any = resolution.report
    else:
        parts, resolutions = [], {}
        for name, s in zip(data.names, data.slices()):
            r = policy.resolve(z[s], rq, nearest[s])
            parts.append(r.codes)
            resolutions[name] = r.report
        width = max(p.shape[1] for p in parts)
        if any(p.shape[1] != width for p in parts):
            # dedup-token only lengthens datasets that had duplicates; keep one code length everywhere
            parts = [p if p.shape[1] == width else np.concatenate([p, np.zeros((len(p), 1), np.int64)], 1)
                     for p in parts]
        final = np.concatenate(parts)

    scope_slices = [slice(0, len(final))] if cfg.scope == "all" else data.slices()
    for s in scope_slices:
        if np.unique(final[s], axis=0).shape[0] != final[s].shape[0]:
            raise RuntimeError("exported codes are not unique (bug)")

    per_dataset: dict[str, Any] = {}
    outputs: list[tuple[Path, dict[str, list[str]], Path]] = []
    # the grammar the generator's vocabulary is built from: the quantizer's levels and sizes, and
    # the dedup level only when collision resolution appended one
    dedup = int(final[:, rq.levels].max()) + 1 if final.shape[1] > rq.levels else 0
    spec = CodeSpec(levels=rq.levels, codes_per_level=int(max(rq.sizes)), dedup_tokens=dedup)
    for name, ds_dir, s in zip(data.names, data.dirs, data.slices()):
        tokens = [format_code(c, modality) for c in final[s]]
        out_dir = Path(cfg.out) if cfg.out else ds_dir
        code_path = out_dir / f"{name}.{CODE_FILE[modality]}.json"
        moved = int((final[s][:, :nearest.shape[1]] != nearest[s]).any(axis=1).sum())
        per_dataset[name] = {
            "file": str(code_path), "items": int(s.stop - s.start),
            "before": code_stats(nearest[s], rq.sizes), "after": collision_stats(final[s]),
            "moved": moved, "final_levels": int(final.shape[1]),
        }
        outputs.append((code_path, codes_to_json(tokens), out_dir / f"{name}.{REPORT_FILE[modality]}.json"))

    report = {
        "checkpoint": str(ckpt), "kind": meta.get("kind"), "modality": modality, "embedding": embedding,
        "datasets": list(data.names), "policy": cfg.policy,
        "objective": cfg.objective if cfg.policy == "assign" else None, "scope": cfg.scope,
        "codebook_sizes": rq.sizes, "items": int(len(final)),
        "before": code_stats(nearest, rq.sizes), "after": code_stats(final[:, :rq.levels], rq.sizes) | collision_stats(final),
        "resolution": resolutions, "per_dataset": per_dataset, "time_s": round(time.perf_counter() - t0, 3),
    }
    # Everything is computed; only now touch the output folders. Each dataset's codes and report
    # are written to temporary names first and renamed together (the report also records the code
    # file's hash, so a report that does not belong to its codes can be told apart).
    report["code_spec"] = spec.to_json()
    for code_path, obj, report_path in outputs:
        remove_stale_temps([code_path, report_path, spec_path(code_path)])
        text = json.dumps(obj, ensure_ascii=False)
        per = dict(report, code_file=str(code_path), code_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())
        with atomic_outputs([code_path, report_path, spec_path(code_path)]) as (code_tmp, report_tmp, spec_tmp):
            code_tmp.write_text(text, encoding="utf-8")
            report_tmp.write_text(json.dumps(per, indent=2, ensure_ascii=False), encoding="utf-8")
            spec_tmp.write_text(json.dumps(spec.to_json(), indent=2), encoding="utf-8")
        logger.info("wrote %s, %s and %s", code_path, report_path.name, spec_path(code_path).name)
    if cfg.report:
        atomic_write_json(cfg.report, report, indent=2)
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m index.generate_codes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=None, help="one dataset (same as --datasets NAME)")
    p.add_argument("--dedup-token", action="store_true", help="shortcut for --policy dedup-token")
    add_dataclass_args(p, ExportConfig)
    p.add_argument("--verbose", "-v", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> ExportConfig:
    raw = overrides_from_args(args, ExportConfig)
    if args.dataset:
        if raw.get("datasets") and tuple(raw["datasets"]) != (args.dataset,):
            raise ValueError("give either --dataset or --datasets, not both")
        raw["datasets"] = (args.dataset,)
    if args.dedup_token:
        if raw.get("policy") not in (None, "dedup-token"):
            raise ValueError("--dedup-token contradicts --policy")
        raw["policy"] = "dedup-token"
    return ExportConfig(**raw)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with terminate_as_exit():  # SIGTERM unwinds, so temporary files are removed
            report = export(config_from_args(args))
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = {name: {"file": d["file"], "items": d["items"], "duplicates_before": d["before"]["duplicate_items"],
                      "duplicates_after": d["after"]["duplicate_items"], "moved": d["moved"]}
               for name, d in report["per_dataset"].items()}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
