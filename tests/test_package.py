"Import behaviour of the package and the dl-optim command, in fresh interpreters"
import json, os, subprocess, sys, importlib.util
import pytest

def run_py(code, env_update=None, drop=('KERAS_BACKEND',), tmp_path=None):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if tmp_path is not None: env['KERAS_HOME'] = str(tmp_path)   # an empty keras home: no keras.json
    env.update(env_update or {})
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, check=True).stdout.strip()

HAS_TF = importlib.util.find_spec('tensorflow') is not None

def test_import_is_light(tmp_path):
    out = run_py("import sys, dl_optim; print(sorted(m for m in ('torch', 'keras', 'tensorflow', 'jax') if m in sys.modules))",
                 tmp_path=tmp_path)
    assert out == '[]'

@pytest.mark.skipif(HAS_TF, reason='with TensorFlow installed Keras keeps its own default')
def test_torch_chosen_without_tensorflow(tmp_path):
    out = run_py("import dl_optim, os, keras; print(os.environ['KERAS_BACKEND'], keras.backend.backend())", tmp_path=tmp_path)
    assert out == 'torch torch'

def test_user_backend_never_overridden(tmp_path):
    out = run_py("import dl_optim, os; print(os.environ['KERAS_BACKEND'], dl_optim.choose_keras_backend())",
                 {'KERAS_BACKEND': 'jax'}, tmp_path=tmp_path)
    assert out == 'jax jax'

def test_keras_json_respected(tmp_path):
    (tmp_path / 'keras.json').write_text(json.dumps({'backend': 'jax'}))
    out = run_py("import dl_optim, os; print(os.environ.get('KERAS_BACKEND'), dl_optim.choose_keras_backend())", tmp_path=tmp_path)
    assert out == 'None jax'

def test_lazy_entry_points(tmp_path):
    out = run_py("import dl_optim; from dl_optim import ConfigError, polar_express_coefficients as pe; "
                 "print(issubclass(ConfigError, ValueError), round(pe()[0][0], 6))", tmp_path=tmp_path)
    assert out == 'True 8.156555'
    with pytest.raises(subprocess.CalledProcessError): run_py("import dl_optim; dl_optim.no_such_thing")

def test_cli_ns_json():
    out = subprocess.run(['dl-optim', 'ns', '--json'], capture_output=True, text=True, check=True).stdout
    report = json.loads(out)
    assert len(report['coefficients']) == 5
    errs = report['worst_case_error']
    assert errs['polar_express (derived)']['0.001'] < errs['jordan']['0.001'] < errs['cubic']['0.001']

def test_cli_bad_value_exit_2():
    r = subprocess.run(['dl-optim', 'ns', '--steps', '0'], capture_output=True, text=True)
    assert r.returncode == 2 and "'steps' is 0" in r.stderr

def test_cli_info():
    out = json.loads(subprocess.run(['dl-optim', 'info', '--json'], capture_output=True, text=True, check=True).stdout)
    assert out['dl_optim'] and out['ns_dtype_cpu'] in ('float32', 'bfloat16')

def test_torch_modules_import_neither_keras_nor_pyplot():
    "The torch side stays light: importing Muon, DistMuon, SLED or the grokking filters loads neither Keras nor pyplot"
    import subprocess, sys
    code = ('import sys, dl_optim.muon, dl_optim.distributed, dl_optim.sled, dl_optim.grokking, dl_optim.step_hooks, dl_optim.recipes, dl_optim.normuon, '
            'dl_optim.experiments.sled_eval, dl_optim.experiments.grokking, dl_optim.experiments.race, dl_optim.experiments.distributed; '
            'print(sorted(m for m in ("keras", "matplotlib.pyplot") if m in sys.modules))')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == '[]', (r.stdout, r.stderr[-2000:])
