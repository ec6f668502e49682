"SLED evaluation: the GGUF model through transformers, the fact set, DoLa, statistics, the sled-eval command"
import json, subprocess
import numpy as np
import pytest
import torch
from dl_optim.config import ConfigError
from dl_optim.experiments.sled_eval import (read_facts, facts_path, dola_log_probs, wilson, mcnemar_exact, paired_bootstrap,
                                            choice_scores)

def test_committed_facts_are_well_formed():
    "The fact set lives only in data/facts.jsonl: 318 items, seven relations, a stratified third for dev"
    items = read_facts(facts_path())
    assert len(items) == 318 and len({it['relation'] for it in items}) == 7
    assert abs(sum(it['split'] == 'dev' for it in items) / len(items) - 1 / 3) < 0.02
    for it in items:
        assert len(set(it['choices'])) == len(it['choices']) == 4 and all(c.startswith(' ') for c in it['choices'])

def test_read_facts_errors(tmp_path):
    bad = [('{"prompt": 1, "choices": [" a", " b"], "answer": 0}', 'prompt'),
           ('{"prompt": "x", "choices": [" a"], "answer": 0}', 'choices'),
           ('{"prompt": "x", "choices": [" a", " b"], "answer": 2}', 'answer'),
           ('{"prompt": "x", "choices": [" a", " b"], "answer": true}', 'answer'), ('[1]', 'JSON object')]
    for line, frag in bad:
        (tmp_path / 'f.jsonl').write_text(line + '\n')
        with pytest.raises(ConfigError, match=frag): read_facts(tmp_path / 'f.jsonl')
    # malformed, empty or binary: a ConfigError naming the file (the CLI exits 2 with it, no traceback)
    for raw, frag in ((b'{oops\n', 'one JSON object'), (b'', 'at least one item'), (b'\n  \n', 'at least one item'),
                      (bytes(range(256)), 'binary')):
        (tmp_path / 'f.jsonl').write_bytes(raw)
        with pytest.raises(ConfigError, match=frag): read_facts(tmp_path / 'f.jsonl')

def test_dola_picks_the_most_divergent_layer_and_filters():
    final = torch.tensor([[4.0, 3.5, 0.0, -2.0, -2.0, -2.0]])
    near = final.clone()                                         # JS 0
    far = torch.tensor([[0.0, 4.0, 0.0, 0.0, 0.0, 0.0]])         # most divergent
    z = torch.stack([near, far, near, final])                    # layers 0..2 early, 3 final
    out = dola_log_probs(z, [0, 1, 2])
    lf, lp = torch.log_softmax(final, -1), torch.log_softmax(far, -1)
    expect = torch.log_softmax(lf - lp, -1)
    keep = torch.softmax(final, -1) >= 0.1 * torch.softmax(final, -1).max()
    torch.testing.assert_close(out[keep], expect[keep])
    assert (out[~keep] == -1000.0).all() and keep.sum() == 2

def test_statistics():
    lo, hi = wilson(50, 100)
    assert abs(lo - 0.4038) < 1e-3 and abs(hi - 0.5962) < 1e-3
    assert mcnemar_exact(0, 0) == 1.0 and abs(mcnemar_exact(1, 9) - 0.021484375) < 1e-12 and mcnemar_exact(5, 5) == 1.0
    a = np.array([1, 0, 1, 1, 0] * 20)
    lo, hi = paired_bootstrap(a, a)
    assert lo == hi == 0.0
    lo, hi = paired_bootstrap(np.ones(50), np.zeros(50))
    assert lo == hi == 1.0

def test_choice_scores_sum_per_choice():
    lp = torch.log_softmax(torch.randn(5, 7), -1)
    targets, owner = torch.tensor([1, 2, 3, 4, 5]), torch.tensor([0, 0, 1, 1, 1])
    s = choice_scores(lp, targets, owner, 2)
    torch.testing.assert_close(s, torch.tensor([lp[0, 1] + lp[1, 2], lp[2, 3] + lp[3, 4] + lp[4, 5]], dtype=torch.float64))

@pytest.fixture(scope='module')
def smol():
    from dl_optim.experiments.sled_eval import load_smollm2
    return load_smollm2()

def test_model_is_loaded_correctly(smol):
    "transformers' Llama from the GGUF file: plain-English perplexity near 9 (an independent forward pass), tokenizer round trip, digits split"
    from dl_optim.experiments.sled_eval import perplexity, encode, PLAIN_ENGLISH
    model, tok = smol
    assert type(model).__name__ == 'LlamaForCausalLM' and model.config.num_hidden_layers == 30
    assert 4 < perplexity(model, tok, PLAIN_ENGLISH) < 12
    assert tok.decode(encode(tok, 'Paris, 1889: the Eiffel Tower!')) == 'Paris, 1889: the Eiffel Tower!'
    assert encode(tok, '1234') == [tok.convert_tokens_to_ids(c) for c in '1234']        # digits split one by one

def test_sled_eval_command(tmp_path):
    r = subprocess.run(['dl-optim', 'sled-eval', '--limit', '6', '--alpha', '2', '--k', '10', '--out', str(tmp_path), '--quiet'],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / 'sled_eval.json').read_text())
    assert res['n'] == 6 and set(res['accuracy']) == {'greedy', 'sled', 'dola', 'sled_upper_half'}
    assert set(res) >= {'n', 'accuracy', 'changed', 'ci95', 'ms_per_token', 'config'}
    assert res['config']['alpha'] == 2.0 and res['config']['k'] == 10
    assert (tmp_path / 'sled_eval.png').stat().st_size > 5000
    r = subprocess.run(['dl-optim', 'sled-eval', '--alpha', '2', '--out', str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and 'both alpha and k' in r.stderr
