"""weighted-energy.py REF.gguf Q.gguf...: for each weight of layers 2, 8, 14, 20 and 26, the
importance-weighted energy sum a q^2 / sum a x^2 of each quantized file against REF, its
weighted error and the error's correlation with q (a: the column means of ./imatrix.gguf).
Needs the peer's gguf-py (GGUF_PY, default ~/.cache/apr/peer/llama.cpp/gguf-py) and numpy."""
import os, sys
import numpy as np
sys.path.insert(0, os.environ.get('GGUF_PY', os.path.expanduser('~/.cache/apr/peer/llama.cpp/gguf-py')))
from gguf import GGUFReader
from gguf.quants import dequantize
im = GGUFReader('imatrix.gguf'); imt = {t.name: t for t in im.tensors}
files = sys.argv[1:]
maps = [{t.name: t for t in GGUFReader(f).tensors} for f in files]
layers = (2, 8, 14, 20, 26)
for n in maps[0]:
    if not n.endswith('weight') or 'norm' in n or 'blk.' not in n: continue
    L = int(n.split('.')[1])
    if L not in layers: continue
    ref = dequantize(maps[0][n].data, maps[0][n].tensor_type).astype(np.float64)
    s2 = np.array(imt[n + '.in_sum2'].data, dtype=np.float64).reshape(-1)
    cnt = float(np.array(imt[n + '.counts'].data).reshape(-1)[0])
    a = s2 / cnt
    eref = (ref * ref * a).sum()
    out = [n]
    for m in maps[1:]:
        t = m[n]; x = dequantize(t.data, t.tensor_type).astype(np.float64)
        e = x - ref
        out.append(f"{t.tensor_type.name} wnorm={(x*x*a).sum()/eref:.4f} werr={(e*e*a).sum()/eref:.4f} corr={(e*x*a).sum()/eref:+.4f}")
    print(' | '.join(out), flush=True)
