"""The generator's tasks: how a history or an item becomes (source tokens, target tokens).

Every task starts its source with its own learned task token. Sequence tasks concatenate the codes
of the (capped) history, oldest first, with no separator; the target is one item's code. Fusion
tasks have two directions: ``fusionseqrec`` shares one task token between them (the modality of
the history tells the direction), ``fgfusionseqrec`` has a token per direction. A seeded coin per
draw picks the direction, so every sample yields both *variants* and the data pipeline chooses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

from genrec.data.codes import Codes, make_codes_unique
from genrec.data.dataset import RecDataset

logger = logging.getLogger(__name__)

Tokens = list[str]
Variant = tuple[Tokens, Tokens]  # (source tokens, target tokens); the tokenizer adds </s>


def task_token(name: str) -> str:
    return f"<task_{name}>"


@dataclass(frozen=True)
class Direction:
    source: str  # modality of the history / input item: "text" or "image"
    target: str  # modality of the predicted code
    token: str   # task token that opens the source


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # "seq": history -> next item; "item": one item -> the same item in the other modality
    directions: tuple[Direction, ...]

    @property
    def modalities(self) -> set[str]:
        return {m for d in self.directions for m in (d.source, d.target)}

    def variants(self, codes: dict[str, Codes], history: Sequence[int], target: int) -> list[Variant]:
        """Every direction's (source, target) tokens for one sample (one item for item tasks)."""
        out = []
        for d in self.directions:
            src = [d.token]
            for item in history:
                src.extend(codes[d.source][item])
            out.append((src, list(codes[d.target][target])))
        return out


def _seq(name: str, src: str, tgt: str) -> Task:
    return Task(name, "seq", (Direction(src, tgt, task_token(name)),))


TASKS: dict[str, Task] = {
    "seqrec": _seq("seqrec", "text", "text"),
    "seqimage": _seq("seqimage", "image", "image"),
    "seqitem2image": _seq("seqitem2image", "text", "image"),
    "seqimage2item": _seq("seqimage2item", "image", "text"),
    "item2image": Task("item2image", "item", (Direction("text", "image", task_token("item2image")),)),
    "image2item": Task("image2item", "item", (Direction("image", "text", task_token("image2item")),)),
    "fusionseqrec": Task("fusionseqrec", "seq", (
        Direction("text", "image", task_token("fusionseqrec")),
        Direction("image", "text", task_token("fusionseqrec")))),
    "fgfusionseqrec": Task("fgfusionseqrec", "seq", (
        Direction("text", "image", task_token("fgfusion_text2image")),
        Direction("image", "text", task_token("fgfusion_image2text")))),
}


# The vocabulary's task tokens, in registry order. The registry is append-only: a new task goes at
# the end, takes the next of the tokenizer's reserved task slots, and no other token id moves.
TASK_TOKENS: tuple[str, ...] = tuple(dict.fromkeys(d.token for t in TASKS.values() for d in t.directions))


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; available: {', '.join(TASKS)}")
    return TASKS[name]


def parse_tasks(spec: str | Sequence[str]) -> list[Task]:
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    if not names:
        raise ValueError("no tasks given")
    return [get_task(n) for n in names]


def dataset_codes(dataset: RecDataset, dedup: bool = True) -> dict[str, Codes]:
    """The codes the generator learns, per modality present in ``dataset``.

    With ``dedup`` (the default), a modality whose code file maps several items to one code gets a
    fifth dedup token on every item (``make_codes_unique``), so each generated code names exactly
    one item. Training and evaluation must use the same setting; runs store it in their config.
    """
    out: dict[str, Codes] = {}
    for modality, codes in (("text", dataset.text_codes), ("image", dataset.image_codes)):
        if codes is None:
            continue
        if dedup:
            codes, n_dup = make_codes_unique(codes)
            if n_dup:
                logger.info("%s %s codes: %d items share a code; appended a dedup token", dataset.name, modality, n_dup)
        out[modality] = codes
    return out


def resolve_tasks(tasks: Sequence[Task], datasets: Sequence[RecDataset]) -> dict[str, list[Task]]:
    """Which tasks each dataset trains; image tasks skip datasets without image codes (logged).

    Raises ValueError when a requested task can run on none of the datasets, so a misconfigured
    run fails before training instead of silently training something else.
    """
    plan: dict[str, list[Task]] = {ds.name: [] for ds in datasets}
    for task in tasks:
        used = False
        for ds in datasets:
            missing = task.modalities - set(dataset_codes(ds))
            if missing:
                logger.warning("dataset %s has no %s codes: task %s is skipped for it",
                               ds.name, "/".join(sorted(missing)), task.name)
                continue
            plan[ds.name].append(task)
            used = True
        if not used:
            needs = "/".join(sorted(task.modalities))
            runnable = [t.name for t in tasks if any(t.modalities <= set(dataset_codes(ds)) for ds in datasets)]
            hint = f"; train the tasks the codes allow with --tasks {','.join(runnable)}" if runnable else ""
            raise ValueError(f"task {task.name} needs {needs} codes, which none of the datasets "
                             f"({', '.join(d.name for d in datasets)}) has{hint}")
    return plan
