"""The T5 wrapper's CPU dropout: same distribution as nn.Dropout, used by built and loaded models."""

import pytest
import torch

from genrec.model import PRESETS, GenRecT5, MaskDropout, build_model, load_model
from genrec.tokenizer import build_tokenizer


def test_mask_dropout_keeps_the_expectation_and_the_drop_rate():
    torch.manual_seed(0)
    x = torch.full((200, 500), 3.0, requires_grad=True)
    drop = MaskDropout(0.3)
    y = drop(x)
    zero = (y == 0).float().mean().item()
    assert abs(zero - 0.3) < 0.01 and abs(y.mean().item() - 3.0) < 0.05
    assert torch.allclose(y[y != 0], torch.tensor(3.0 / 0.7))
    y.sum().backward()  # the gradient flows through the kept units only, scaled like the values
    assert torch.equal((x.grad == 0), (y == 0)) and torch.allclose(x.grad[y != 0], torch.tensor(1 / 0.7))
    drop.eval()
    assert drop(x) is x
    assert torch.equal(MaskDropout(1.0)(x), torch.zeros_like(x))


def test_built_and_loaded_models_use_it(tmp_path):
    model = build_model("tiny", build_tokenizer())
    kinds = {type(m) for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert kinds == {MaskDropout}
    model.save_pretrained(str(tmp_path))
    loaded = load_model(tmp_path)
    assert isinstance(loaded, GenRecT5)
    assert {type(m) for m in loaded.modules() if isinstance(m, torch.nn.Dropout)} == {MaskDropout}


def test_every_preset_builds_at_its_size_and_rejects_unknown_names():
    tokenizer = build_tokenizer()
    widths = {}
    for name, preset in PRESETS.items():
        model = build_model(name, tokenizer, objective="constrained", item_inputs="pooled")
        assert model.config.d_model == preset.d_model and len(model.encoder.block) == preset.num_layers
        assert len(model.decoder.block) == preset.num_decoder_layers
        widths[name] = model.config.d_model
    # medium is small at twice the width: the capacity step between small and paper
    assert widths["medium"] == 2 * widths["small"] and PRESETS["medium"].num_layers == PRESETS["small"].num_layers
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        build_model("huge", tokenizer)
