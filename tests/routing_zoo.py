"""The routing zoo: real model families built from small configs (nothing downloaded), routed by dl_optim's Muon.
`python tests/routing_zoo.py` rewrites tests/golden/routing_zoo*.json after a deliberate change of the rules."""
import json, math, sys, warnings
from pathlib import Path
import torch
from torch import nn

GOLDEN = Path(__file__).parent / 'golden'

def _hf():
    import transformers as T
    T.logging.set_verbosity_error()
    return T

def gpt2():
    T = _hf()
    return T.GPT2LMHeadModel(T.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=96, n_positions=16, bos_token_id=0, eos_token_id=0))

def llama(tied):
    T = _hf()
    return T.LlamaForCausalLM(T.LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied))

def bert():
    T = _hf()
    return T.BertForMaskedLM(T.BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                          intermediate_size=64, max_position_embeddings=16))

def t5():
    T = _hf()
    return T.T5ForConditionalGeneration(T.T5Config(vocab_size=96, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                                   decoder_start_token_id=0))

def vit():
    T = _hf()
    return T.ViTForImageClassification(T.ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2,
                                                   num_attention_heads=4, intermediate_size=64, num_labels=5))

def mamba():
    T = _hf()
    return T.MambaForCausalLM(T.MambaConfig(vocab_size=96, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2))

class MinGPT(nn.Module):
    "minGPT's naming: tok_emb, pos_emb (a bare Parameter), blocks of attention and MLP, ln_f, head"
    def __init__(self, vocab=96, d=32, ctx=16, layers=2):
        super().__init__()
        self.tok_emb, self.pos_emb = nn.Embedding(vocab, d), nn.Parameter(torch.zeros(1, ctx, d))
        self.blocks = nn.ModuleList(nn.ModuleDict(dict(ln1=nn.LayerNorm(d), attn=nn.MultiheadAttention(d, 4, batch_first=True),
                                                       ln2=nn.LayerNorm(d), fc=nn.Linear(d, 4 * d), proj=nn.Linear(4 * d, d)))
                                    for _ in range(layers))
        self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)

class ResNetBlocks(nn.Module):
    "A ResNet stem and a ResNeXt bottleneck (grouped 3×3), then pooling and a classifier `fc`"
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(16)
        self.reduce, self.grouped, self.expand = nn.Conv2d(16, 32, 1, bias=False), nn.Conv2d(32, 32, 3, padding=1, groups=4, bias=False), nn.Conv2d(32, 16, 1, bias=False)
        self.fc = nn.Linear(16, 10)

class ConvNeXtBlock(nn.Module):
    "ConvNeXt: a 7×7 depthwise conv, LayerNorm, pointwise MLP as Linear layers, layer scale, then a head"
    def __init__(self, d=32):
        super().__init__()
        self.stem = nn.Conv2d(3, d, 4, stride=4)
        self.dwconv, self.norm = nn.Conv2d(d, d, 7, padding=3, groups=d), nn.LayerNorm(d)
        self.pwconv1, self.pwconv2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.gamma = nn.Parameter(torch.ones(d))
        self.head = nn.Linear(d, 10)

TORCH_ZOO = {'gpt2_tied': gpt2, 'llama_tied': lambda: llama(True), 'llama_untied': lambda: llama(False), 'bert': bert,
             't5': t5, 'vit': vit, 'mamba': mamba, 'mingpt': MinGPT, 'resnet_blocks': ResNetBlocks,
             'convnext_block': ConvNeXtBlock}

def table(report) -> dict:
    "name -> [route, matrix view or None, 'original' LR scale or None, decided by shape alone]: the golden row"
    from dl_optim.routing import lr_scale
    return {r.name: [r.route, list(r.view.shape) if r.route == 'muon' else None,
                     round(lr_scale(r.view), 6) if r.route == 'muon' else None, r.by_shape] for r in report}

def torch_table(name) -> dict:
    from dl_optim.muon import Muon
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')   # a by-shape decision is a column of the table (and warned about)
        return table(Muon(TORCH_ZOO[name]()).routing_report())

def keras_models():
    "Keras 3 models with an Embedding, a MultiHeadAttention and a Dense head, with default layer names"
    import keras
    def functional():
        inp = keras.Input((8,), dtype='int32')
        x = keras.layers.Embedding(96, 32)(inp)
        x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=64)(x, x)   # key_dim > d_model: the guess would fail
        x = keras.layers.LayerNormalization()(x)
        x = keras.layers.Dense(64, activation='gelu')(x)
        return keras.Model(inp, keras.layers.Dense(96)(x))
    def sequential():
        return keras.Sequential([keras.Input((8,), dtype='int32'), keras.layers.Embedding(96, 32), keras.layers.Flatten(),
                                 keras.layers.Dense(64, activation='relu'), keras.layers.Dense(10), keras.layers.Softmax()])
    return {'keras_functional': functional, 'keras_sequential': sequential}

def keras_table(name) -> dict:
    import keras
    from dl_optim.keras_muon import Muon
    keras.utils.set_random_seed(0)
    keras.backend.clear_session()   # default layer names start from scratch
    model = keras_models()[name]()
    return table(Muon.for_model(model).routing_report(model.trainable_variables))

if __name__ == '__main__':
    GOLDEN.mkdir(exist_ok=True)
    (GOLDEN / 'routing_zoo_torch.json').write_text(json.dumps({n: torch_table(n) for n in TORCH_ZOO}, indent=1) + '\n')
    import dl_optim  # noqa: F401  (picks the Keras backend)
    (GOLDEN / 'routing_zoo_keras.json').write_text(json.dumps({n: keras_table(n) for n in keras_models()}, indent=1) + '\n')
    print('wrote', *sorted(p.name for p in GOLDEN.glob('routing_zoo*.json')))
