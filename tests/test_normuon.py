"NorMuon: DistNorMuon equal to single-process NorMuon on 2 gloo ranks, its state gathered and resharded, Keras parity, configs"
import os
import numpy as np
import pytest
import torch
from test_distributed import Net, loss_of, reference, _run, KW, STEPS
from dl_optim.normuon import NorMuon, DistNorMuon

def _dist_equal(rank, world, tmp):
    torch.manual_seed(0)
    model = Net(); opt = DistNorMuon(model, beta2=0.9, **KW)
    for step in range(STEPS):
        opt.zero_grad(); loss_of(model, rank, step).backward(); opt.step()
    ref, ref_opt = reference(world, STEPS, make=lambda m: NorMuon(m, beta2=0.9, **KW))
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5, msg=lambda m: f'{n}: {m}')
    sd, ref_sd = opt.state_dict(), ref_opt.state_dict()   # every rank: the complete single-process state
    keys = {k for st in ref_sd['state'].values() for k in st}
    assert 'second_momentum_buffer' in keys
    for i, st in ref_sd['state'].items():
        for k, v in st.items(): torch.testing.assert_close(sd['state'][i][k], v, rtol=0, atol=1e-5)
    again = DistNorMuon(Net(), beta2=0.9, **KW); again.load_state_dict(sd)   # resharded: owners keep their matrices' state
    mine = {p for b in again._buckets for i, p in enumerate(b.params) if again.owner(b, i) == rank}
    assert all('second_momentum_buffer' in again.state[p] for p in mine)

@pytest.mark.distributed
@pytest.mark.parametrize('world', [2])
def test_dist_normuon_equals_single_process(world):
    _run(_dist_equal, world)

def test_keras_normuon_matches_torch_and_round_trips():
    import dl_optim, keras
    from dl_optim.keras_muon import Muon
    from dl_optim.optimizers import optimizer_builder
    rng = np.random.default_rng(0); K0 = rng.standard_normal((24, 40)).astype('float32')
    gs = [rng.standard_normal((24, 40)).astype('float32') for _ in range(4)]
    kv = keras.Variable(K0.copy(), name='w')
    ko = Muon(variant='normuon', beta2=0.9, head_names=['zzz'], ns_dtype='float32', learning_rate=0.02)
    for g in gs: ko.apply_gradients([(keras.ops.convert_to_tensor(g), kv)])
    W = torch.nn.Parameter(torch.from_numpy(K0.T.copy()))   # the Keras kernel is stored (in, out)
    to = NorMuon([{'params': [W], 'use_muon': True}], lr=0.02, beta2=0.9, ns_dtype=torch.float32)
    for g in gs: W.grad = torch.from_numpy(g.T.copy()); to.step()
    np.testing.assert_allclose(kv.numpy(), W.detach().numpy().T, atol=1e-5)
    built = optimizer_builder({'type': 'normuon', 'beta2': 0.9}, 0.02)
    assert built.variant.name == 'normuon' and built.beta2 == 0.9
    back = Muon.from_config(built.get_config())
    assert back.variant.name == 'normuon' and back.beta2 == 0.9
