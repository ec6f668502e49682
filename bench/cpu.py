"The CPU a benchmark ran on, in the terms that decide dl_optim's Newton–Schulz dtype"
import platform
from pathlib import Path
import torch

def cpu_kind() -> str:
    "Model name and matrix units, e.g. 'AMD EPYC 7B13, AVX2 only (no native bf16)' or '…, AMX-BF16'"
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name') and model in ('', platform.machine(), platform.processor()): model = line.split(':', 1)[1].strip()
            if line.startswith('flags'): flags = set(line.split(':', 1)[1].split())
    except OSError: pass
    if 'amx_bf16' in flags: units = 'AMX-BF16 (native bf16)'
    elif 'avx512_bf16' in flags: units = 'AVX512-BF16, no AMX'
    elif 'avx512f' in flags: units = 'AVX-512 without bf16'
    elif 'avx2' in flags: units = 'AVX2 only (no native bf16)'
    else: units = 'unknown matrix units'
    from dl_optim.newton_schulz import default_ns_dtype, cpu_bf16_speedup
    return (f"{model}, {units}, bf16 matmul {cpu_bf16_speedup():.2f}× float32; "
            f"dl_optim NS dtype here: {str(default_ns_dtype('cpu')).removeprefix('torch.')}")

if __name__ == '__main__': print(cpu_kind(), '| torch', torch.__version__)
