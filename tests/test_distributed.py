"DistMuon on gloo (CPU), world sizes 2 and 3: equal to single-process Muon, uneven counts, missing grads, FSDP2, checkpoints"
import os, tempfile, traceback
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from dl_optim.muon import Muon
from dl_optim.distributed import DistMuon, ownership

pytestmark = pytest.mark.distributed

STEPS = 4

class Net(nn.Module):
    "Uneven bucket counts (5 of one shape, 2 of another, 1 conv), a shardable embedding, a head, biases, norms, a branch"
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(96, 16)                       # 1536 elements: sharded AdamW state at W = 2, 3
        self.blocks = nn.ModuleList(nn.Linear(32, 32) for _ in range(5))
        self.wide = nn.ModuleList(nn.Linear(32, 48) for _ in range(2))
        self.narrow = nn.Linear(96, 32)
        self.conv = nn.Conv1d(1, 2, 3, padding=1)
        self.norm = nn.LayerNorm(32)
        self.branch = nn.Linear(32, 32)                          # used on some ranks only
        self.unused = nn.Linear(32, 32)                          # never used: no gradient anywhere
        self.head = nn.Linear(32, 96)
    def forward(self, x, use_branch=False):
        h = self.embed(x).flatten(1)
        for b in self.blocks: h = torch.tanh(b(h))
        h = torch.cat([w(h) for w in self.wide], -1)
        h = self.narrow(h) + self.conv(h[:, None, :32]).sum(1)
        if use_branch: h = h + self.branch(h)
        return self.head(self.norm(h))

def batch(rank, step):
    g = torch.Generator().manual_seed(1000 * step + rank)
    return torch.randint(0, 96, (16, 2), generator=g), torch.randint(0, 96, (16,), generator=g)

def loss_of(model, rank, step):
    x, y = batch(rank, step)
    return nn.functional.cross_entropy(model(x, use_branch=(rank == 0)), y)

# ns_method='standard': these tests check the sharding, bit for bit up to reduction order; Gram NS amplifies that
# order's rounding more (its own equality to single-process runs is checked in test_ns_methods.py, to 1e-4)
KW = dict(lr=0.02, weight_decay=0.01, adam_lr=3e-3, adam_weight_decay=0.01, ns_dtype=torch.float32, ns_method='standard')

def reference(world, steps, start=None, opt_state=None, make=None):
    "Single-process Muon (or `make(model)`) on the average of the ranks' gradients (what the Dist optimizer must reproduce)"
    torch.manual_seed(0)
    model = Net() if start is None else start
    opt = make(model) if make else Muon(model, **KW)
    if opt_state is not None: opt.load_state_dict(opt_state)
    for step in range(steps):
        opt.zero_grad()
        sum(loss_of(model, r, step) for r in range(world)).__truediv__(world).backward()
        opt.step()
    return model, opt

def _init(rank, world, init_file):
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world)
    torch.set_num_threads(1)

def _run(fn, world, *args):
    "Spawn `world` gloo processes running fn(rank, world, tmpdir, *args) in a fresh directory; re-raise the first failure"
    with tempfile.TemporaryDirectory() as tmp: _run_in(tmp, fn, world, *args)

def _entry(fn, rank, world, init, tmp, errors, args):
    try:
        _init(rank, world, init); fn(rank, world, tmp, *args)
    except Exception:
        errors.put(f'rank {rank}:\n{traceback.format_exc()}'); raise SystemExit(1)
    finally:
        if dist.is_initialized(): dist.destroy_process_group()

def _equal_to_reference(rank, world, tmp):
    torch.manual_seed(0)
    model = Net()
    opt = DistMuon(model, **KW)
    for step in range(STEPS):
        opt.zero_grad(); loss_of(model, rank, step).backward(); opt.step()
    ref, ref_opt = reference(world, STEPS)
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5, msg=lambda m: f'{n}: {m}')
    sd, ref_sd = opt.state_dict(), ref_opt.state_dict()
    assert sd['param_groups'] == ref_sd['param_groups']
    for i, st in ref_sd['state'].items():
        for k, v in st.items(): torch.testing.assert_close(sd['state'][i][k], v, rtol=0, atol=1e-5)
    assert opt.comm_bytes['reduce_scatter'] > 0 and opt.comm_bytes['all_gather'] > 0

@pytest.mark.parametrize('world', [2, 3])
def test_equal_to_single_process_muon(world):
    _run(_equal_to_reference, world)

def _ddp_synced(rank, world, tmp):
    "grads_synced=True after the gradients were averaged (as DDP does) gives the same parameters"
    torch.manual_seed(0)
    model = Net()
    opt = DistMuon(model, grads_synced=True, **KW)
    for step in range(STEPS):
        opt.zero_grad(); loss_of(model, rank, step).backward()
        for p in model.parameters():
            if p.grad is None: p.grad = torch.zeros_like(p) if p is not model.unused.weight and p is not model.unused.bias else None
            if p.grad is not None: dist.all_reduce(p.grad, op=dist.ReduceOp.AVG)
        opt.step()
    ref, _ = reference(world, STEPS)
    for p, q in zip(model.parameters(), ref.parameters()): torch.testing.assert_close(p, q, rtol=0, atol=1e-5)

def test_grads_synced_path():
    _run(_ddp_synced, 2)

def _save(rank, world, tmp, steps):
    import torch.distributed.checkpoint as dcp
    torch.manual_seed(0)
    model = Net(); opt = DistMuon(model, **KW)
    for step in range(steps):
        opt.zero_grad(); loss_of(model, rank, step).backward(); opt.step()
    dcp.save({'model': model.state_dict(), 'optim': opt.state_dict()}, checkpoint_id=os.path.join(tmp, 'ckpt'))

def _resume(rank, world, tmp, saved_world, steps, more):
    "Load the checkpoint on `world` ranks, train `more` steps on batches averaged over `saved_world` shards"
    import torch.distributed.checkpoint as dcp
    torch.manual_seed(5)
    model = Net(); opt = DistMuon(model, **KW)
    sd = {'model': model.state_dict(), 'optim': opt.state_dict()}
    dcp.load(sd, checkpoint_id=os.path.join(tmp, 'ckpt'))
    model.load_state_dict(sd['model']); opt.load_state_dict(sd['optim'])
    for step in range(steps, steps + more):
        opt.zero_grad()
        shards = [r for r in range(saved_world) if r % world == rank]    # this rank's share of the original batches
        if shards: (sum(loss_of(model, r, step) for r in shards) * (world / saved_world)).backward()
        opt.step()                                                       # a rank without data has no gradients at all
    return model

def _check_resumed(rank, world, tmp, saved_world, steps, more):
    model = _resume(rank, world, tmp, saved_world, steps, more)
    ref, _ = reference(saved_world, steps + more)
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=2e-5, msg=lambda m: f'{n}: {m}')

def _save_single(tmp, steps):
    import torch.distributed.checkpoint as dcp
    torch.manual_seed(0)
    model = Net(); opt = DistMuon(model, **KW)
    for step in range(steps):
        opt.zero_grad(); sum(loss_of(model, r, step) for r in range(2)).__truediv__(2).backward(); opt.step()
    dcp.save({'model': model.state_dict(), 'optim': opt.state_dict()}, checkpoint_id=os.path.join(tmp, 'ckpt'), no_dist=True)

def test_checkpoint_two_ranks_to_one():
    "dcp.save on 2 ranks, dcp.load in one process (no process group), training continues as if never interrupted"
    import torch.distributed.checkpoint as dcp
    with tempfile.TemporaryDirectory() as tmp:
        _run_in(tmp, _save, 2, 2)
        torch.manual_seed(5)
        model = Net(); opt = DistMuon(model, **KW)
        sd = {'model': model.state_dict(), 'optim': opt.state_dict()}
        dcp.load(sd, checkpoint_id=os.path.join(tmp, 'ckpt'), no_dist=True)
        model.load_state_dict(sd['model']); opt.load_state_dict(sd['optim'])
        for step in range(2, 4):
            opt.zero_grad(); sum(loss_of(model, r, step) for r in range(2)).__truediv__(2).backward(); opt.step()
        ref, _ = reference(2, 4)
        for p, q in zip(model.parameters(), ref.parameters()): torch.testing.assert_close(p, q, rtol=0, atol=2e-5)

def test_checkpoint_one_to_two_ranks():
    with tempfile.TemporaryDirectory() as tmp:
        _save_single(tmp, 2)
        _run_in(tmp, _check_resumed, 2, 2, 2, 2)

def test_checkpoint_two_to_three_ranks():
    with tempfile.TemporaryDirectory() as tmp:
        _run_in(tmp, _save, 2, 2)
        _run_in(tmp, _check_resumed, 3, 2, 2, 2)

def _run_in(tmp, fn, world, *args):
    "Spawn `world` gloo processes running fn(rank, world, tmp, *args) with `tmp` shared between them (and later runs)"
    init = os.path.join(tmp, f'init-{fn.__name__}-{world}')
    ctx = mp.get_context('spawn'); errors = ctx.SimpleQueue()
    procs = [ctx.Process(target=_entry, args=(fn, r, world, init, tmp, errors, args)) for r in range(world)]
    for p in procs: p.start()
    for p in procs: p.join(timeout=300)
    msgs = []
    while not errors.empty(): msgs.append(errors.get())
    if msgs or any(p.exitcode for p in procs): raise AssertionError('\n'.join(msgs) or f'exit codes {[p.exitcode for p in procs]}')

class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(96, 16)
        self.blocks = nn.ModuleList(nn.Linear(32, 32) for _ in range(3))
        self.odd = nn.Linear(32, 30)
        self.head = nn.Linear(30, 96)
    def forward(self, x, use_branch=False):
        h = self.embed(x).flatten(1)
        for b in self.blocks: h = torch.tanh(b(h))
        return self.head(torch.tanh(self.odd(h)))

def _fsdp2(rank, world, tmp):
    "FSDP2 (fully_shard) DTensor parameters: full matrices for NS; parameters equal single-process Muon"
    from torch.distributed.fsdp import fully_shard
    torch.manual_seed(0)
    model = Plain()
    for m in list(model.blocks) + [model.odd]: fully_shard(m)
    fully_shard(model)
    opt = DistMuon(model, grads_synced=True, **KW)
    for step in range(3):
        opt.zero_grad()
        x, y = batch(rank, step)
        nn.functional.cross_entropy(model(x), y).backward(); opt.step()
    torch.manual_seed(0)
    ref = Plain(); ropt = Muon(ref, **KW)
    for step in range(3):
        ropt.zero_grad()
        sum(nn.functional.cross_entropy(ref(*[batch(r, step)[0]]), batch(r, step)[1]) for r in range(world)).__truediv__(world).backward()
        ropt.step()
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.full_tensor(), q, rtol=0, atol=1e-5, msg=lambda m: f'{n}: {m}')

def test_fsdp2_dtensor_parameters():
    _run(_fsdp2, 2)

def test_ownership():
    assert ownership(12, 2) == (6, 12) and ownership(7, 3) == (3, 9) and ownership(1, 4) == (1, 4)
    ps = [nn.Parameter(torch.randn(8, 8)) for _ in range(5)]
    opt = DistMuon([(f'l{i}.weight', p) for i, p in enumerate(ps)])
    assert opt.world == 1 and [opt.owner(opt._buckets[0], i) for i in range(5)] == [0] * 5

# ---- DistAdamW: the same sharded AdamW, on its own ----------------------------------------------------------------
from dl_optim.distributed import DistAdamW
ADAM_KW = dict(lr=3e-3, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.01)

def adamw_reference(world, steps):
    "Single-process torch.optim.AdamW on the ranks' averaged gradients"
    return reference(world, steps, make=lambda m: torch.optim.AdamW(m.parameters(), **ADAM_KW))

def _adamw_equal(rank, world, tmp):
    torch.manual_seed(0)
    model = Net(); opt = DistAdamW(model.parameters(), **ADAM_KW)
    assert opt._adam_sharded   # the embedding (96 × 16) is sharded at W = 2 and 3
    for step in range(STEPS):
        opt.zero_grad(); loss_of(model, rank, step).backward(); opt.step()   # `branch` has gradients on rank 0 only
    ref, ref_opt = adamw_reference(world, STEPS)
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=lambda m: f'{n}: {m}')
    sd, ref_sd = opt.state_dict(), ref_opt.state_dict()
    assert sd['state'].keys() >= ref_sd['state'].keys()   # never-used parameters get zero state (so DCP loads in place)
    assert all(float(sd['state'][i]['step']) == 0 for i in sd['state'].keys() - ref_sd['state'].keys())
    for i, st in ref_sd['state'].items():
        for k, v in st.items(): torch.testing.assert_close(sd['state'][i][k], v, rtol=0, atol=1e-6)
    assert opt.comm_bytes['reduce_scatter'] > 0 and opt.comm_bytes['all_gather'] > 0

@pytest.mark.parametrize('world', [2, 3])
def test_dist_adamw_equals_torch_adamw(world):
    _run(_adamw_equal, world)

def _adamw_save(rank, world, tmp, steps):
    import torch.distributed.checkpoint as dcp
    torch.manual_seed(0)
    model = Net(); opt = DistAdamW(model.parameters(), **ADAM_KW)
    for step in range(steps):
        opt.zero_grad(); loss_of(model, rank, step).backward(); opt.step()
    dcp.save({'model': model.state_dict(), 'optim': opt.state_dict()}, checkpoint_id=os.path.join(tmp, 'ckpt'))

def _adamw_resume(rank, world, tmp, saved_world, steps, more):
    import torch.distributed.checkpoint as dcp
    torch.manual_seed(5)
    model = Net(); opt = DistAdamW(model.parameters(), **ADAM_KW)
    sd = {'model': model.state_dict(), 'optim': opt.state_dict()}
    dcp.load(sd, checkpoint_id=os.path.join(tmp, 'ckpt'))
    model.load_state_dict(sd['model']); opt.load_state_dict(sd['optim'])
    for step in range(steps, steps + more):
        opt.zero_grad()
        shards = [r for r in range(saved_world) if r % world == rank]
        if shards: (sum(loss_of(model, r, step) for r in shards) * (world / saved_world)).backward()
        opt.step()
    ref, _ = adamw_reference(saved_world, steps + more)
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=2e-6, msg=lambda m: f'{n}: {m}')

def test_dist_adamw_checkpoint_two_to_three_ranks_and_to_one():
    "dcp.save on 2 ranks; resumed on 3 ranks, and in one process, it continues as if never interrupted"
    import torch.distributed.checkpoint as dcp
    with tempfile.TemporaryDirectory() as tmp:
        _run_in(tmp, _adamw_save, 2, 2)
        _run_in(tmp, _adamw_resume, 3, 2, 2, 2)
        torch.manual_seed(5)
        model = Net(); opt = DistAdamW(model.parameters(), **ADAM_KW)   # one process, no process group
        sd = {'model': model.state_dict(), 'optim': opt.state_dict()}
        dcp.load(sd, checkpoint_id=os.path.join(tmp, 'ckpt'), no_dist=True)
        model.load_state_dict(sd['model']); opt.load_state_dict(sd['optim'])
        for step in range(2, 4):
            opt.zero_grad(); sum(loss_of(model, r, step) for r in range(2)).__truediv__(2).backward(); opt.step()
        ref, _ = adamw_reference(2, 4)
        for p, q in zip(model.parameters(), ref.parameters()): torch.testing.assert_close(p, q, rtol=0, atol=2e-6)
        torch.optim.AdamW(Net().parameters(), **ADAM_KW).load_state_dict(opt.state_dict())   # torch's own AdamW reads it

def test_initial_lr_from_construction():
    "nanochat's manual schedule (group['lr'] = group['initial_lr'] * lrm) runs on every dl_optim optimizer"
    from dl_optim.cautious import AdamW as CautiousAdamW
    model = Net()
    for opt in (Muon(model), DistMuon(model), DistAdamW(model.parameters()), CautiousAdamW(model.parameters())):
        for g in opt.param_groups: g['lr'] = g['initial_lr'] * 0.5
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.1)   # a torch scheduler still starts from initial_lr
        assert all(abs(g['lr'] - 0.1 * g['initial_lr']) < 1e-12 for g in opt.param_groups)
