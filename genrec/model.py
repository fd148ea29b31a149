"""The generator: a T5 encoder-decoder built from a config (never downloaded).

:class:`GenRecT5` is ``T5ForConditionalGeneration`` plus two recorded choices, saved in its
``config.json`` so every reader of a checkpoint scores it the way it was trained:

- ``genrec_objective``: ``full`` (softmax over the whole vocabulary, the published objective) or
  ``constrained`` (softmax over the tokens that continue a valid code; :mod:`genrec.objective`).
- ``genrec_item_inputs``: ``tokens`` (the encoder sees every code token of the history) or
  ``pooled`` (one encoder position per history item: the mean of its code-token embeddings plus a
  learned modality embedding), so the encoder input is ``1 + history + 1`` positions instead of
  ``1 + levels x history + 1``. The sources stay token sequences (caches, decoding and
  ``recommend`` are unchanged); the model pools them itself, an item starting at each first-level
  code token.

- ``genrec_causal_encoder`` (pooled inputs only): item position ``j`` attends to the task token and
  items ``1..j`` only, and the closing ``</s>`` is left out of the encoder, so one pass over a
  window yields every prefix's encoding (:mod:`genrec.prefix_training`).

- ``genrec_item_embeddings`` (pooled inputs only; 0 = off): the number of items that also get a
  learned embedding of their own, added to their pooled input position. The codes make items that
  share code prefixes look alike; a free per-item vector (what SASRec's input is) lets the encoder
  tell them apart as far as the data says. Items are recognised by their whole code (the
  ``item_keys`` buffer, saved with the weights); a code the model was not built with gets row 0,
  a shared vector. ``genrec_item_dropout``: during training, each history item uses row 0 instead
  of its own with this probability, so the encoder keeps reading the codes (an unseen item at
  inference looks like a dropped one).

A checkpoint without these keys (older runs, plain T5) means ``full`` / ``tokens`` / not causal /
no item embeddings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from transformers import PreTrainedTokenizerBase, T5Config, T5ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

OBJECTIVES = ("full", "constrained")
ITEM_INPUTS = ("tokens", "pooled")


@dataclass(frozen=True)
class ModelPreset:
    d_model: int
    d_ff: int
    d_kv: int
    num_heads: int
    num_layers: int
    num_decoder_layers: int
    dropout_rate: float = 0.1
    relative_attention_num_buckets: int = 32
    feed_forward_proj: str = "relu"


PRESETS: dict[str, ModelPreset] = {
    # MQL4GRec's generator.
    "paper": ModelPreset(d_model=128, d_ff=1024, d_kv=64, num_heads=6, num_layers=4, num_decoder_layers=4),
    # For tests and the quickstart: trains in seconds on a CPU.
    "tiny": ModelPreset(d_model=32, d_ff=64, d_kv=8, num_heads=2, num_layers=1, num_decoder_layers=1),
    "small": ModelPreset(d_model=64, d_ff=256, d_kv=32, num_heads=4, num_layers=2, num_decoder_layers=2),
    # small at twice the width: the capacity probe between small and paper.
    "medium": ModelPreset(d_model=128, d_ff=512, d_kv=32, num_heads=4, num_layers=2, num_decoder_layers=2),
}


def objective_of(config) -> str:
    value = getattr(config, "genrec_objective", "full")
    if value not in OBJECTIVES:
        raise ValueError(f"checkpoint objective {value!r} is unknown to this version (known: {', '.join(OBJECTIVES)})")
    return value


def item_inputs_of(config) -> str:
    value = getattr(config, "genrec_item_inputs", "tokens")
    if value not in ITEM_INPUTS:
        raise ValueError(f"checkpoint item-input mode {value!r} is unknown to this version (known: {', '.join(ITEM_INPUTS)})")
    return value


def code_token_table(tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """``[[token id, level, modality], ...]`` for every code token (modality 0 text, 1 image)."""
    import re

    pat = re.compile(r"<([a-zA-Z])_\d+>")
    out = []
    for tok, i in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
        m = pat.fullmatch(tok)
        if m:
            letter = m.group(1)
            out.append([i, ord(letter.lower()) - ord("a"), 0 if letter.islower() else 1])
    return out


class MaskDropout(torch.nn.Dropout):
    """``nn.Dropout`` whose CPU mask is drawn with ``uniform_`` instead of ``bernoulli_``: the same
    distribution at half the cost (one thread, a [256, 21, 1024] tensor: 25 ms against 50 ms;
    dropout masks were 13% of a paper-preset training step). On a GPU the fused kernel is kept."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return super().forward(x)
        if self.p >= 1.0:
            return x * 0.0
        return x * torch.empty_like(x).uniform_().ge_(self.p).mul_(1.0 / (1.0 - self.p))


# False: the stock nn.Dropout (benchmarks/bench_inputs.py --compare-dropout measures both)
MASK_DROPOUT = True


def _use_mask_dropout(model: torch.nn.Module) -> None:
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Dropout:
                setattr(module, name, MaskDropout(child.p))


class GenRecT5(T5ForConditionalGeneration):
    """T5 with the recorded objective and optional item-pooled encoder inputs (see the module doc)."""

    def __init__(self, config: T5Config):
        super().__init__(config)
        if MASK_DROPOUT:
            _use_mask_dropout(self)
        self.item_inputs = item_inputs_of(config)
        objective_of(config)
        self._token_tables: tuple[torch.Tensor, torch.Tensor] | None = None
        self.causal_encoder = bool(getattr(config, "genrec_causal_encoder", False))
        if self.causal_encoder and self.item_inputs != "pooled":
            raise ValueError("a causal encoder needs pooled item inputs (genrec_item_inputs='pooled')")
        if self.item_inputs == "pooled":
            self.item_modality = torch.nn.Embedding(2, config.d_model)
            self.item_modality.weight.data.zero_()  # starts as the plain mean of the code embeddings
        n_items = int(getattr(config, "genrec_item_embeddings", 0) or 0)
        self.item_embed = None
        self.item_dropout = float(getattr(config, "genrec_item_dropout", 0.0) or 0.0)
        self.set_history_dropout(float(getattr(config, "genrec_history_dropout", 0.0) or 0.0))
        if n_items:
            if self.item_inputs != "pooled":
                raise ValueError("item embeddings need pooled item inputs (genrec_item_inputs='pooled')")
            # row 0: any code the model was not built with; zero so training starts from the plain pooled model
            self.item_embed = torch.nn.Embedding(n_items + 1, config.d_model)
            self.item_embed.weight.data.zero_()
            self.register_buffer("item_keys", torch.zeros(n_items, dtype=torch.long))

    def set_history_dropout(self, p: float) -> None:
        """Hide each training history item from the encoder with probability ``p`` (recorded in the config)."""
        if p and (self.item_inputs != "pooled" or self.causal_encoder):
            raise ValueError("history dropout needs pooled item inputs and a non-causal encoder")
        self.history_dropout = self.config.genrec_history_dropout = p

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, torch.nn.Embedding) and (module is getattr(self, "item_modality", None)
                                                       or module is getattr(self, "item_embed", None)):
            module.weight.data.zero_()

    def set_item_keys(self, code_ids: torch.Tensor | list[torch.Tensor]) -> None:
        """Record which items own an embedding: ``[items, levels]`` token ids, one row per item, or a
        list of such tables (one per modality: their widths may differ; each code is an item to the
        encoder)."""
        if self.item_embed is None:
            raise ValueError("this model was built without item embeddings")
        keys = torch.unique(self.code_keys(code_ids))
        if len(keys) != len(self.item_keys):
            raise ValueError(f"item embeddings: {len(keys)} distinct codes, but the model was built for "
                             f"{len(self.item_keys)} (duplicate codes, or codes whose keys collide)")
        self.item_keys.copy_(keys.to(self.item_keys.device))

    def code_keys(self, code_ids: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """One int64 key per code, the number :meth:`pool_inputs` builds from an encoder input."""
        tables = [code_ids] if isinstance(code_ids, torch.Tensor) else list(code_ids)
        level = self.token_tables(tables[0].device)[0]
        return torch.cat([_code_keys(t, level, self.config.vocab_size) for t in tables])

    def token_tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(level, modality)`` of every token id (level -1: not a code token), from the config.

        Plain tensors built on first use, not buffers: ``from_pretrained`` builds models on the meta
        device, where non-persistent buffers would be left uninitialised."""
        if self._token_tables is None or self._token_tables[0].device != device:
            level, modality = _token_tables(getattr(self.config, "genrec_code_tokens", []), self.config.vocab_size)
            self._token_tables = (level.to(device), modality.to(device))
        return self._token_tables

    def pool_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs_embeds [B, P, d], mask [B, P])``: task token, one position per item, then the rest."""
        B, S = input_ids.shape
        valid = attention_mask.bool()
        token_level, token_modality = self.token_tables(input_ids.device)
        lvl = token_level[input_ids]
        is_code = (lvl >= 0) & valid
        starts = (lvl == 0) & valid
        group = torch.cumsum(starts.long(), dim=1)                       # item k's tokens -> k (1-based)
        after = torch.cumsum((~is_code & valid).long(), dim=1) - 1        # non-code tokens seen before, this one excluded
        # position 0 keeps the task token; an item k goes to k (+ non-code tokens before it), a later
        # non-code token (</s>) follows the last item
        pos = torch.where(valid, group + after.clamp(min=0), torch.zeros_like(group))
        P = int(pos.max().item()) + 1 if valid.any() else 1
        emb = self.shared(input_ids)                                      # [B, S, d]
        flat = (torch.arange(B, device=input_ids.device).unsqueeze(1) * (P + 1) + torch.where(valid, pos, P)).view(-1)
        out = emb.new_zeros((B * (P + 1), emb.shape[-1])).index_add_(0, flat, emb.reshape(B * S, -1))
        cnt = emb.new_zeros(B * (P + 1)).index_add_(0, flat, valid.reshape(-1).to(emb.dtype))
        out = (out / cnt.clamp(min=1).unsqueeze(1)).view(B, P + 1, -1)[:, :P]
        # the learned modality signal on item positions
        item_mod = torch.zeros((B * (P + 1),), dtype=torch.long, device=input_ids.device).index_put_(
            (flat,), token_modality[input_ids].reshape(-1) * is_code.reshape(-1).long(), accumulate=False)
        is_item = torch.zeros((B * (P + 1),), dtype=torch.bool, device=input_ids.device).index_put_(
            (flat,), is_code.reshape(-1), accumulate=True)
        item_mod, is_item = item_mod.view(B, P + 1)[:, :P], is_item.view(B, P + 1)[:, :P]
        out = out + self.item_modality(item_mod) * is_item.unsqueeze(-1).to(out.dtype)
        if self.item_embed is not None:
            tok_key = torch.where(is_code, _token_keys(input_ids, lvl.clamp(min=0), self.config.vocab_size), 0)
            key = torch.zeros((B * (P + 1),), dtype=torch.long, device=input_ids.device).index_add_(
                0, flat, tok_key.reshape(-1)).view(B, P + 1)[:, :P].contiguous()
            at = torch.searchsorted(self.item_keys, key).clamp(max=len(self.item_keys) - 1)
            row = torch.where(self.item_keys[at] == key, at + 1, 0)
            if self.training and self.item_dropout > 0:
                row = torch.where(torch.rand(row.shape, device=row.device) < self.item_dropout, 0, row)
            out = out + self.item_embed(row) * is_item.unsqueeze(-1).to(out.dtype)
        mask = (cnt.view(B, P + 1)[:, :P] > 0).to(attention_mask.dtype)
        if self.training and self.history_dropout > 0:
            # a data augmentation, not noise on activations: the encoder sees a random sub-history of
            # the user; an input whose items would all be dropped keeps them all
            drop = is_item & (torch.rand(is_item.shape, device=is_item.device) < self.history_dropout)
            drop &= (is_item & ~drop).any(dim=1, keepdim=True)
            mask = mask * (~drop).to(mask.dtype)
        return out, mask

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder hidden states and the mask over their positions."""
        if self.item_inputs == "pooled":
            emb, mask = self.pool_inputs(input_ids, attention_mask)
            if self.causal_encoder:
                # no </s> position: a window's item j must look exactly like the end of a history
                P = mask.shape[1]
                is_item = torch.zeros_like(mask, dtype=torch.bool)
                is_item[:, 0] = True
                lvl = self.token_tables(input_ids.device)[0][input_ids]
                n_items = ((lvl == 0) & attention_mask.bool()).sum(1)
                is_item |= torch.arange(P, device=mask.device).unsqueeze(0) <= n_items.unsqueeze(1)
                mask = mask * is_item.to(mask.dtype)
                tril = torch.ones((P, P), dtype=torch.bool, device=mask.device).tril()
                full = tril.unsqueeze(0) & mask.bool().unsqueeze(1)             # [B, query, key]
                full |= torch.eye(P, dtype=torch.bool, device=mask.device)      # padded queries see themselves
                hidden = self.encoder(inputs_embeds=emb, attention_mask=full.unsqueeze(1)).last_hidden_state
                return hidden, mask
            return self.encoder(inputs_embeds=emb, attention_mask=mask).last_hidden_state, mask
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state, attention_mask

    def prefix_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor,
                      seen: torch.Tensor, decoder_input_ids: torch.Tensor, output_states: bool = False) -> torch.Tensor:
        """Logits ``[N, T, V]`` of N targets, target ``n`` decoding from example ``rows[n]``'s first
        ``seen[n]`` encoder positions (one causal encoder pass per example serves all its targets);
        ``output_states``: the states ``[N, T, d]`` the output layer would read instead (see :meth:`output_states`)."""
        hidden, mask = self.encode(input_ids, attention_mask)
        P = mask.shape[1]
        cross = mask[rows] * (torch.arange(P, device=mask.device).unsqueeze(0) < seen.unsqueeze(1)).to(mask.dtype)
        if output_states:
            return self.output_states(hidden[rows], cross, decoder_input_ids)
        return super().forward(encoder_outputs=BaseModelOutput(last_hidden_state=hidden[rows]), attention_mask=cross,
                               decoder_input_ids=decoder_input_ids, use_cache=False).logits

    def output_states(self, hidden: torch.Tensor, mask: torch.Tensor, decoder_input_ids: torch.Tensor) -> torch.Tensor:
        """The decoder's final states ``[B, T, d]``, scaled as transformers' T5 scales them before
        ``lm_head``: ``lm_head(states)`` are the logits. The constrained objective multiplies them with
        each level's rows of the output matrix only (256 of 2211 on a text-only vocabulary), where
        the full output layer and its backward were a fifth of a small model's training step."""
        out = self.decoder(input_ids=decoder_input_ids, encoder_hidden_states=hidden, encoder_attention_mask=mask,
                           use_cache=False).last_hidden_state
        if getattr(self.config, "scale_decoder_outputs", self.config.tie_word_embeddings):
            out = out * self.model_dim ** -0.5
        return out

    def forward(self, input_ids=None, attention_mask=None, encoder_outputs=None, prefix=None, output_states=False,
                **kwargs):
        """T5's forward, plus ``prefix`` (all-prefix training, see :meth:`prefix_logits`) and
        ``output_states``: return :meth:`output_states` (a tensor) instead of the logits."""
        if prefix is not None:  # all-prefix training through the (DDP-wrapped) forward
            return self.prefix_logits(**prefix, output_states=output_states)
        # Only generate() wants a key/value cache (it asks for one); without this, every training and
        # validation forward builds one from config.use_cache, and transformers' cache constructor
        # deep-copies the whole config (with its code-token table): a sixth of a small model's step.
        kwargs.setdefault("use_cache", False)
        if encoder_outputs is None and input_ids is not None and (output_states or self.item_inputs == "pooled"):
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            hidden, attention_mask = self.encode(input_ids, attention_mask)
            encoder_outputs = BaseModelOutput(last_hidden_state=hidden)
            input_ids = None
        if output_states:
            return self.output_states(encoder_outputs[0], attention_mask, kwargs["decoder_input_ids"])
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, encoder_outputs=encoder_outputs, **kwargs)


def _token_tables(code_tokens: list[list[int]], vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(level, modality)`` per token id from ``[[token id, level, modality], ...]`` (level -1: not a code token)."""
    table = torch.tensor(code_tokens or [[0, -1, 0]], dtype=torch.long)
    level = torch.full((vocab_size,), -1, dtype=torch.long)
    modality = torch.zeros(vocab_size, dtype=torch.long)
    level[table[:, 0]] = table[:, 1]
    modality[table[:, 0]] = table[:, 2]
    return level, modality


def _token_keys(ids: torch.Tensor, level: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``id * vocab_size**level``: an item's key is the sum over its code tokens, exact while
    vocab**levels < 2**63 (and the same wrapped number wherever it is summed)."""
    return ids.long() * vocab_size ** level


def _code_keys(code_ids: torch.Tensor, level: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """One key per code (row of token ids), the number :meth:`GenRecT5.pool_inputs` sums from an input."""
    lvl = level[code_ids]
    if (lvl < 0).any():
        raise ValueError("item embeddings: a code holds a token that is not a code token")
    return _token_keys(code_ids, lvl, vocab_size).sum(1)


def encode_sources(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder output and mask of any T5 (a plain T5 checkpoint encodes its tokens)."""
    if isinstance(model, GenRecT5):
        return model.encode(input_ids, attention_mask)
    return model.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state, attention_mask


def load_model(path) -> GenRecT5:
    """A saved generator (any of this project's checkpoints, old plain-T5 ones included)."""
    from transformers import T5Config

    config = T5Config.from_pretrained(str(path))
    objective_of(config)
    item_inputs_of(config)
    return GenRecT5.from_pretrained(str(path))


def build_model(preset: str | ModelPreset, tokenizer: PreTrainedTokenizerBase, *, objective: str = "full",
                item_inputs: str = "tokens", causal_encoder: bool = False,
                item_codes: torch.Tensor | list[torch.Tensor] | None = None, **overrides) -> GenRecT5:
    """A freshly initialised T5 sized by ``preset`` for ``tokenizer``'s vocabulary.

    ``item_codes`` (``[items, levels]`` token ids, or one such table per modality; pooled inputs
    only): give each of these items a learned input embedding of its own (see the module doc)."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown model preset {preset!r}; choose from {sorted(PRESETS)}")
        preset = PRESETS[preset]
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")
    if item_inputs not in ITEM_INPUTS:
        raise ValueError(f"unknown item-input mode {item_inputs!r}; choose from {', '.join(ITEM_INPUTS)}")
    code_tokens = code_token_table(tokenizer)
    config = T5Config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        genrec_objective=objective,
        genrec_item_inputs=item_inputs,
        genrec_code_tokens=code_tokens if item_inputs == "pooled" else [],
        genrec_causal_encoder=causal_encoder,
        genrec_item_embeddings=0 if item_codes is None else _count_items(item_codes, code_tokens, len(tokenizer)),
        **{**asdict(preset), **overrides},
    )
    model = GenRecT5(config)
    if item_codes is not None:
        model.set_item_keys(item_codes)
    return model


def _count_items(item_codes: torch.Tensor | list[torch.Tensor], code_tokens: list[list[int]], vocab_size: int) -> int:
    tables = [item_codes] if isinstance(item_codes, torch.Tensor) else list(item_codes)
    level = _token_tables(code_tokens, vocab_size)[0]
    return len(torch.unique(torch.cat([_code_keys(t, level, vocab_size) for t in tables])))
