"""The worker-pool host that `generate` starts: a fresh interpreter, so spawned
workers never re-import the caller's script.

Arguments: out_dir n seed HxW split progress workers crowd
"""
import sys
from pathlib import Path

from kpose.data.synthetic.dataset import write_split

if __name__ == "__main__":
    _out, _n, _seed, _size, _split, _progress, _workers, _crowd = sys.argv[1:9]
    _h, _w = (int(v) for v in _size.split("x"))
    write_split(Path(_out), int(_n), int(_seed), (_h, _w), _split, bool(int(_progress)), int(_workers),
                bool(int(_crowd)))
