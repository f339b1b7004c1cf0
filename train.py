#!/usr/bin/env python
"""
Fine-tune an encoder to predict the valence of song lyrics: `accelerate launch train.py [--flag VALUE ...]`, or
`accelerate launch train.py ARGS.yaml`. The same as `lyric-valence train`; the code is lyric_valence/commands/train.py.
"""

from lyric_valence.commands.train import run

if __name__ == "__main__":
    run()
