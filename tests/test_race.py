"dl-optim race from the command line: outputs, schema, errors (tiny sizes; the real race is a flagged notebook cell)"
import json, subprocess
import pytest
from pathlib import Path

def run(*args, cwd=None):
    return subprocess.run(['dl-optim', 'race', *args], capture_output=True, text=True, cwd=cwd)

def test_race_writes_json_and_plot(tmp_path):
    r = run('--steps', '20', '--eval-every', '10', '--out', str(tmp_path), '--quiet')
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / 'race.json').read_text())
    assert set(res) >= {'speedup', 'final_val_loss', 'curves', 'config'}
    assert set(res['final_val_loss']) == {'adamw', 'muon'} and res['config']['steps'] == 20
    assert res['curves']['muon']['step'] == [0, 10, 20]
    assert (tmp_path / 'race.png').stat().st_size > 10_000
    assert 'speedup' in r.stdout

def test_race_on_a_corpus_file(tmp_path):
    text = (Path(__file__).resolve().parents[1] / 'README.md').read_text() * 8
    (tmp_path / 'corpus.txt').write_text(text)
    r = run('--corpus', str(tmp_path / 'corpus.txt'), '--steps', '10', '--eval-every', '5', '--out', str(tmp_path / 'o'),
            '--quiet', '--processes', '1')
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / 'o' / 'race.json').read_text())['config']['corpus'].endswith('corpus.txt')

def test_race_bad_arguments(tmp_path):
    r = run('--optimizers', 'adamw,lion', '--steps', '5', '--out', str(tmp_path))
    assert r.returncode == 2 and "'optimizers' is 'lion'" in r.stderr
    r = run('--optimizers', 'muon', '--steps', '5', '--out', str(tmp_path))
    assert r.returncode == 2 and "includes 'adamw'" in r.stderr
    r = run('--steps', '0', '--out', str(tmp_path))
    assert r.returncode == 2 and "'steps' is 0" in r.stderr

@pytest.mark.distributed
def test_race_on_two_processes(tmp_path):
    "--nproc 2: each entrant trained data-parallel on 2 gloo processes (Muon as DistMuon), same outputs"
    r = run('--steps', '10', '--eval-every', '5', '--out', str(tmp_path), '--quiet', '--nproc', '2')
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / 'race.json').read_text())
    assert res['config']['nproc'] == 2 and res['curves']['muon']['step'] == [0, 5, 10]
    assert res['final_val_loss']['muon'] < res['curves']['muon']['val_loss'][0]
    r = run('--steps', '5', '--nproc', '2', '--optimizers', 'adamw,torch_muon', '--out', str(tmp_path))
    assert r.returncode == 2 and 'adamw or muon' in r.stderr
    r = run('--steps', '5', '--nproc', '3', '--out', str(tmp_path))
    assert r.returncode == 2 and 'divisor of the batch size' in r.stderr
