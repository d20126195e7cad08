"""Shipping models safely: the promotion gate, the model registry and the retrain loop.

    gate.py       pure: a candidate's and the current model's evaluations on the golden set → accept or refuse
    registry.py   releases under ``models/releases/<version>`` and the ``models/current`` pointer (a symlink)
                  that ``serve-model`` and the workers read; promote and rollback flip it atomically
    command.py    `modcascade promote` (gate, then flip) and `modcascade promote --rollback`
    retrain.py    `modcascade retrain`: export → train → eval → gate → promote, one command, safe on a schedule
"""
