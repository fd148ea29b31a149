"""The batched trie-constrained beam search returns exactly generate's beams (random T5s, random codes)."""

import math

import numpy as np
import pytest
import torch

from genrec.data import format_code, make_codes_unique
from genrec.decoding import CodeTrie, beam_search, generate_with_trie, pad_sources
from genrec.model import build_model
from genrec.tokenizer import build_tokenizer, code_token_ids

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 2e-4   # absolute, on total log-probabilities
RTOL = 2e-5  # relative: peaked models have logits in the hundreds, float32 rounding grows with them


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def _model(tok, preset="tiny", seed=0, factor=1.0):
    torch.manual_seed(seed)
    m = build_model(preset, tok, initializer_factor=factor)
    return m.eval()


def _random_codes(rng, n, per_level, modality="text"):
    return [format_code([rng.integers(0, k) for k in per_level], modality) for _ in range(n)]


def _sources(tok, rng, n, max_len=25):
    lo, hi = 3, len(tok)
    return [rng.integers(lo, hi, size=int(rng.integers(2, max_len))).tolist() + [tok.eos_token_id] for _ in range(n)]


def _assert_same(fast, ref, tol=TOL):
    """Same beams in the same order; scores equal within ``tol``. Where two scores are closer than
    ``tol`` their order is float noise, so those positions compare as sets."""
    assert fast.leaves.shape == ref.leaves.shape
    valid_f, valid_r = fast.leaves >= 0, ref.leaves >= 0
    assert torch.equal(valid_f, valid_r)
    assert torch.allclose(fast.scores[valid_f], ref.scores[valid_r], atol=tol, rtol=RTOL)
    for b in range(fast.leaves.shape[0]):
        lf, lr = fast.leaves[b][valid_f[b]].tolist(), ref.leaves[b][valid_r[b]].tolist()
        sf = fast.scores[b][valid_f[b]].tolist()
        assert len(set(lf)) == len(lf), "a leaf returned twice"
        if lf == lr:
            continue
        i = 0
        while i < len(lf):  # group near-tied positions
            j = i + 1
            while j < len(lf) and abs(sf[j] - sf[j - 1]) < tol + RTOL * abs(sf[j]):
                j += 1
            assert sorted(lf[i:j]) == sorted(lr[i:j]), f"user {b}: beams differ at positions {i}..{j - 1}"
            i = j


def _check_against_generate(model, tok, codes, sources, beams):
    trie = CodeTrie.from_codes(tok, codes)
    ids, mask = pad_sources(sources, tok.pad_token_id)
    fast = beam_search(model, ids, mask, trie, beams)
    ref = generate_with_trie(model, ids, mask, trie, beams)
    _assert_same(fast, ref)
    return trie, fast, ref


def test_trie_tables_by_hand():
    codes = torch.tensor([[10, 20, 30], [10, 20, 31], [10, 21, 30], [11, 20, 30], [10, 20, 30]])
    trie = CodeTrie.from_token_ids(codes)
    assert trie.levels == 3 and trie.num_leaves == 4 and not trie.unique
    assert trie.level_tokens[0].tolist() == [10, 11]
    assert trie.children[0].tolist() == [[0, 1]]             # root -> prefixes (10,) and (11,)
    assert trie.level_tokens[1].tolist() == [20, 21]
    assert trie.children[1].tolist() == [[0, 1], [2, -1]]    # (11, 21) does not exist
    # leaves 0..3 = (10,20,30) (10,20,31) (10,21,30) (11,20,30); items 0 and 4 share leaf 0
    assert trie.leaf_code.tolist() == [[10, 20, 30], [10, 20, 31], [10, 21, 30], [11, 20, 30]]
    items_of = lambda leaf: trie.leaf_items[trie.leaf_ptr[leaf]:trie.leaf_ptr[leaf + 1]].tolist()  # noqa: E731
    assert items_of(0) == [0, 4] and items_of(3) == [3]
    assert trie.item_leaf.tolist() == [0, 1, 2, 3, 0]
    table = trie.prefix_table(start_id=0, eos_id=1)
    assert table[(0,)] == [10, 11] and table[(0, 10, 20)] == [30, 31] and table[(0, 11, 20, 30)] == [1]
    with pytest.raises(ValueError):
        CodeTrie.from_token_ids(np.zeros((0, 3), dtype=np.int64))


@pytest.mark.parametrize("seed,factor", [(0, 1.0), (1, 4.0), (2, 1.0)])
def test_matches_generate_random_codes(tok, seed, factor):
    rng = np.random.default_rng(seed)
    model = _model(tok, "tiny", seed, factor)
    codes = list(dict.fromkeys(_random_codes(rng, 300, [16, 16, 256, 256])))
    _check_against_generate(model, tok, codes, _sources(tok, rng, 5), beams=8)


def test_matches_generate_shared_prefixes_and_dedup_level(tok):
    """Few distinct tokens at the first levels (heavy prefix sharing) and duplicated codes made unique
    with a fifth dedup token; a deeper model and 20 beams."""
    rng = np.random.default_rng(3)
    model = _model(tok, "small", 3, 2.0)
    codes = _random_codes(rng, 400, [3, 2, 4, 6])  # 144 possible codes for 400 items: many duplicates
    unique, n_dup = make_codes_unique(codes)
    assert n_dup > 0 and len(unique[0]) == 5
    trie, fast, _ = _check_against_generate(model, tok, unique, _sources(tok, rng, 6, 40), beams=20)
    assert trie.unique and trie.levels == 5
    assert (fast.leaves >= 0).all()


def test_image_codes_and_batch_of_one(tok):
    rng = np.random.default_rng(4)
    model = _model(tok, "tiny", 4, 3.0)
    codes = list(dict.fromkeys(_random_codes(rng, 150, [8, 8, 8, 8], "image")))
    _check_against_generate(model, tok, codes, _sources(tok, rng, 1), beams=10)


@pytest.mark.parametrize("n_items", [1, 3, 7])
def test_fewer_valid_codes_than_beams(tok, n_items):
    rng = np.random.default_rng(5 + n_items)
    model = _model(tok, "tiny", 5, 2.0)
    codes = list(dict.fromkeys(_random_codes(rng, n_items, [2, 2, 3, 3])))
    trie, fast, ref = _check_against_generate(model, tok, codes, _sources(tok, rng, 3), beams=10)
    n = len(codes)
    assert ((fast.leaves >= 0).sum(dim=1) == n).all()        # every valid code, once
    assert torch.isinf(fast.scores[:, n:]).all() and (fast.leaves[:, n:] == -1).all()
    for row in fast.leaves[:, :n]:
        assert sorted(row.tolist()) == list(range(n))


def test_scores_equal_teacher_forced_log_probs(tok):
    """Each beam's score is the full-vocabulary log-probability of its code plus </s>; generate's
    sequences_scores are that total divided by the number of generated tokens."""
    rng = np.random.default_rng(6)
    model = _model(tok, "tiny", 6, 2.0)
    codes = list(dict.fromkeys(_random_codes(rng, 200, [8, 8, 8, 8])))
    trie = CodeTrie.from_codes(tok, codes)
    sources = _sources(tok, rng, 2)
    ids, mask = pad_sources(sources)
    res = beam_search(model, ids, mask, trie, 6)
    for b in range(2):
        for k in range(6):
            code = trie.leaf_code[res.leaves[b, k]].tolist() + [tok.eos_token_id]
            labels = torch.tensor([code])
            with torch.no_grad():
                logits = model(input_ids=ids[b:b + 1, :len(sources[b])], labels=labels).logits
            lp = torch.log_softmax(logits[0], -1).gather(1, labels.T).sum().item()
            assert lp == pytest.approx(res.scores[b, k].item(), abs=TOL)


def test_restores_training_mode_and_rejects_bad_input(tok):
    model = _model(tok, "tiny", 7)
    model.train()
    codes = _random_codes(np.random.default_rng(7), 20, [4, 4, 4, 4])
    trie = CodeTrie.from_codes(tok, list(dict.fromkeys(codes)))
    ids, mask = pad_sources([[5, 6, 1]])
    a = beam_search(model, ids, mask, trie, 4)
    assert model.training  # restored
    b = beam_search(model.eval(), ids, mask, trie, 4)
    assert torch.equal(a.leaves, b.leaves)  # dropout was off during the search
    with pytest.raises(ValueError):
        beam_search(model, ids, mask, trie, 0)
    with pytest.raises(ValueError):
        pad_sources([[1], []])
    with pytest.raises(ValueError, match="not in the tokenizer"):
        CodeTrie.from_codes(tok, [("<a_1>", "<b_2>", "<c_3>", "<d_999>")])


def test_code_token_ids_round_trip(tok):
    codes = [format_code([1, 2, 3, 4], "text"), format_code([5, 6, 7, 8], "text")]
    trie = CodeTrie.from_codes(tok, codes)
    assert torch.equal(trie.code_ids, code_token_ids(tok, codes))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_gpu_matches_cpu(tok):
    rng = np.random.default_rng(8)
    model = _model(tok, "small", 8, 2.0)
    codes = list(dict.fromkeys(_random_codes(rng, 300, [8, 8, 16, 16])))
    trie = CodeTrie.from_codes(tok, codes)
    ids, mask = pad_sources(_sources(tok, rng, 4))
    cpu = beam_search(model, ids, mask, trie, 20)
    gpu = beam_search(model.cuda(), ids.cuda(), mask.cuda(), trie.to("cuda"), 20)
    gpu.leaves, gpu.scores = gpu.leaves.cpu(), gpu.scores.cpu()
    _assert_same(gpu, cpu, tol=1e-3)
    assert math.isfinite(gpu.scores[0, 0].item())


@pytest.mark.slow
def test_instruments_codes_paper_preset_match_generate(tok, shared_data):
    """Real codes: Instruments text codes with the dedup token (6,250 items, 5 tokens), the paper
    preset (random init) and real test histories."""
    from genrec.data import load_dataset
    from genrec.evaluation import build_sources
    from genrec.tasks import dataset_codes, get_task

    ds = load_dataset(shared_data, "Instruments")
    codes = dataset_codes(ds, dedup=True)
    assert len(codes["text"][0]) == 5 and len(set(codes["text"])) == ds.num_items == 6250
    model = _model(tok, "paper", 0)
    samples = ds.split(20).test[:6]
    for modality, task in (("text", "seqrec"), ("image", "seqimage")):
        sources = build_sources(tok, get_task(task), codes, samples)
        trie, fast, _ = _check_against_generate(model, tok, codes[modality], sources, beams=20)
        assert trie.unique and (fast.leaves >= 0).all()


# -- the constrained objective: renormalised over valid continuations -----------------------------------
@pytest.mark.parametrize("seed,factor,shape", [(0, 1.0, [16, 16, 256, 256]), (1, 4.0, [3, 2, 4, 6]), (2, 2.0, [8, 8, 8, 8])])
def test_constrained_search_matches_generate_with_a_renormalising_processor(tok, seed, factor, shape):
    rng = np.random.default_rng(10 + seed)
    model = _model(tok, "tiny", seed, factor)
    codes, _ = make_codes_unique(_random_codes(rng, 300, shape))
    trie = CodeTrie.from_codes(tok, codes)
    ids, mask = pad_sources(_sources(tok, rng, 4), tok.pad_token_id)
    fast = beam_search(model, ids, mask, trie, 8, objective="constrained")
    ref = generate_with_trie(model, ids, mask, trie, 8, renormalise=True)
    _assert_same(fast, ref)
    full = beam_search(model, ids, mask, trie, 8, objective="full")
    assert not torch.allclose(fast.scores, full.scores)  # the two objectives really score differently


def _constrained_teacher_forced(model, tok, trie, ids, code):
    """log p(code) with each level's softmax over the trie's continuations of the prefix (by hand)."""
    labels = torch.tensor([code + [tok.eos_token_id]])
    with torch.no_grad():
        logits = model(input_ids=ids, labels=labels).logits[0]
    total, prefix = 0.0, ()
    table = trie.prefix_table(0, tok.eos_token_id)
    for t, token in enumerate(code):
        allowed = table[(0,) + prefix]
        total += (logits[t, token] - torch.logsumexp(logits[t, allowed], 0)).item()
        prefix += (token,)
    return total


@pytest.mark.parametrize("item_inputs", ["tokens", "pooled"])
def test_constrained_scores_are_item_probabilities(tok, item_inputs):
    """Each beam's score is the constrained teacher-forced log-probability, and over all items they sum to 1."""
    from genrec.objective import constrained_loss_sum

    rng = np.random.default_rng(7)
    torch.manual_seed(7)
    model = build_model("tiny", tok, objective="constrained", item_inputs=item_inputs, initializer_factor=2.0).eval()
    codes = list(dict.fromkeys(_random_codes(rng, 40, [3, 3, 3, 3])))
    trie = CodeTrie.from_codes(tok, codes)
    src = [tok.convert_tokens_to_ids(["<task_seqrec>", *codes[0], *codes[1]]) + [tok.eos_token_id]]
    ids, mask = pad_sources(src)
    res = beam_search(model, ids, mask, trie, len(codes))  # the model's own objective
    assert (res.leaves >= 0).all()
    assert torch.exp(res.scores).sum().item() == pytest.approx(1.0, abs=1e-4)
    for k in range(0, len(codes), 7):
        code = trie.leaf_code[res.leaves[0, k]].tolist()
        assert res.scores[0, k].item() == pytest.approx(_constrained_teacher_forced(model, tok, trie, ids, code), abs=TOL)
        labels = torch.tensor([code + [tok.eos_token_id]])
        with torch.no_grad():
            logits = model(input_ids=ids, labels=labels).logits
        loss = constrained_loss_sum(logits, labels, ["k"], {"k": trie}).item()
        assert -loss == pytest.approx(res.scores[0, k].item(), abs=TOL)


def test_label_smoothing_of_the_constrained_loss_spreads_over_the_allowed_tokens_only(tok):
    """eps-smoothed loss = (1 - eps) * NLL(target) + eps * mean NLL over the trie's continuations (by hand)."""
    from genrec.objective import constrained_loss_sum

    rng = np.random.default_rng(11)
    torch.manual_seed(11)
    model = build_model("tiny", tok, objective="constrained", initializer_factor=2.0).eval()
    codes = list(dict.fromkeys(_random_codes(rng, 40, [3, 4, 2, 3])))
    trie = CodeTrie.from_codes(tok, codes)
    src = [tok.convert_tokens_to_ids(["<task_seqrec>", *codes[0], *codes[1]]) + [tok.eos_token_id]]
    ids, _ = pad_sources(src)
    code = tok.convert_tokens_to_ids(codes[5])
    labels = torch.tensor([code + [tok.eos_token_id]])
    with torch.no_grad():
        logits = model(input_ids=ids, labels=labels).logits
    table = trie.prefix_table(0, tok.eos_token_id)
    eps, expected, prefix = 0.2, 0.0, ()
    for t, token in enumerate(code):
        allowed = table[(0,) + prefix]
        logp = logits[0, t, allowed] - torch.logsumexp(logits[0, t, allowed], 0)
        nll = -(logits[0, t, token] - torch.logsumexp(logits[0, t, allowed], 0)).item()
        expected += (1 - eps) * nll - eps * logp.mean().item()
        prefix += (token,)
    got = constrained_loss_sum(logits, labels, ["k"], {"k": trie}, label_smoothing=eps).item()
    assert got == pytest.approx(expected, abs=TOL)
    plain = constrained_loss_sum(logits, labels, ["k"], {"k": trie}).item()
    assert got != pytest.approx(plain, abs=TOL)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("item_inputs", ["tokens", "pooled"])
def test_constrained_loss_from_output_states_equals_the_loss_from_logits(tok, item_inputs, smoothing):
    """Training computes each level's output columns only: same loss and same gradients as the full logits."""
    from genrec.objective import constrained_loss_sum

    rng = np.random.default_rng(3)
    torch.manual_seed(3)
    model = build_model("tiny", tok, objective="constrained", item_inputs=item_inputs, initializer_factor=2.0).train()
    codes = list(dict.fromkeys(_random_codes(rng, 30, [4, 3, 3, 3])))
    trie = CodeTrie.from_codes(tok, codes)
    ids, mask = pad_sources([tok.convert_tokens_to_ids(["<task_seqrec>", *codes[i], *codes[i + 1]]) + [tok.eos_token_id]
                             for i in range(5)])
    labels = torch.tensor([tok.convert_tokens_to_ids(codes[i + 2]) + [tok.eos_token_id] for i in range(5)])
    dec = torch.cat([torch.full((5, 1), model.config.decoder_start_token_id), labels[:, :-1]], 1)
    losses, grads = [], []
    for states in (False, True):
        model.zero_grad()
        torch.manual_seed(0)  # same dropout masks
        out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, output_states=states)
        if states:
            assert out.shape == (5, 5, model.config.d_model)
            loss = constrained_loss_sum(out, labels, ["k"] * 5, {"k": trie}, model.lm_head.weight, smoothing)
        else:
            assert out.past_key_values is None  # training forwards build no generation cache
            loss = constrained_loss_sum(out.logits, labels, ["k"] * 5, {"k": trie}, label_smoothing=smoothing)
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4)


def test_pooled_inputs_give_one_encoder_position_per_item(tok):
    model = build_model("tiny", tok, item_inputs="pooled")
    a, b = ["<a_1>", "<b_2>", "<c_3>", "<d_4>"], ["<a_5>", "<b_6>", "<c_7>", "<d_8>", "<e_1>"]
    src = [tok.convert_tokens_to_ids(["<task_seqrec>", *a, *b]) + [tok.eos_token_id],
           tok.convert_tokens_to_ids(["<task_item2image>", "<A_1>", "<B_2>", "<C_3>", "<D_4>"]) + [tok.eos_token_id]]
    ids, mask = pad_sources(src)
    emb, pmask = model.pool_inputs(ids, mask)
    assert pmask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    E = model.shared.weight
    torch.testing.assert_close(emb[0, 0], E[ids[0, 0]])
    torch.testing.assert_close(emb[0, 1], E[ids[0, 1:5]].mean(0))
    torch.testing.assert_close(emb[0, 2], E[ids[0, 5:10]].mean(0))
    torch.testing.assert_close(emb[0, 3], E[tok.eos_token_id])
    torch.testing.assert_close(emb[1, 1], E[ids[1, 1:5]].mean(0))
    # the learned modality signal reaches item positions only, and trains
    with torch.no_grad():
        model.item_modality.weight.fill_(1.0)
    emb2, _ = model.pool_inputs(ids, mask)
    torch.testing.assert_close(emb2[0, 1], emb[0, 1] + 1.0)
    torch.testing.assert_close(emb2[0, 0], emb[0, 0])
    out = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([[ids[0, 1], 1], [ids[1, 1], 1]]))
    out.loss.backward()
    assert model.item_modality.weight.grad.abs().sum() > 0


def test_item_embeddings_reach_their_items_only_and_survive_save_and_load(tok, tmp_path):
    from genrec.model import load_model
    from genrec.tokenizer import code_token_ids

    a, b = ("<a_1>", "<b_2>", "<c_3>", "<d_4>"), ("<a_1>", "<b_2>", "<c_3>", "<d_5>")  # one code prefix apart
    image = ("<A_1>", "<B_2>", "<C_3>", "<D_4>")
    known = code_token_ids(tok, [a, b, image, a])  # a repeated code is one item
    model = build_model("tiny", tok, objective="constrained", item_inputs="pooled", item_codes=known).eval()
    assert model.config.genrec_item_embeddings == 3 and len(model.item_keys) == 3
    unknown = ("<a_9>", "<b_9>", "<c_9>", "<d_9>")
    src = [tok.convert_tokens_to_ids(["<task_seqrec>", *a, *b, *unknown]) + [tok.eos_token_id],
           tok.convert_tokens_to_ids(["<task_item2image>", *image]) + [tok.eos_token_id]]
    ids, mask = pad_sources(src)
    plain, _ = model.pool_inputs(ids, mask)  # the rows start at zero: the plain pooled input
    with torch.no_grad():
        model.item_embed.weight.copy_(torch.arange(4.0).unsqueeze(1).expand(4, model.config.d_model))
    emb, _ = model.pool_inputs(ids, mask)
    keys = model.code_keys(code_token_ids(tok, [a, b, image])).tolist()
    row = {k: 1 + model.item_keys.tolist().index(k) for k in keys}
    delta = (emb - plain)[:, :, 0]
    assert delta[0].tolist() == [0.0, row[keys[0]], row[keys[1]], 0.0, 0.0]  # task, a, b, unknown (row 0), </s>
    assert delta[1, 1].item() == row[keys[2]] and sorted(row.values()) == [1, 2, 3]
    out = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([[ids[0, 1], 1], [ids[1, 1], 1]]))
    model.item_embed.weight.grad = None
    out.loss.backward()
    touched = (model.item_embed.weight.grad.abs().sum(1) > 0).tolist()
    assert touched == [True, True, True, True]  # every known row and the unknown row were inputs
    model.save_pretrained(str(tmp_path / "m"))
    loaded = load_model(tmp_path / "m").eval()
    torch.testing.assert_close(loaded.pool_inputs(ids, mask)[0], emb)
    assert torch.equal(loaded.item_keys, model.item_keys)
    # item dropout: in training, a share of the items read the unknown row instead of their own
    model.item_dropout = 0.5
    big = pad_sources([tok.convert_tokens_to_ids(["<task_seqrec>", *(a + b) * 100]) + [tok.eos_token_id]])
    torch.manual_seed(0)
    model.train()
    dropped = (model.pool_inputs(*big)[0] - model.eval().pool_inputs(*big)[0])[0, 1:-1, 0]
    assert 0.35 < (dropped != 0).float().mean().item() < 0.65


def test_history_dropout_hides_whole_items_in_training_only(tok):
    a, b = ("<a_1>", "<b_2>", "<c_3>", "<d_4>"), ("<a_2>", "<b_1>", "<c_3>", "<d_4>")
    model = build_model("tiny", tok, objective="constrained", item_inputs="pooled")
    ids, mask = pad_sources([tok.convert_tokens_to_ids(["<task_seqrec>", *(a + b) * 100]) + [tok.eos_token_id],
                             tok.convert_tokens_to_ids(["<task_item2image>", *a]) + [tok.eos_token_id]])
    full_emb, full_mask = model.eval().pool_inputs(ids, mask)
    model.history_dropout = 0.3
    assert torch.equal(model.pool_inputs(ids, mask)[1], full_mask)  # off in evaluation
    torch.manual_seed(0)
    emb, kept = model.train().pool_inputs(ids, mask)
    torch.testing.assert_close(emb, full_emb)  # an item is hidden, never altered
    items = kept[0, 1:201]
    assert 0.6 < items.float().mean().item() < 0.8  # about 70% of a long history stays
    assert kept[0, 0] == 1 and kept[0, 201] == 1  # the task token and </s> are never hidden
    assert torch.equal(kept[1], full_mask[1])  # a one-item input keeps its item
    for _ in range(20):
        one = model.pool_inputs(*pad_sources([tok.convert_tokens_to_ids(["<task_seqrec>", *a, *b]) + [tok.eos_token_id]]))[1]
        assert one[0, 1:3].sum() >= 1
    model.config.genrec_causal_encoder = True
    with pytest.raises(ValueError, match="non-causal encoder"):
        type(model)(model.config.__class__(**{**model.config.to_dict(), "genrec_history_dropout": 0.2}))


def test_item_embeddings_need_pooled_inputs_and_distinct_codes(tok):
    from genrec.tokenizer import code_token_ids

    codes = code_token_ids(tok, [("<a_1>", "<b_2>", "<c_3>", "<d_4>")])
    with pytest.raises(ValueError, match="pooled item inputs"):
        build_model("tiny", tok, item_inputs="tokens", item_codes=codes)
    model = build_model("tiny", tok, item_inputs="pooled", item_codes=codes)
    with pytest.raises(ValueError, match="built for 1"):
        model.set_item_keys(code_token_ids(tok, [("<a_1>", "<b_2>", "<c_3>", "<d_4>"), ("<a_2>", "<b_2>", "<c_3>", "<d_4>")]))
    with pytest.raises(ValueError, match="not a code token"):
        model.code_keys(torch.tensor([[tok.eos_token_id, codes[0, 1]]]))


def test_checkpoint_with_an_unknown_objective_is_refused(tok, tmp_path):
    from genrec.model import load_model

    model = build_model("tiny", tok)
    model.config.genrec_objective = "mystery"
    model.save_pretrained(str(tmp_path / "m"))
    with pytest.raises(ValueError, match="objective 'mystery' is unknown"):
        load_model(tmp_path / "m")
    with pytest.raises(ValueError, match="unknown item-input mode"):
        build_model("tiny", tok, item_inputs="bags")


def test_pooled_model_decodes_the_same_after_save_and_load(tok, tmp_path):
    from genrec.model import load_model

    rng = np.random.default_rng(8)
    torch.manual_seed(8)
    model = build_model("tiny", tok, objective="constrained", item_inputs="pooled", initializer_factor=2.0).eval()
    with torch.no_grad():
        model.item_modality.weight.normal_()
    codes = list(dict.fromkeys(_random_codes(rng, 60, [4, 4, 4, 4])))
    trie = CodeTrie.from_codes(tok, codes)
    src = [tok.convert_tokens_to_ids(["<task_seqrec>", *codes[i], *codes[i + 1]]) + [tok.eos_token_id] for i in range(3)]
    ids, mask = pad_sources(src)
    before = beam_search(model, ids, mask, trie, 6)
    model.save_pretrained(str(tmp_path / "m"))
    after = beam_search(load_model(tmp_path / "m").eval(), ids, mask, trie, 6)
    assert torch.equal(before.leaves, after.leaves) and torch.allclose(before.scores, after.scores)


def test_the_fast_decoder_fails_loudly_if_transformers_changes_the_t5_layout():
    """Every T5 attribute the incremental decoder reads exists in the installed transformers; a
    model missing one gets an error naming it, not an AttributeError deep in a beam step."""
    import copy

    from genrec.decoding import T5_LAYOUT, check_t5_layout
    from genrec.model import build_model
    from genrec.tokenizer import build_tokenizer

    model = build_model("tiny", build_tokenizer())
    check_t5_layout(model)  # the installed version: every path present
    for path in ("b.layer[1].EncDecAttention.k.weight", "block0.layer[0].SelfAttention.compute_bias"):
        assert path in T5_LAYOUT
    broken = copy.deepcopy(model)
    del broken.decoder.block[0].layer[1].EncDecAttention
    with pytest.raises(RuntimeError, match=r"changed the T5 layout.*b\.layer\[1\]\.EncDecAttention\.q\.weight is missing"):
        check_t5_layout(broken)
