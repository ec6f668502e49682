"Property tests of dl_optim.config: junk in, ConfigError (and nothing else) out"
import math
import numpy as np
import pytest
from hypothesis import given, strategies as st, settings
from dl_optim.config import (FLOAT32_MAX, FLOAT32_TINY, ConfigError, Number, Boolean, Choice, Strings, Param, parse_config, check_mapping,
                             check_known_keys, check_required_keys, DEFAULTS)

# Any value a config file or a careless caller could produce
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=8), st.binary(max_size=4), st.complex_numbers(allow_nan=True),
                    st.builds(np.float32, st.floats(width=32)), st.builds(np.int64, st.integers(-2**62, 2**62)),
                    st.builds(np.bool_, st.booleans()), st.builds(np.array, st.lists(st.floats(), max_size=3)))
junk = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                                                      st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                    max_leaves=6)
junk_keys = st.one_of(st.text(max_size=12), st.integers(), st.none(), st.tuples(st.integers()))

SCHEMA = dict(learning_rate=Param(Number(0, low_open=True)), decay_steps=Param(Number(0, integer=True, low_open=True)),
              alpha=Param(Number(0, 1), 0.0), nesterov=Param(Boolean(), True),
              shape=Param(Choice('linear', 'cosine'), 'linear'), names=Param(Strings(optional=True), None))
CHECKS = [c.check for c in SCHEMA.values()] + [Number(integer=True, optional=True), Number(-1, 1, True, True, True)]

@settings(max_examples=400, deadline=None)
@given(st.one_of(junk, st.dictionaries(junk_keys, junk, max_size=6)))
def test_parse_config_junk_raises_only_config_error(config):
    try: out = parse_config(config, SCHEMA, 'test config')
    except ConfigError as e:
        assert isinstance(e, ValueError) and str(e).startswith('test config: key ')
        return
    # whatever passed is complete and canonical
    assert set(out) == set(SCHEMA)
    assert isinstance(out['learning_rate'], float) and out['learning_rate'] > 0
    assert type(out['decay_steps']) is int and out['decay_steps'] > 0

@settings(max_examples=600, deadline=None)
@given(junk, st.sampled_from(CHECKS))
def test_each_check_raises_only_config_error(value, check):
    try: out = check(value, 'k', 'where')
    except ConfigError as e:
        assert e.key == 'k' and "'k'" in str(e)
        return
    assert out is None or type(out) in (int, float, bool, str, list)

@given(st.one_of(st.booleans(), st.builds(np.bool_, st.booleans())))
def test_bool_is_never_a_number(b):
    for check in (Number(), Number(integer=True), Number(optional=True)):
        with pytest.raises(ConfigError): check(b, 'x')

@given(st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6), st.builds(np.float32, st.floats(-1e6, 1e6, width=32)),
                 st.builds(np.int32, st.integers(-10**6, 10**6)), st.builds(np.float64, st.floats(-1e6, 1e6))))
def test_real_numbers_pass_unchanged(x):
    out = Number()(x)
    assert type(out) is float and out == float(x)

@given(st.one_of(st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: abs(v) > FLOAT32_MAX),
                 st.integers(10**39, 10**500)))
def test_values_float32_cannot_hold_are_errors(x):
    "Finite in Python, inf in float32: a learning rate of 1e300 never reaches a tensor"
    with pytest.raises(ConfigError, match="'lr'"): Number()(x, 'lr')

@given(st.floats(0, FLOAT32_TINY, exclude_max=True))
def test_positive_values_stay_positive_in_float32(x):
    "A temperature or ε of 1e-300 is 0 in float32 and would divide by zero"
    with pytest.raises(ConfigError, match="'eps'"): Number(0, low_open=True)(x, 'eps')

@given(st.floats(allow_nan=False), st.floats(allow_nan=False))
def test_range_boundaries(lo, hi):
    if not (abs(lo) <= FLOAT32_MAX and abs(hi) <= FLOAT32_MAX) or lo >= hi: return
    if lo == 0 and hi < FLOAT32_TINY: return   # an open (0, hi) range below float32's positive floor holds nothing
    closed, open_ = Number(lo, hi), Number(lo, hi, low_open=True, high_open=True)
    assert closed(lo) == lo and closed(hi) == hi
    for v in (lo, hi):
        with pytest.raises(ConfigError): open_(v)

@given(st.text(min_size=1, max_size=10))
def test_unknown_keys_named(key):
    allowed = ['learning_rate', 'decay_steps']
    if key in allowed: return
    with pytest.raises(ConfigError) as e: check_known_keys({key: 1}, allowed, 'c')
    assert repr(key) in str(e.value)

def test_near_miss_suggests():
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"): check_known_keys({'learnin_rate': 1}, ['learning_rate'])

def test_required_and_mapping():
    with pytest.raises(ConfigError, match="'decay_steps' is missing"): check_required_keys({}, ['decay_steps'])
    with pytest.raises(ConfigError, match='a dict'): check_mapping('lr=0.1')

def test_string_booleans_rejected():
    for v in ('False', 'True', 'false', 0, 1):
        with pytest.raises(ConfigError): Boolean()(v, 'use_tau_in_update')

def test_defaults_are_read_only_and_match_the_guide():
    assert DEFAULTS['warmup'] == {'warmup_steps': 0, 'warmup_start_lr': 1e-8}
    assert DEFAULTS['sled']['inactive_logit_value'] == -1e9
    with pytest.raises(TypeError): DEFAULTS['warmup']['warmup_steps'] = 5
